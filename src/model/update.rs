//! A posted status update: parsed once, checked for well-formedness, kept as sent.

use std::borrow::Cow;
use std::sync::Arc;

use super::json::{self, Members, Position, RawJson, Text};
use super::problem::{Problem, ProblemKind, Warning};
use super::state::JobState;
use super::time::Timestamp;

/// The longest `jobId` accepted.
pub const MAX_JOB_ID_LEN: usize = 128;

/// A status update, as a driver posts it to `/job-launcher/launcher/status`.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    /// The body exactly as posted.
    pub raw: RawJson,
    /// Its top-level members, nulls and unknown fields included.
    pub members: Members,
    /// The run it is for, when `jobId` is well-formed.
    pub job_id: Option<Arc<str>>,
    /// What the rules read from it. A member that is `null` or malformed is absent here.
    pub facts: Facts,
}

/// The typed part of a JobStatus, the fields the rules read; everything else stays raw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub state: Option<JobState>,
    pub job_config: Option<JobConfig>,
    pub result: Option<JobResult>,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    pub duration: Option<u64>,
    /// Warnings for the names the update writes more than once where the mock reads
    /// them (any at its top level; in `jobConfig` and `result`, the members the rules
    /// read): they are read last-wins, as Fusion's Jackson reads them, and the client
    /// is told. Taken by the rules as the update's warnings, so a run's own facts never
    /// hold any. Nearly always `None`, and facts are moved several times per update: a
    /// thin box keeps this to one word (a `Vec` is three).
    #[allow(clippy::box_collection)]
    pub repeated_keys: Option<Box<Vec<Warning>>>,
}

/// The parts of `jobConfig` the mock reads; its type-specific fields stay raw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobConfig {
    pub id: Option<Text>,
    pub job_type: Option<Text>,
}

/// The parts of `result` the mock compares with the status; the rest stays raw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobResult {
    pub job_run_id: Option<Text>,
    pub job_config_id: Option<Text>,
    pub state: Option<Text>,
}

impl Facts {
    /// The facts of a status after `update` is merged into it: a field the update has
    /// replaces the old one, whole; a field it lacks is carried over.
    pub fn merged_with(&self, update: Facts) -> Facts {
        Facts {
            state: update.state.or(self.state),
            job_config: update.job_config.or_else(|| self.job_config.clone()),
            result: update.result.or_else(|| self.result.clone()),
            start_time: update.start_time.or_else(|| self.start_time.clone()),
            end_time: update.end_time.or_else(|| self.end_time.clone()),
            duration: update.duration.or(self.duration),
            repeated_keys: None,
        }
    }

    pub fn config_id(&self) -> Option<&str> {
        self.job_config.as_ref()?.id.as_deref()
    }

    pub fn config_type(&self) -> Option<&str> {
        self.job_config.as_ref()?.job_type.as_deref()
    }
}

