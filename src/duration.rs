//! Durations as the API writes them: a whole number and one unit, `300ms`, `5s`, `10m`,
//! `1h` (`^[0-9]{1,9}(ms|s|m|h)$`, the pattern the OpenAPI document gives). One format
//! in and out, so a duration the mock shows can be given back to it.

use std::time::Duration;

/// Reads `300ms`, `5s`, `10m`, `1h`; `None` for anything else.
pub fn parse(text: &str) -> Option<Duration> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 9 {
        return None;
    }
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let millis = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    Some(Duration::from_millis(number * millis))
}

/// Writes a duration in the largest unit that holds it exactly (to the millisecond).
pub fn format(duration: Duration) -> String {
    let millis = duration.as_millis();
    match millis {
        0 => "0s".to_owned(),
        m if m % 3_600_000 == 0 => format!("{}h", m / 3_600_000),
        m if m % 60_000 == 0 => format!("{}m", m / 60_000),
        m if m % 1000 == 0 => format!("{}s", m / 1000),
        m => format!("{m}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_number_and_one_unit() {
        assert_eq!(parse("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("0s"), Some(Duration::ZERO));
        for bad in [
            "",
            "5",
            "s",
            "1m 30s",
            "1.5s",
            "-1s",
            "5 s",
            "1d",
            "1234567890s",
            "5S",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn writes_what_it_reads() {
        for millis in [0, 1, 999, 1000, 1500, 60_000, 90_000, 3_600_000, 5_400_000] {
            let duration = Duration::from_millis(millis);
            assert_eq!(parse(&format(duration)), Some(duration), "{millis}");
        }
        assert_eq!(format(Duration::from_secs(5400)), "90m");
    }
}
