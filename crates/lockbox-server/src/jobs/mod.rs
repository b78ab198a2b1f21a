//! Background jobs. Each is an ordinary function that tests call directly
//! (with a manual clock); `spawn_*` runs it on a timer until shutdown.

pub mod sweeper;