/// Why a body is not one JSON object: the message says where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl StatusUpdate {
    /// Reads a posted body: refuses what is not one JSON object (UTF-8, syntax, depth),
    /// and lists every well-formedness problem of the fields the rules need.
    pub fn parse(body: &[u8]) -> Result<(StatusUpdate, Vec<Problem>), Malformed> {
        // RFC 8259 lets a parser ignore a byte order mark, and Fusion's (Jackson) does.
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        let text = std::str::from_utf8(body).map_err(|e| {
            let at = Position::of(body, e.valid_up_to());
            Malformed(format!(
                "body is not valid UTF-8 at line {} column {}",
                at.line, at.column
            ))
        })?;
        let doc: Arc<str> = Arc::from(text);
        // The parser first, so that its own errors are the ones reported; it scans nested
        // values without recursing, so deep nesting cannot hurt it.
        let (members, repeats, job_config_members, result_members) = match json::read_status(&doc) {
            Some(read) => (read.members, read.repeats, read.job_config, read.result),
            None => {
                let (members, repeats) =
                    json::parse_members_and_repeats(&doc).map_err(|e| Malformed(e.to_string()))?;
                (members, repeats, None, None)
            }
        };
        if let Some(offset) = json::find_too_deep(body) {
            let at = Position::of(body, offset);
            return Err(Malformed(format!(
                "body nests deeper than {} levels at line {} column {}",
                json::MAX_DEPTH,
                at.line,
                at.column
            )));
        }

        let mut problems = Vec::new();
        let mut bad = |field: &str, message: String| {
            problems.push(Problem::new(ProblemKind::Form, field, message));
        };
        // A member that is null counts as absent.
        let present = |name: &str| {
            members
                .get(name)
                .filter(|v| !v.is_null())
                .map(RawJson::as_str)
        };
        let state = match present("state") {
            Some(raw) => read_state(raw, &mut bad),
            None => {
                bad(
                    "state",
                    format!("state is required: one of {}", JobState::NAMES),
                );
                None
            }
        };
        let job_id = match present("jobId") {
            Some(raw) => read_job_id(raw, &mut bad),
            None => {
                bad("jobId", "jobId is required: the run's id".to_owned());
                None
            }
        };
        let mut repeated: Vec<Warning> = repeats
            .into_iter()
            .map(|(name, count)| repeated_key(name, count))
            .collect();
        let facts = Facts {
            state,
            job_config: present("jobConfig").and_then(|raw| {
                read_job_config(&doc, raw, job_config_members, &mut repeated, &mut bad)
            }),
            result: present("result")
                .and_then(|raw| read_result(&doc, raw, result_members, &mut repeated, &mut bad)),
            start_time: present("startTime")
                .and_then(|raw| read_time(&doc, "startTime", raw, &mut bad)),
            end_time: present("endTime").and_then(|raw| read_time(&doc, "endTime", raw, &mut bad)),
            duration: present("duration").and_then(|raw| read_duration(raw, &mut bad)),
            repeated_keys: (!repeated.is_empty()).then(|| Box::new(repeated)),
        };
        let update = StatusUpdate {
            raw: RawJson::whole(doc),
            members,
            job_id,
            facts,
        };
        Ok((update, problems))
    }
}

impl StatusUpdate {
    /// The run it names: its jobId when well-formed, else whatever string its `jobId`
    /// holds (for the journal, and for fault rules); `None` when it has none.
    pub fn named_job_id(&self) -> Option<Cow<'_, str>> {
        match &self.job_id {
            Some(id) => Some(Cow::Borrowed(id)),
            None => self
                .members
                .get("jobId")
                .and_then(|raw| json::as_string(raw.as_str())),
        }
    }
}

fn read_state(raw: &str, bad: &mut impl FnMut(&str, String)) -> Option<JobState> {
    let state = json::as_string(raw).and_then(|s| JobState::from_name(&s));
    if state.is_none() {
        let message = format!(
            "state must be one of {}; got {}",
            JobState::NAMES,
            quote(raw)
        );
        bad("state", message);
    }
    state
}

fn read_job_id(raw: &str, bad: &mut impl FnMut(&str, String)) -> Option<Arc<str>> {
    let id = json::as_string(raw).filter(|id| is_valid_job_id(id));
    if id.is_none() {
        let message = format!(
            "jobId must be a string of 1 to {MAX_JOB_ID_LEN} characters from A-Z a-z 0-9 . _ -, \
             and not . or ..; got {}",
            quote(raw)
        );
        bad("jobId", message);
    }
    id.map(|id| Arc::from(id.as_ref()))
}

