//! Model-based properties: a run's fate under any sequence of updates, judged by a model
//! of the contract's Validation section (docs/contract.md) written here (it calls none of
//! the service's rule code), and any accepted JSON object reading back as it was posted.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::support::app::reset_app;
use crate::support::{STATUS, posted};

// ---- The model: the contract's Validation section, nothing else ----------------------

const STATES: [&str; 10] = [
    "unknown",
    "idle",
    "starting",
    "running",
    "finishing",
    "cancelling",
    "finished",
    "cancelled",
    "error",
    "skipped",
];

/// The contract's transition table, row by row, as it is written there.
const TABLE: [(&str, &str); 10] = [
    (
        "unknown",
        "unknown idle starting running finishing cancelling finished cancelled error skipped",
    ),
    (
        "idle",
        "unknown idle starting running finishing cancelling finished cancelled error skipped",
    ),
    (
        "starting",
        "starting running finishing cancelling finished cancelled error skipped",
    ),
    (
        "running",
        "running finishing cancelling finished cancelled error",
    ),
    ("finishing", "finishing cancelling finished cancelled error"),
    ("cancelling", "cancelling cancelled finished error"),
    ("finished", ""),
    ("cancelled", ""),
    ("error", ""),
    ("skipped", ""),
];

fn may_go(from: &str, to: &str) -> bool {
    TABLE
        .iter()
        .any(|(row, allowed)| *row == from && allowed.split_whitespace().any(|s| s == to))
}

fn is_ended(state: &str) -> bool {
    matches!(state, "finished" | "cancelled" | "error" | "skipped")
}

/// A member that is present and not `null`: `null` counts as absent.
fn present<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).filter(|v| !v.is_null())
}

/// An RFC 3339 time as whole seconds since the epoch (the model only makes whole seconds).
fn instant(value: &Value) -> Option<i64> {
    let text = value.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp())
}

fn config_id(status: &Map<String, Value>) -> Option<&str> {
    present(status, "jobConfig")?.get("id")?.as_str()
}

/// The top-level merge: a member present (and not null) replaces, an absent one carries over.
fn fold(status: &Map<String, Value>, update: &Map<String, Value>) -> Map<String, Value> {
    let mut merged = status.clone();
    for (name, value) in update {
        if !value.is_null() {
            merged.insert(name.clone(), value.clone());
        }
    }
    merged
}

/// What the model holds of the run: its current status and its last accepted update.
struct ModelRun {
    status: Map<String, Value>,
    last: Value,
}

/// `Ok(repeat)` when the update is accepted, else the `code` of the refusal.
fn judge(run: Option<&ModelRun>, update: &Value) -> Result<bool, &'static str> {
    if run.is_some_and(|run| run.last == *update) {
        return Ok(true);
    }
    let Some(body) = update.as_object() else {
        return Err("malformed_json");
    };
    // Well-formedness.
    let form = "validation_failed";
    let state = match present(body, "state").and_then(Value::as_str) {
        Some(state) if STATES.contains(&state) => state,
        _ => return Err(form),
    };
    if let Some(config) = present(body, "jobConfig") {
        let config = config.as_object().ok_or(form)?;
        // `id`, when present, is a non-empty string.
        if present(config, "id").is_some_and(|id| id.as_str().is_none_or(str::is_empty)) {
            return Err(form);
        }
    }
    for name in ["startTime", "endTime"] {
        if present(body, name).is_some_and(|time| instant(time).is_none()) {
            return Err(form);
        }
    }
    if present(body, "duration").is_some_and(|d| d.as_u64().is_none()) {
        return Err(form);
    }

    let merged = match run {
        Some(run) => fold(&run.status, body),
        None => fold(&Map::new(), body),
    };
    if let Some(run) = run {
        let from = run.status["state"].as_str().unwrap_or_default();
        if !may_go(from, state) {
            return Err("invalid_transition");
        }
        if config_id(&run.status).is_some() && config_id(&merged) != config_id(&run.status) {
            return Err("conflict");
        }
        let start = |status: &Map<String, Value>| present(status, "startTime").and_then(instant);
        if start(&run.status).is_some() && start(&merged) != start(&run.status) {
            return Err("conflict");
        }
    }
    // Timing, on the merged status.
    let start = present(&merged, "startTime").and_then(instant);
    let end = present(&merged, "endTime").and_then(instant);
    let duration = present(&merged, "duration").and_then(Value::as_i64);
    if let (Some(start), Some(end)) = (start, end) {
        if end < start {
            return Err(form);
        }
        if duration.is_some_and(|d| (d - (end - start) * 1000).abs() > 1) {
            return Err(form);
        }
    }
    if (end.is_some() || duration.is_some()) && !is_ended(state) {
        return Err(form);
    }
    Ok(false)
}

