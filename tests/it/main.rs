//! Black-box tests of job-launcher-mock, on its public surface: most in-process through
//! the router of `MockServerBuilder::into_router`, some over a real socket to a
//! `MockServer`, and some against the built binary. What they share is in `support`.

// Tests may panic on what they did not expect: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod bounds;
mod disk_full;
mod docs;
mod errors;
mod faults;
mod fuzz;
mod harness;
mod hostile;
mod in_process;
mod layout;
mod lean_waits;
mod load;
mod mock_routes;
mod model;
mod openapi;
mod peers;
mod persistence;
mod process;
mod properties;
mod registry_bounds;
mod secrets;
mod sessions;
mod simulation;
mod socket;
mod status;
mod support;
mod verify;