/// Whether `id` may name a run (the contract, Validation); it also keeps ids safe in paths.
pub fn is_valid_job_id(id: &str) -> bool {
    (1..=MAX_JOB_ID_LEN).contains(&id.len())
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The warning for `field`, a name written `count` times in its object.
fn repeated_key(field: String, count: usize) -> Warning {
    Warning {
        message: Arc::from(format!(
            "{} appears {count} times; the last value is used",
            serde_json::Value::from(field.as_str())
        )),
        field: Arc::from(field),
    }
}

/// `read`: its members, when the parser has read them already.
fn read_job_config(
    doc: &Arc<str>,
    raw: &str,
    read: Option<json::Pairs<'_>>,
    repeated: &mut Vec<Warning>,
    bad: &mut impl FnMut(&str, String),
) -> Option<JobConfig> {
    let members = object_member("jobConfig", raw, read, bad)?;
    let [id, job_type] = read_keys("jobConfig", &members, ["id", "type"], repeated);
    let id = id.map(|value| {
        let id = json::as_string(value).filter(|id| !id.is_empty());
        if id.is_none() {
            let message = format!(
                "jobConfig.id must be a non-empty string; got {}",
                quote(value)
            );
            bad("jobConfig.id", message);
        }
        id
    });
    Some(JobConfig {
        id: id.flatten().map(|id| Text::within(doc, id)),
        job_type: string(doc, job_type),
    })
}

fn read_result(
    doc: &Arc<str>,
    raw: &str,
    read: Option<json::Pairs<'_>>,
    repeated: &mut Vec<Warning>,
    bad: &mut impl FnMut(&str, String),
) -> Option<JobResult> {
    let members = object_member("result", raw, read, bad)?;
    let keys = ["jobRunId", "jobConfigId", "state"];
    let [job_run_id, job_config_id, state] = read_keys("result", &members, keys, repeated);
    Some(JobResult {
        job_run_id: string(doc, job_run_id),
        job_config_id: string(doc, job_config_id),
        state: string(doc, state),
    })
}

/// The members of `field`, whose value is `raw`: `read` when the parser has read them
/// already, else split from `raw` (a member of a body the parser has checked). A value
/// that is not an object is a problem of `field`.
fn object_member<'a>(
    field: &str,
    raw: &'a str,
    read: Option<json::Pairs<'a>>,
    bad: &mut impl FnMut(&str, String),
) -> Option<json::Pairs<'a>> {
    let members = read.or_else(|| json::nested_members(raw));
    if members.is_none() {
        bad(
            field,
            format!("{field} must be an object; got {}", quote(raw)),
        );
    }
    members
}

/// The value of each of `keys` in the object at `path`, as parsers read a repeated key:
/// its last (`None` when absent, or when the last is `null`). A key written more than
/// once gets a warning in `repeated`. One pass over the members, where a search for each
/// key from the end took as many comparisons; the other names of the object, which the
/// mock keeps as sent and never reads, are not looked at.
fn read_keys<'a, const N: usize>(
    path: &str,
    members: &[(Cow<'_, str>, &'a str)],
    keys: [&str; N],
    repeated: &mut Vec<Warning>,
) -> [Option<&'a str>; N] {
    let mut found = [(None, 0usize); N];
    for (name, value) in members {
        if let Some(i) = keys.iter().position(|key| name.as_ref() == *key) {
            found[i] = (Some(*value), found[i].1 + 1);
        }
    }
    for (key, (_, count)) in keys.iter().zip(&found) {
        if *count > 1 {
            repeated.push(repeated_key(format!("{path}.{key}"), *count));
        }
    }
    found.map(|(value, _)| value.filter(|value| *value != "null"))
}

/// A string value of `doc`, unescaped: a span of it when it has no escapes.
fn string(doc: &Arc<str>, value: Option<&str>) -> Option<Text> {
    value
        .and_then(json::as_string)
        .map(|text| Text::within(doc, text))
}

fn read_duration(raw: &str, bad: &mut impl FnMut(&str, String)) -> Option<u64> {
    let duration = whole_number(raw);
    if duration.is_none() {
        let message = format!(
            "duration must be a non-negative integer of milliseconds; got {}",
            quote(raw)
        );
        bad("duration", message);
    }
    duration
}

/// A JSON number that is a whole number from 0 to `u64::MAX`, however it is written
/// (`1000`, `1000.0`, `1e3`, `-0`), as JSON Schema's `integer` counts it; `None` for
/// anything else.
fn whole_number(raw: &str) -> Option<u64> {
    // Plain digits, as nearly every client writes a duration: too few to overflow.
    if (1..=19).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw.parse().ok();
    }
    let (negative, unsigned) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    // Where the decimal point falls in `digits`, counted from its start.
    let leading_zeros = whole.len() + fraction.len() - digits.len();
    let point = i64::try_from(whole.len()).ok()? - i64::try_from(leading_zeros).ok()? + exponent;
    if digits.is_empty() {
        return Some(0);
    }
    if !(0..=20).contains(&point) {
        return None;
    }
    let point = usize::try_from(point).ok()?;
    let (integer, rest) = digits.split_at(point.min(digits.len()));
    if !rest.bytes().all(|b| b == b'0') || negative {
        return None;
    }
    let zeros = point.saturating_sub(digits.len());
    format!("{integer}{}", "0".repeat(zeros)).parse().ok()
}