// ---- Generating updates ---------------------------------------------------------------

/// The instant every generated time is counted from, in whole seconds.
const T0: i64 = 1_760_644_155; // 2025-10-16T19:49:15Z

#[derive(Debug, Clone, Copy)]
enum Zone {
    Utc,
    UtcMillis,
    PlusOne,
    MinusFiveThirty,
}

/// `T0 + secs`, written in `zone`: the same instant may be spelt several ways.
fn timestamp(secs: i64, zone: Zone) -> String {
    let at = DateTime::<Utc>::from_timestamp(T0 + secs, 0).expect("a valid time");
    let offset = |seconds| FixedOffset::east_opt(seconds).expect("a valid offset");
    match zone {
        Zone::Utc => at.to_rfc3339_opts(SecondsFormat::Secs, true),
        Zone::UtcMillis => at.to_rfc3339_opts(SecondsFormat::Millis, true),
        Zone::PlusOne => at
            .with_timezone(&offset(3600))
            .to_rfc3339_opts(SecondsFormat::Secs, false),
        Zone::MinusFiveThirty => at
            .with_timezone(&offset(-(5 * 3600 + 30 * 60)))
            .to_rfc3339_opts(SecondsFormat::Secs, false),
    }
}

#[derive(Debug, Clone)]
enum Member<T> {
    Absent,
    Null,
    Is(T),
}

