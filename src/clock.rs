//! The one clock of the service: what every timestamp it reports and every simulated
//! step reads. `--clock system` follows the wall clock; `--clock manual` starts at the
//! wall-clock time of the start and then moves only when told to.
//!
//! Waits (`/_mock/runs/{jobId}/wait` timeouts) and injected delays are real time
//! whatever the clock: they are about the test's own patience, not about the jobs.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use clap::ValueEnum;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    /// The wall clock.
    System,
    /// Moves only by `POST /_mock/clock/advance`.
    Manual,
}

#[derive(Debug)]
pub struct Clock {
    /// The time of a manual clock; `None` for the system clock.
    manual: Option<Mutex<DateTime<Utc>>>,
}

impl Clock {
    pub fn new(mode: ClockMode) -> Self {
        Clock {
            manual: match mode {
                ClockMode::System => None,
                ClockMode::Manual => Some(Mutex::new(Utc::now())),
            },
        }
    }

    pub fn mode(&self) -> ClockMode {
        match self.manual {
            Some(_) => ClockMode::Manual,
            None => ClockMode::System,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.manual {
            Some(now) => *now.lock().unwrap_or_else(PoisonError::into_inner),
            None => Utc::now(),
        }
    }

    /// Moves a manual clock forward to `to` (never back); `false` for the system clock.
    pub fn set(&self, to: DateTime<Utc>) -> bool {
        let Some(now) = &self.manual else {
            return false;
        };
        let mut now = now.lock().unwrap_or_else(PoisonError::into_inner);
        if to > *now {
            *now = to;
        }
        true
    }
}

/// `time + by`, saturating at the end of chrono's range rather than overflowing.
pub fn later(time: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(by)
        .ok()
        .and_then(|by| time.checked_add_signed(by))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_forward_and_only_when_set() {
        let clock = Clock::new(ClockMode::Manual);
        let start = clock.now();
        assert_eq!(clock.now(), start);
        let hour_later = later(start, Duration::from_secs(3600));
        assert!(clock.set(hour_later));
        assert_eq!(clock.now(), hour_later);
        assert!(clock.set(start));
        assert_eq!(clock.now(), hour_later, "never back");
        assert!(!Clock::new(ClockMode::System).set(hour_later));
    }

    #[test]
    fn later_saturates() {
        let end = later(DateTime::<Utc>::MAX_UTC, Duration::from_secs(1));
        assert_eq!(end, DateTime::<Utc>::MAX_UTC);
    }
}
