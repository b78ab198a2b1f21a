//! The services: what the server does, for a caller, with typed inputs
//! and domain values out. `api/` and `portal/` are adapters over them;
//! the background jobs and the CLI's in-process paths call them too.
//! Nothing here knows HTTP.

mod error;

pub use error::{Refusal, ServiceError};