#[derive(Debug, Clone)]
enum StateGen {
    Named(&'static str),
    Bogus,
}

#[derive(Debug, Clone)]
enum ConfigGen {
    Id(&'static str),
    NoId,
    EmptyId,
}

#[derive(Debug, Clone)]
enum TimeGen {
    At(i64, Zone),
    /// An end: `secs` after the run's (merged) start, or after T0 if it has none.
    AfterStart(i64, Zone),
    NotATime,
}

#[derive(Debug, Clone)]
enum DurationGen {
    Millis(i64),
    /// `endTime - startTime` of the merged status, plus this many milliseconds.
    Fitting(i64),
}

#[derive(Debug, Clone)]
struct Step {
    /// Post the previous body again, when there is one.
    repeat: bool,
    /// How the body is written: member names with a `\u` escape, members in reverse.
    spelling: (bool, bool),
    state: Member<StateGen>,
    config: Member<ConfigGen>,
    start: Member<TimeGen>,
    end: Member<TimeGen>,
    duration: Member<DurationGen>,
    note: Member<u8>,
}

fn member<T: std::fmt::Debug + Clone>(
    absent: u32,
    null: u32,
    is: u32,
    value: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Member<T>> {
    prop_oneof![
        absent => Just(Member::Absent),
        null => Just(Member::Null),
        is => value.prop_map(Member::Is),
    ]
}

fn zone() -> impl Strategy<Value = Zone> {
    prop::sample::select(vec![
        Zone::Utc,
        Zone::UtcMillis,
        Zone::PlusOne,
        Zone::MinusFiveThirty,
    ])
}

fn step() -> impl Strategy<Value = Step> {
    // Ended states are drawn less often, so that runs live long enough to be interesting.
    let named = prop::sample::select(vec![
        "unknown",
        "idle",
        "starting",
        "starting",
        "running",
        "running",
        "running",
        "finishing",
        "finishing",
        "cancelling",
        "finished",
        "cancelled",
        "error",
        "skipped",
    ]);
    let state = member(
        1,
        1,
        40,
        prop_oneof![40 => named.prop_map(StateGen::Named), 1 => Just(StateGen::Bogus)],
    );
    let config = member(
        6,
        1,
        5,
        prop_oneof![
            8 => prop::sample::select(vec!["cfg-a", "cfg-b"]).prop_map(ConfigGen::Id),
            2 => Just(ConfigGen::NoId),
            1 => Just(ConfigGen::EmptyId),
        ],
    );
    let start = member(
        6,
        1,
        4,
        prop_oneof![
            10 => (0i64..3, zone()).prop_map(|(s, z)| TimeGen::At(s, z)),
            1 => Just(TimeGen::NotATime),
        ],
    );
    let end = member(
        10,
        1,
        3,
        prop_oneof![
            2 => (0i64..4, zone()).prop_map(|(s, z)| TimeGen::At(s, z)),
            3 => (-1i64..3, zone()).prop_map(|(s, z)| TimeGen::AfterStart(s, z)),
        ],
    );
    let duration = member(
        10,
        1,
        3,
        prop_oneof![
            2 => prop::sample::select(vec![-1i64, 0, 999, 1000, 1001, 1002, 2000, 3000])
                .prop_map(DurationGen::Millis),
            3 => (-2i64..=2).prop_map(DurationGen::Fitting),
        ],
    );
    let note = member(4, 1, 3, 0u8..3);
    (
        (prop::bool::weighted(0.15), any::<(bool, bool)>()),
        state,
        config,
        start,
        end,
        duration,
        note,
    )
        .prop_map(
            |((repeat, spelling), state, config, start, end, duration, note)| Step {
                repeat,
                spelling,
                state,
                config,
                start,
                end,
                duration,
                note,
            },
        )
}

fn put<T>(body: &mut Map<String, Value>, name: &str, member: &Member<T>, f: impl Fn(&T) -> Value) {
    match member {
        Member::Absent => {}
        Member::Null => {
            body.insert(name.to_owned(), Value::Null);
        }
        Member::Is(value) => {
            body.insert(name.to_owned(), f(value));
        }
    }
}

/// The body of a step, its relative times resolved against the run as the model has it.
fn resolve(step: &Step, status: &Map<String, Value>) -> Value {
    let mut body = Map::new();
    body.insert("jobId".into(), json!("r"));
    put(&mut body, "state", &step.state, |state| match state {
        StateGen::Named(name) => json!(name),
        StateGen::Bogus => json!("bogus"),
    });
    put(
        &mut body,
        "jobConfig",
        &step.config,
        |config| match config {
            ConfigGen::Id(id) => json!({"id": id, "type": "aggregation"}),
            ConfigGen::NoId => json!({"type": "aggregation"}),
            ConfigGen::EmptyId => json!({"id": "", "type": "aggregation"}),
        },
    );
    let time = |time: &TimeGen, start: Option<i64>| match time {
        TimeGen::At(secs, zone) => json!(timestamp(*secs, *zone)),
        TimeGen::AfterStart(secs, zone) => {
            json!(timestamp(start.map_or(0, |s| s - T0) + secs, *zone))
        }
        TimeGen::NotATime => json!("2025-10-16 at noon"),
    };
    put(&mut body, "startTime", &step.start, |t| time(t, None));
    let start = present(&body, "startTime")
        .or_else(|| present(status, "startTime"))
        .and_then(instant);
    put(&mut body, "endTime", &step.end, |t| time(t, start));
    let end = present(&body, "endTime")
        .or_else(|| present(status, "endTime"))
        .and_then(instant);
    put(&mut body, "duration", &step.duration, |duration| {
        match (duration, start.zip(end)) {
            (DurationGen::Fitting(slack), Some((start, end))) => {
                json!((end - start) * 1000 + slack)
            }
            (DurationGen::Fitting(slack), None) => json!(slack.abs() * 1000),
            (DurationGen::Millis(ms), _) => json!(ms),
        }
    });
    put(&mut body, "note", &step.note, |n| json!(n));
    Value::Object(body)
}

/// `body` as JSON text, spelt as `step` says: the first letter of every member's name
/// as a `\u` escape (`"\u006aobId"` is `jobId`), the members in reverse order. The value
/// is the same however it is spelt.
fn spell(body: &Value, (escaped, reversed): (bool, bool)) -> String {
    let mut members: Vec<String> = body
        .as_object()
        .expect("an object")
        .iter()
        .map(|(name, value)| {
            let name = match name.chars().next() {
                Some(first) if escaped => format!("\"\\u{:04x}{}\"", first as u32, &name[1..]),
                _ => Value::from(name.as_str()).to_string(),
            };
            format!("{name} :\t{value}")
        })
        .collect();
    if reversed {
        members.reverse();
    }
    format!("{{ {} }}\n", members.join(" ,\n  "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any sequence of updates to one run, however spelt, is accepted or refused exactly
    /// as the model of the contract's Validation section says, with the code of the first kind of problem;
    /// the run's status is then the fold of the accepted updates, and its history those
    /// that were not repeats.
    #[test]
    fn a_run_follows_the_model_of_the_rules(steps in prop::collection::vec(step(), 1..9)) {
        let (runtime, app) = reset_app();
        runtime.block_on(async {
            let mut run: Option<ModelRun> = None;
            let mut history: Vec<Value> = Vec::new();
            let mut previous: Option<Value> = None;
            let mut story: Vec<String> = Vec::new();
            for step in &steps {
                let body = match (&previous, step.repeat) {
                    (Some(previous), true) => previous.clone(),
                    _ => {
                        let status = run.as_ref().map(|r| r.status.clone()).unwrap_or_default();
                        resolve(step, &status)
                    }
                };
                let text = spell(&body, step.spelling);
                let verdict = judge(run.as_ref(), &body);
                let answer = app.post_text(&text).await;
                story.push(format!("{text} -> {} {}", answer.status.as_u16(), answer.json["code"]));
                match verdict {
                    Ok(repeat) => {
                        prop_assert_eq!(answer.status.as_u16(), 200, "{:#?}\n{}", story, answer.text);
                        prop_assert_eq!(&answer.json["repeat"], &json!(repeat), "{:#?}", story);
                        let map = body.as_object().unwrap();
                        let status = match run.take() {
                            Some(run) => fold(&run.status, map),
                            None => fold(&Map::new(), map),
                        };
                        if !repeat {
                            history.push(body.clone());
                        }
                        run = Some(ModelRun { status, last: body.clone() });
                    }
                    Err(code) => {
                        prop_assert_eq!(
                            &answer.json["code"], &json!(code),
                            "the model refuses with {}: {:#?}\n{}", code, story, answer.text
                        );
                        let status = if code == "invalid_transition" || code == "conflict" { 409 } else { 422 };
                        prop_assert_eq!(answer.status.as_u16(), status, "{:#?}", story);
                    }
                }
                previous = Some(body);
            }
            match &run {
                Some(run) => {
                    let current = app.run("r").await;
                    prop_assert_eq!(&current["status"], &Value::Object(run.status.clone()), "{:#?}", story);
                    prop_assert_eq!(&current["state"], &run.status["state"]);
                    prop_assert_eq!(posted(&app.history("r").await), history, "{:#?}", story);
                }
                None => {
                    prop_assert_eq!(app.get("/_mock/runs/r").await.status.as_u16(), 404, "{:#?}", story);
                }
            }
            Ok(())
        })?;
    }
}

// ---- Any accepted object reads back as it was posted ----------------------------------

/// A JSON value to be written out by hand, so that the test decides its spelling:
/// escapes, number formats and whitespace.
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    /// A number token, as written.
    Number(String),
    String(Text),
    Array(Vec<Json>, usize),
    Object(Vec<(Text, Json)>, usize),
}

/// A string: its characters, and which of them to write as `\u` escapes.
#[derive(Debug, Clone)]
struct Text {
    chars: Vec<char>,
    escaped: Vec<bool>,
}

impl Text {
    fn value(&self) -> String {
        self.chars.iter().collect()
    }

    fn write(&self, out: &mut String) {
        out.push('"');
        for (i, &c) in self.chars.iter().enumerate() {
            if self.escaped.get(i).copied().unwrap_or(false) {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
                continue;
            }
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

const SPACES: [&str; 5] = ["", " ", "\n  ", "\t", "\r\n"];

impl Json {
    fn write(&self, out: &mut String, tokens: &mut Vec<String>) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => {
                out.push_str(n);
                tokens.push(n.clone());
            }
            Json::String(text) => {
                let mut written = String::new();
                text.write(&mut written);
                out.push_str(&written);
                tokens.push(written);
            }
            Json::Array(items, space) => {
                let space = SPACES[space % SPACES.len()];
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(space);
                    item.write(out, tokens);
                }
                out.push_str(space);
                out.push(']');
            }
            Json::Object(members, space) => {
                let space = SPACES[space % SPACES.len()];
                out.push('{');
                for (i, (name, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(space);
                    name.write(out);
                    out.push_str(space);
                    out.push(':');
                    out.push_str(space);
                    value.write(out, tokens);
                }
                out.push_str(space);
                out.push('}');
            }
        }
    }
}

fn text(max: usize) -> impl Strategy<Value = Text> {
    let c = prop_oneof![
        6 => proptest::char::range('a', 'z'),
        2 => prop::sample::select(vec!['"', '\\', '/', ' ', '\n', '\t', '\u{0}', '\u{1f}', '\u{7f}']),
        2 => prop::sample::select(vec!['é', 'ß', '€', '中', '\u{2028}', '\u{feff}', '😀', '𝄞']),
        1 => any::<char>(),
    ];
    prop::collection::vec((c, prop::bool::weighted(0.2)), 0..max).prop_map(|pairs| {
        let (chars, escaped) = pairs.into_iter().unzip();
        Text { chars, escaped }
    })
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        // Beyond u64 and i64: exact only if kept as written.
        "-?[1-9][0-9]{19,40}",
        "-?(0|[1-9][0-9]{0,6})\\.[0-9]{1,17}",
        // Exponents stay within what an f64 can hold, so serde_json reads them.
        "-?[1-9](\\.[0-9]{1,16})?[eE][+-]?[0-9]{1,2}",
        prop::sample::select(vec!["0", "-0", "0.1", "1.0", "1E+2", "0e0", "-0.0e-0"])
            .prop_map(str::to_owned),
    ]
}

/// Members with distinct names, none of them in `reserved`.
fn members(
    value: impl Strategy<Value = Json> + 'static,
    count: std::ops::Range<usize>,
    reserved: &'static [&'static str],
) -> impl Strategy<Value = Vec<(Text, Json)>> {
    prop::collection::vec((text(6), value), count).prop_map(move |members| {
        let mut seen = std::collections::BTreeSet::new();
        members
            .into_iter()
            .filter(|(name, _)| {
                let name = name.value();
                !reserved.contains(&name.as_str()) && seen.insert(name)
            })
            .collect()
    })
}

fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number().prop_map(Json::Number),
        text(12).prop_map(Json::String),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 0..5), any::<usize>())
                .prop_map(|(items, space)| Json::Array(items, space)),
            (members(inner, 0..5, &[]), any::<usize>())
                .prop_map(|(members, space)| Json::Object(members, space)),
        ]
    })
}

