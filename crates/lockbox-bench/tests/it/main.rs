//! The load harness and the fixture generator, run small against real
//! servers on both backends.

mod fixture;
mod load;
