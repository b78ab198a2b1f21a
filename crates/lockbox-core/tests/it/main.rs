//! Integration tests of the Lockbox domain, in one test binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    unreachable_pub,
    missing_debug_implementations
)]

mod accounts;
mod admin;
mod audit_format;
mod cases;
mod chain_props;
mod enforce;
mod exact_lines;
mod extensions;
mod grants;
mod groups;
mod props;
mod requests;
mod rules;
mod schedule;
mod ssh;
mod world;
