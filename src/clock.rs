//! The one clock of the service: what every timestamp it reports and every simulated
//! step reads. `--clock system` follows the wall clock; `--clock manual` starts at the
//! wall-clock time of the start (to the millisecond) and then moves only when told to.
//!
//! Waits (`/_mock/runs/{jobId}/wait` timeouts) and injected delays are real time
//! whatever the clock: they are about the test's own patience, not about the jobs.
//!
//! No time the mock holds or computes passes [`END_OF_TIME`], the last millisecond that
//! RFC 3339's four-digit years can write: a duration that would take one past it is
//! refused where it is given ([`later`] gives `None`), so nothing ever shows a year
//! that the mock's own validator, or a client's, would refuse.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use serde::Serialize;

use crate::model::Violation;
use crate::model::time::rfc3339;
use crate::sync::lock;

/// The latest time the mock can hold: `9999-12-31T23:59:59.999Z`, the end of the years
/// RFC 3339 can write, to the millisecond the mock writes times with.
pub const END_OF_TIME: DateTime<Utc> = match DateTime::from_timestamp_millis(253_402_300_799_999) {
    Some(end) => end,
    None => panic!("the end of time is a valid time"),
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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
                // To the millisecond, as times are written: what an advance adds
                // then reads back exactly, up to the end of time.
                ClockMode::Manual => Some(Mutex::new(Utc::now().trunc_subsecs(3))),
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
            Some(now) => *lock(now),
            None => Utc::now(),
        }
    }

    /// Moves a manual clock forward to `to` (never back); `false` for the system clock.
    pub fn set(&self, to: DateTime<Utc>) -> bool {
        let Some(now) = &self.manual else {
            return false;
        };
        let mut now = lock(now);
        if to > *now {
            *now = to;
        }
        true
    }
}

/// `time + by`; `None` when that would pass [`END_OF_TIME`] (checked all the way, so
/// no duration can overflow).
pub fn later(time: DateTime<Utc>, by: Duration) -> Option<DateTime<Utc>> {
    TimeDelta::from_std(by)
        .ok()
        .and_then(|by| time.checked_add_signed(by))
        .filter(|later| *later <= END_OF_TIME)
}

/// The violation of `field`, a duration that would take `what` past [`END_OF_TIME`]
/// counted from `from`: it says how much room is left.
pub fn past_the_end(field: &str, what: &str, from: DateTime<Utc>) -> Violation {
    let room = (END_OF_TIME - from).to_std().unwrap_or(Duration::ZERO);
    Violation {
        field: Arc::from(field),
        message: Arc::from(format!(
            "{what} would pass {}, the latest time the mock can hold: at most {} from {}",
            rfc3339(END_OF_TIME),
            crate::duration::format(room),
            rfc3339(from),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_forward_and_only_when_set() {
        let clock = Clock::new(ClockMode::Manual);
        let start = clock.now();
        assert_eq!(clock.now(), start);
        let hour_later = later(start, Duration::from_secs(3600)).unwrap();
        assert!(clock.set(hour_later));
        assert_eq!(clock.now(), hour_later);
        assert!(clock.set(start));
        assert_eq!(clock.now(), hour_later, "never back");
        assert!(!Clock::new(ClockMode::System).set(hour_later));
    }

    #[test]
    fn later_stops_at_the_end_of_time_and_never_overflows() {
        assert_eq!(rfc3339(END_OF_TIME), "9999-12-31T23:59:59.999Z");
        let just_before = END_OF_TIME - TimeDelta::milliseconds(1);
        let one_ms = Duration::from_millis(1);
        assert_eq!(later(just_before, one_ms), Some(END_OF_TIME));
        assert_eq!(later(END_OF_TIME, Duration::ZERO), Some(END_OF_TIME));
        assert_eq!(later(END_OF_TIME, one_ms), None);
        // The longest duration the API reads, and the longest there is, from anywhere.
        let longest = crate::duration::parse("999999999h").unwrap();
        for from in [Utc::now(), END_OF_TIME, DateTime::<Utc>::MAX_UTC] {
            assert_eq!(later(from, longest), None);
            assert_eq!(later(from, Duration::MAX), None);
        }
    }

    #[test]
    fn past_the_end_says_how_much_room_is_left() {
        let from = END_OF_TIME - TimeDelta::minutes(10);
        let violation = past_the_end("by", "advancing by 11m", from);
        assert_eq!(&*violation.field, "by");
        assert_eq!(
            &*violation.message,
            "advancing by 11m would pass 9999-12-31T23:59:59.999Z, the latest time the mock \
             can hold: at most 10m from 9999-12-31T23:49:59.999Z"
        );
    }
}
