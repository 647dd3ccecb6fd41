//! The wire types of Fusion's job-launcher and the rules an update is held to.
//!
//! A posted body is read once into a [`StatusUpdate`]: the typed [`Facts`] the rules
//! need, and the raw members kept exactly as sent. Nothing here locks or knows HTTP.

pub mod json;
pub mod problem;
pub mod rules;
pub mod state;
pub mod time;
pub mod update;

pub use problem::{Problem, ProblemKind, Violation, Warning};
pub use state::JobState;
pub use time::Timestamp;
pub use update::{Facts, StatusUpdate};
