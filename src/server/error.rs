//! The one error a [`MockServer`](super::MockServer) call can give.

use super::views::{Run, Warning};

/// Why a [`MockServer`](super::MockServer) call did not give what was asked.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A wait ran out before the run got where it was awaited; the message says where
    /// it was (`run late did not reach state finished within 5s; it is running`).
    #[error("{message}")]
    Timeout {
        job_id: String,
        message: String,
        /// The run when the wait ran out; `None` when it did not exist.
        run: Option<Box<Run>>,
    },
    /// The mock refused what was asked, as its route would have answered: the status,
    /// the error body's `code`, its message and every violation.
    #[error("{message} ({status} {code})")]
    Refused {
        status: u16,
        code: String,
        message: String,
        violations: Vec<Warning>,
    },
}

impl Error {
    /// The error body's `code` (`timeout` for a wait that ran out).
    pub fn code(&self) -> &str {
        match self {
            Error::Timeout { .. } => "timeout",
            Error::Refused { code, .. } => code,
        }
    }
}