fn read_time(
    doc: &Arc<str>,
    field: &str,
    raw: &str,
    bad: &mut impl FnMut(&str, String),
) -> Option<Timestamp> {
    let time = json::as_string(raw).and_then(|s| Timestamp::read(Text::within(doc, s)));
    if time.is_none() {
        let message = format!(
            "{field} must be an RFC 3339 date-time such as \"2025-10-16T19:49:15.106Z\"; got {}",
            quote(raw)
        );
        bad(field, message);
    }
    time
}

/// A raw value for an error message, cut short when long.
fn quote(raw: &str) -> String {
    const MAX: usize = 80;
    match raw.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &raw[..cut]),
        None => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> (StatusUpdate, Vec<(String, String)>) {
        match StatusUpdate::parse(body.as_bytes()) {
            Ok((update, problems)) => {
                let problems = problems
                    .into_iter()
                    .map(|p| {
                        (
                            p.violation.field.to_string(),
                            p.violation.message.to_string(),
                        )
                    })
                    .collect();
                (update, problems)
            }
            Err(Malformed(message)) => panic!("unexpectedly malformed: {message}"),
        }
    }

    fn fields(problems: &[(String, String)]) -> Vec<&str> {
        problems.iter().map(|(f, _)| f.as_str()).collect()
    }

    #[test]
    fn a_minimal_update_has_no_problems() {
        let (update, problems) = parse(r#"{"jobId":"r1","state":"running"}"#);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(update.job_id.as_deref(), Some("r1"));
        assert_eq!(update.facts.state, Some(JobState::Running));
    }

    #[test]
    fn every_malformed_field_is_reported_not_only_the_first() {
        let body = r#"{"jobId":"a/b","state":"done","jobConfig":{"id":""},"result":[],
            "startTime":"yesterday","endTime":5,"duration":-3}"#;
        let (update, problems) = parse(body);
        assert_eq!(
            fields(&problems),
            [
                "state",
                "jobId",
                "jobConfig.id",
                "result",
                "startTime",
                "endTime",
                "duration"
            ]
        );
        assert_eq!(update.job_id, None);
        assert_eq!(
            update.facts,
            Facts {
                job_config: Some(JobConfig::default()),
                ..Facts::default()
            }
        );
    }

    #[test]
    fn a_repeated_key_is_read_with_its_last_value() {
        let (update, problems) = parse(
            r#"{"jobId":"r","state":"bogus","state":"running","jobConfig":{"id":"","id":"x"}}"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(update.facts.state, Some(JobState::Running));
        assert_eq!(update.facts.config_id(), Some("x"));
        let repeated: Vec<(&str, &str)> = update
            .facts
            .repeated_keys
            .iter()
            .flat_map(|r| r.iter())
            .map(|w| (&*w.field, &*w.message))
            .collect();
        assert_eq!(
            repeated,
            [
                ("state", "\"state\" appears 2 times; the last value is used"),
                (
                    "jobConfig.id",
                    "\"jobConfig.id\" appears 2 times; the last value is used"
                )
            ]
        );
        let (update, problems) = parse(r#"{"jobId":"r","state":"running","state":null}"#);
        assert_eq!(fields(&problems), ["state"]);
        assert_eq!(update.facts.repeated_keys.map(|r| r.len()), Some(1));
        let (update, _) = parse(r#"{"jobId":"r","state":"running","jobConfig":{"id":"x"}}"#);
        assert_eq!(update.facts.repeated_keys, None);
    }

    #[test]
    fn missing_and_null_state_and_job_id_are_both_required() {
        let (_, problems) = parse(r#"{"state":null,"hostname":"h"}"#);
        assert_eq!(fields(&problems), ["state", "jobId"]);
        assert!(problems[0].1.contains("unknown, idle, starting"));
    }

    #[test]
    fn job_ids_follow_the_contract() {
        assert!(is_valid_job_id("hhzitrwancwv"));
        assert!(is_valid_job_id("A.b_c-9"));
        assert!(is_valid_job_id(&"x".repeat(128)));
        assert!(!is_valid_job_id(&"x".repeat(129)));
        assert!(!is_valid_job_id(""));
        assert!(!is_valid_job_id("."));
        assert!(!is_valid_job_id(".."));
        assert!(!is_valid_job_id("a b"));
        assert!(!is_valid_job_id("é"));
    }

    #[test]
    fn duration_must_be_a_plain_non_negative_integer() {
        for bad in [
            "-1",
            "1.5",
            "1e-3",
            "-5e0",
            "\"5\"",
            "18446744073709551616",
            "1e21",
        ] {
            let body = format!(r#"{{"jobId":"r","state":"finished","duration":{bad}}}"#);
            assert_eq!(fields(&parse(&body).1), ["duration"], "{bad}");
        }
        // JSON Schema's integers: any way of writing a whole number.
        for (written, value) in [
            ("0", 0),
            ("-0", 0),
            ("0.0", 0),
            ("-0.0e5", 0),
            ("4587.0", 4587),
            ("1e3", 1000),
            ("1.5E1", 15),
            ("12500e-2", 125),
            ("18446744073709551615", u64::MAX),
            // Plain digits, read directly up to 19 of them.
            ("27170", 27170),
            ("9999999999999999999", 9_999_999_999_999_999_999),
            ("10000000000000000000", 10_000_000_000_000_000_000),
        ] {
            let body = format!(r#"{{"jobId":"r","state":"finished","duration":{written}}}"#);
            assert_eq!(parse(&body).0.facts.duration, Some(value), "{written}");
        }
    }

    #[test]
    fn not_one_object_is_malformed_with_a_position() {
        let deep_tail = format!(r#"{{"a":1}}{}"#, "[".repeat(129));
        let cases = [
            ("", "EOF while parsing a value at line 1 column 0"),
            ("{\"a\":}", "expected value at line 1 column 6"),
            (
                "[]",
                "invalid type: sequence, expected a JSON object at line 1 column 0",
            ),
            ("{} {}", "trailing characters at line 1 column 4"),
            // The parser's own error comes first, even before deep nesting.
            (&deep_tail, "trailing characters at line 1 column 8"),
        ];
        for (body, expected) in cases {
            let err = StatusUpdate::parse(body.as_bytes()).err();
            assert_eq!(err, Some(Malformed(expected.to_owned())), "{body:?}");
        }
    }

    #[test]
    fn a_byte_order_mark_is_ignored_and_not_stored() {
        let (update, problems) = parse("\u{feff}{\"jobId\":\"r\",\"state\":\"idle\"}");
        assert!(problems.is_empty());
        assert_eq!(update.raw.as_str(), r#"{"jobId":"r","state":"idle"}"#);
    }

    #[test]
    fn invalid_utf8_and_deep_nesting_are_located() {
        let err = StatusUpdate::parse(b"{\"jobId\":\n \"\xff\"}").err();
        assert_eq!(
            err,
            Some(Malformed(
                "body is not valid UTF-8 at line 2 column 3".to_owned()
            ))
        );
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(128), "]".repeat(128));
        let err = StatusUpdate::parse(deep.as_bytes()).err();
        assert_eq!(
            err,
            Some(Malformed(
                "body nests deeper than 128 levels at line 1 column 133".to_owned()
            ))
        );
    }

    #[test]
    fn facts_merge_field_by_field_and_whole_objects_replace() {
        let (first, _) = parse(
            r#"{"jobId":"r","state":"starting","jobConfig":{"id":"c","type":"script"},
                "startTime":"2025-01-01T00:00:00Z"}"#,
        );
        let (second, _) = parse(r#"{"jobId":"r","state":"running","jobConfig":{"type":"sql"}}"#);
        let merged = first.facts.merged_with(second.facts);
        assert_eq!(merged.state, Some(JobState::Running));
        assert_eq!(merged.config_id(), None);
        assert_eq!(merged.config_type(), Some("sql"));
        assert_eq!(merged.start_time, first.facts.start_time);
    }
}