const RESERVED: &[&str] = &[
    "jobId",
    "state",
    "jobConfig",
    "result",
    "startTime",
    "endTime",
    "duration",
];

/// An object with a valid `jobId` and `state` somewhere among arbitrary members, and
/// perhaps a `jobConfig` without an `id` and a `result` without the ids and state the
/// rules compare.
fn any_update() -> impl Strategy<Value = (String, Json)> {
    let job_id = "[A-Za-z0-9._-]{1,40}".prop_filter("not . or ..", |id| id != "." && id != "..");
    let nested = || {
        (
            members(
                json_value(),
                0..5,
                &["id", "jobRunId", "jobConfigId", "state"],
            ),
            any::<usize>(),
        )
            .prop_map(|(members, space)| Json::Object(members, space))
    };
    (
        job_id,
        prop::sample::select(STATES.to_vec()),
        members(json_value(), 0..8, RESERVED),
        prop::option::of(nested()),
        prop::option::of(nested()),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        (
            any::<usize>(),
            prop::collection::vec(prop::bool::weighted(0.2), 5),
        ),
    )
        .prop_map(
            |(job_id, state, mut extra, config, result, at_id, at_state, (space, escaped))| {
                // The names and values the rules read, perhaps with escapes:
                // `"st\u0061te"` is `state`.
                let named = |name: &str| Text {
                    chars: name.chars().collect(),
                    escaped: escaped.clone(),
                };
                if let Some(config) = config {
                    extra.push((named("jobConfig"), config));
                }
                if let Some(result) = result {
                    extra.push((named("result"), result));
                }
                let at = at_id.index(extra.len() + 1);
                let id = Json::String(named(&job_id));
                extra.insert(at, (named("jobId"), id));
                let at = at_state.index(extra.len() + 1);
                extra.insert(at, (named("state"), Json::String(named(state))));
                (job_id, Json::Object(extra, space))
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Whatever else an accepted update carries (nested objects, arrays, escapes,
    /// non-ASCII text, big integers, exponents), the run's status (its non-null members)
    /// and its history read it back equal as JSON, and every number and string value
    /// reads back exactly as it was written.
    #[test]
    fn an_accepted_object_reads_back_as_posted((job_id, update) in any_update()) {
        let mut text = String::new();
        let mut tokens = Vec::new();
        update.write(&mut text, &mut tokens);
        let sent: Value = serde_json::from_str(&text).unwrap();
        let mut status = sent.as_object().unwrap().clone();
        status.retain(|_, value| !value.is_null());

        let (runtime, app) = reset_app();
        runtime.block_on(async {
            let answer = app.post_text(&text).await;
            prop_assert_eq!(answer.status.as_u16(), 200, "{}\n{}", text, answer.text);

            let run = app.get(&format!("/_mock/runs/{job_id}")).await;
            prop_assert_eq!(&run.json["status"], &Value::Object(status.clone()), "{}", text);
            let history = app.get(&format!("/_mock/runs/{job_id}/history")).await;
            prop_assert_eq!(posted(&history.json), vec![sent.clone()], "{}", text);
            let list = app.get(STATUS).await;
            prop_assert_eq!(&list.json, &json!([status]), "{}", text);
            for token in &tokens {
                prop_assert!(run.text.contains(token.as_str()), "{} not in {}", token, run.text);
                prop_assert!(history.text.contains(token.as_str()), "{} not in {}", token, history.text);
            }
            Ok(())
        })?;
    }
}
