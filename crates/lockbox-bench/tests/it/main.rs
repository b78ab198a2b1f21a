//! The load harness and the fixture generator, run small against real
//! servers on both backends; the proxy benchmark's parts against nginx.

mod fixture;
mod load;
mod proxy;
