//! Black-box tests of job-launcher-mock: most in-process through `app(state)`, a few over
//! a real socket, one against the built binary.

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
mod helpers;
mod hostile;
mod in_process;
mod layout;
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
mod shared_app;
mod simulation;
mod socket;
mod status;
mod verify;
