//! Times on the wire: the timestamps clients send, as the rules compare them, and the one
//! way the mock writes its own ([`rfc3339`]).
//!
//! A client's timestamp is an RFC 3339 instant, exact past the nanosecond: chrono keeps
//! nine fraction digits and drops the rest, which would let `…00.0010000001Z` pass as
//! exactly one millisecond after `…00Z`. The digits chrono drops are kept here, down to
//! the attosecond.

use std::fmt;

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};

use super::json::Text;

const ATTOS_PER_NANO: i128 = 1_000_000_000;
const ATTOS_PER_SECOND: i128 = 1_000_000_000_000_000_000;
pub const ATTOS_PER_MILLI: i128 = 1_000_000_000_000_000;

/// An instant, and how the client wrote it (for messages).
#[derive(Debug, Clone)]
pub struct Timestamp {
    time: DateTime<FixedOffset>,
    /// Attoseconds past `time`'s nanosecond: fraction digits 10 to 18.
    beyond_nanos: u32,
    text: Text,
}

impl Timestamp {
    /// Reads an RFC 3339 date-time; `None` if it is not one.
    pub fn parse(text: &str) -> Option<Timestamp> {
        Timestamp::read(Text::from(text))
    }

    /// [`Timestamp::parse`], keeping `text` itself (a span of a body, say) as written.
    pub fn read(text: Text) -> Option<Timestamp> {
        let time = DateTime::parse_from_rfc3339(&text).ok()?;
        Some(Timestamp {
            time,
            beyond_nanos: digits_beyond_nanos(&text),
            text,
        })
    }

    /// Attoseconds since the Unix epoch: exact for any year RFC 3339 can write.
    pub fn attos(&self) -> i128 {
        i128::from(self.time.timestamp()) * ATTOS_PER_SECOND
            + i128::from(self.time.timestamp_subsec_nanos()) * ATTOS_PER_NANO
            + i128::from(self.beyond_nanos)
    }
}

/// A time as the mock reports it, in answers, the journal, events and error bodies:
/// RFC 3339 in UTC, to the millisecond, e.g. `2026-11-29T10:00:00.000Z`.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// [`rfc3339`] for serde's `serialize_with`.
pub fn serialize_rfc3339<S: serde::Serializer>(
    time: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&rfc3339(*time))
}

/// A time as the store keeps it: [`rfc3339`] to the nanosecond, so it reads back exactly.
pub fn rfc3339_exact(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Reads a time the mock wrote (any RFC 3339 date-time), in UTC.
pub fn parse_utc(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

/// Fraction digits 10 to 18 of a date-time's seconds, as attoseconds.
fn digits_beyond_nanos(text: &str) -> u32 {
    // The fraction is the run of digits after the only '.' an RFC 3339 date-time has.
    let Some((_, after_dot)) = text.split_once('.') else {
        return 0;
    };
    let digits = after_dot.bytes().take_while(u8::is_ascii_digit);
    digits
        .skip(9)
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0, |attos, digit| attos * 10 + u32::from(digit - b'0'))
}

/// Equal when they are the same instant, whatever the offsets they were written in.
impl PartialEq for Timestamp {
    fn eq(&self, other: &Self) -> bool {
        self.attos() == other.attos()
    }
}

/// As the client wrote it.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attos(text: &str) -> i128 {
        Timestamp::parse(text).map_or(i128::MIN, |t| t.attos())
    }

    #[test]
    fn offsets_name_the_same_instant() {
        assert_eq!(
            attos("2025-01-01T12:00:00+02:00"),
            attos("2025-01-01T10:00:00Z")
        );
        assert_eq!(
            Timestamp::parse("2025-01-01T12:00:00+02:00"),
            Timestamp::parse("2025-01-01T10:00:00.000Z")
        );
    }

    #[test]
    fn digits_past_the_nanosecond_count() {
        let base = attos("2025-01-01T00:00:00Z");
        assert_eq!(
            attos("2025-01-01T00:00:00.0010000001Z") - base,
            ATTOS_PER_MILLI + 100_000_000
        );
        assert_eq!(attos("2025-01-01T00:00:00.000000000000000001Z") - base, 1);
        // Digits past the nanosecond survive an offset, and a parse failure cannot pass.
        let east = attos("2025-01-01T00:00:00.5000000001+01:00");
        assert_eq!(east, attos("2024-12-31T23:00:00.5000000001Z"));
        assert_ne!(east, attos("2024-12-31T23:00:00.5Z"));
        assert!(east > i128::MIN);
    }

    #[test]
    fn years_far_from_the_epoch_do_not_overflow() {
        assert!(attos("0000-01-01T00:00:00Z") < attos("9999-12-31T23:59:59.999999999999Z"));
    }

    #[test]
    fn what_is_not_rfc_3339_is_refused() {
        for bad in [
            "2025-01-01",
            "yesterday",
            "2025-13-01T00:00:00Z",
            "2025-01-01T00:00:00",
        ] {
            assert!(Timestamp::parse(bad).is_none(), "{bad}");
        }
    }
}
