//! Raw JSON: pieces of a posted body kept exactly as sent, the one-level parse that finds
//! them, the depth limit, and equality "as JSON values" for spotting a client's retry.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use indexmap::IndexMap;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// How deep a body may nest arrays and objects (the contract, Validation).
pub const MAX_DEPTH: usize = 128;

/// A JSON value as the client wrote it: a span of a shared, already validated document.
///
/// Cloning is a reference-count increment, so the members of a posted update and its
/// history entry share the one copy of its body.
#[derive(Clone, PartialEq, Eq)]
pub struct RawJson {
    doc: Arc<str>,
    span: Range<usize>,
}

impl RawJson {
    /// The whole of `doc`, less the JSON whitespace around it.
    pub fn whole(doc: Arc<str>) -> Self {
        let trimmed = doc.trim_matches(is_json_whitespace);
        let start = offset_in(&doc, trimmed);
        let span = start..start + trimmed.len();
        RawJson { doc, span }
    }

    /// The part of `doc` that `part` borrows from it. Callers pass parts of `doc`; were
    /// `part` from elsewhere, it would get a document of its own rather than a wrong span.
    fn within(doc: &Arc<str>, part: &str) -> Self {
        RawJson::span_of(doc, part).unwrap_or_else(|| RawJson::whole(Arc::from(part)))
    }

    /// The part of `doc` that `part` borrows from it; `None` when it borrows from
    /// something else.
    fn span_of(doc: &Arc<str>, part: &str) -> Option<Self> {
        let start = (part.as_ptr() as usize).checked_sub(doc.as_ptr() as usize)?;
        (start + part.len() <= doc.len()).then(|| RawJson {
            doc: Arc::clone(doc),
            span: start..start + part.len(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.doc[self.span.clone()]
    }

    pub fn is_null(&self) -> bool {
        self.as_str() == "null"
    }

    /// The same value in a document of its own, so that keeping it does not keep the
    /// rest of the body it came from alive.
    /// Whether both are spans of the same document.
    pub fn shares_doc(&self, other: &RawJson) -> bool {
        Arc::ptr_eq(&self.doc, &other.doc)
    }

    pub fn detached(&self) -> RawJson {
        let doc: Arc<str> = Arc::from(self.as_str());
        let span = 0..doc.len();
        RawJson { doc, span }
    }

    pub fn to_raw_value(&self) -> Box<RawValue> {
        raw_value(self.as_str().to_owned())
    }
}

/// A string a status holds, unescaped. Most have no escapes: such a string is the span of
/// its text in the stored body, which costs no allocation and no copy; the others are
/// unescaped into text of their own.
#[derive(Clone)]
pub enum Text {
    Span(RawJson),
    Own(Arc<str>),
}

impl Text {
    /// `text`, the unescaped string of a value in `doc`: a span of `doc` when it borrows
    /// from it.
    pub fn within(doc: &Arc<str>, text: Cow<'_, str>) -> Text {
        let span = match &text {
            Cow::Borrowed(part) => RawJson::span_of(doc, part),
            Cow::Owned(_) => None,
        };
        span.map_or_else(|| Text::Own(Arc::from(text.as_ref())), Text::Span)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Text::Span(raw) => raw.as_str(),
            Text::Own(text) => text,
        }
    }
}

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Text {
        Text::Own(Arc::from(text))
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An owned [`RawValue`] of JSON text the mock stored or assembled, for embedding in a
/// serialized answer. Such text is valid JSON by construction; were it not, the value
/// reads back as `null` and the bug is logged, rather than taking the answer down.
pub fn raw_value(json: String) -> Box<RawValue> {
    RawValue::from_string(json).unwrap_or_else(|e| {
        tracing::error!(error = %e, "stored JSON no longer parses; serving null");
        RawValue::NULL.to_owned()
    })
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_raw_value().serialize(serializer)
    }
}

fn is_json_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Where `part`, a sub-slice of `whole`, starts in it.
fn offset_in(whole: &str, part: &str) -> usize {
    (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize)
}

/// The members of a JSON object: keys unescaped, values as written, in the order each key
/// first appears; a key written twice has its last value, as parsers (Jackson among them)
/// read it.
/// Members by name. foldhash: quick on short keys, seeded per process so a client
/// cannot choose keys that collide.
pub type Members = IndexMap<Name, RawJson, foldhash::fast::RandomState>;

/// The members of the JSON object `doc`, values left raw: nested values are scanned,
/// never built into a tree.
pub fn parse_members(doc: &Arc<str>) -> Result<Members, serde_json::Error> {
    parse_members_and_repeats(doc).map(|(members, _)| members)
}

/// [`parse_members`], and the names written more than once (see [`Repeats`]).
pub fn parse_members_and_repeats(doc: &Arc<str>) -> Result<(Members, Repeats), serde_json::Error> {
    let WrittenMembers(pairs) = serde_json::from_str(doc)?;
    let members: Members = pairs
        .iter()
        .map(|(name, value)| (member_name(name), RawJson::within(doc, value.get())))
        .collect();
    let repeats = if members.len() < pairs.len() {
        let names: Vec<&str> = pairs.iter().map(|(name, _)| name.as_ref()).collect();
        repeats_among(&names)
    } else {
        Vec::new()
    };
    Ok((members, repeats))
}

/// Members of an object, keys unescaped and values as written, borrowed from its text.
pub type Pairs<'a> = Vec<(Cow<'a, str>, &'a str)>;

/// The names an object has more than once, each with how many times, in the order each
/// first appears: parsers (Jackson among them) take the last value, which a client may
/// not have meant.
pub type Repeats = Vec<(String, usize)>;

/// The names written more than once among an object's `pairs`, with their counts: a
/// quadratic count, for an object known to have some (its members, a map, are fewer
/// than its pairs).
pub fn repeats(pairs: &[(Cow<'_, str>, &str)]) -> Repeats {
    let names: Vec<&str> = pairs.iter().map(|(name, _)| name.as_ref()).collect();
    repeats_among(&names)
}

/// [`repeats`] among `names`.
fn repeats_among(names: &[&str]) -> Repeats {
    names
        .iter()
        .enumerate()
        .filter(|(i, name)| !names[..*i].contains(name))
        .map(|(i, name)| (*name, names[i..].iter().filter(|n| *n == name).count()))
        .filter(|(_, count)| *count > 1)
        .map(|(name, count)| (name.to_owned(), count))
        .collect()
}

/// A status read in one pass: its members, and the members of `jobConfig` and `result`
/// (the last of each, when it is an object), which the rules read one level deeper.
pub struct StatusText<'a> {
    pub members: Members,
    /// The names `members` has more than once.
    pub repeats: Repeats,
    pub job_config: Option<Pairs<'a>>,
    pub result: Option<Pairs<'a>>,
}

/// Reads a status in one pass, or `None` when it is anything but the common case (not
/// an object, `jobConfig` or `result` not an object or its name escaped, a syntax error):
/// [`parse_members`] and [`nested_members`] then read it, and give the errors.
pub fn read_status(doc: &Arc<str>) -> Option<StatusText<'_>> {
    let (pairs, job_config, result) = parse_status(doc)?;
    let members: Members = pairs
        .iter()
        .map(|(name, value)| (member_name(name), RawJson::within(doc, value)))
        .collect();
    // A name written twice is one member: the count tells, for nothing.
    let repeats = if members.len() < pairs.len() {
        repeats(&pairs)
    } else {
        Vec::new()
    };
    Some(StatusText {
        members,
        repeats,
        job_config,
        result,
    })
}

/// [`read_status`] with serde_json: the members in order (a repeated name each time),
/// and those of the last `jobConfig` and `result`.
///
/// A value read as raw text is scanned once by the parser; `jobConfig` and `result` are
/// visited member by member instead, so they are not scanned a second time to find their
/// ids. Their own text is then the span from the `{` after the key to the `}` after the
/// last member, which only JSON whitespace separates from what the parser visited.
pub(crate) fn parse_status(doc: &str) -> Option<StatusRead<'_>> {
    let mut deserializer = serde_json::Deserializer::from_str(doc);
    let read = StatusSeed { doc }.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(read)
}

pub(crate) type StatusRead<'a> = (Pairs<'a>, Option<Pairs<'a>>, Option<Pairs<'a>>);

struct StatusSeed<'a> {
    doc: &'a str,
}

impl<'de> de::DeserializeSeed<'de> for StatusSeed<'de> {
    type Value = StatusRead<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for StatusSeed<'de> {
    type Value = StatusRead<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(12));
        let (mut job_config, mut result) = (None, None);
        while let Some(Key(name)) = map.next_key()? {
            let nested = match name.as_ref() {
                "jobConfig" => Some(&mut job_config),
                "result" => Some(&mut result),
                _ => None,
            };
            let Some(slot) = nested else {
                members.push((name, map.next_value::<&'de RawValue>()?.get()));
                continue;
            };
            let Cow::Borrowed(key) = name else {
                return Err(de::Error::custom("an escaped name: read it the long way"));
            };
            let pairs = map.next_value_seed(ObjectSeed)?;
            let text = object_text(self.doc, key, &pairs)
                .ok_or_else(|| de::Error::custom("the object's text was not found"))?;
            members.push((name, text));
            *slot = Some(pairs);
        }
        Ok((members, job_config, result))
    }
}

/// An object's members, keys unescaped and values raw.
struct ObjectSeed;

impl<'de> de::DeserializeSeed<'de> for ObjectSeed {
    type Value = Pairs<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        WrittenMembers::deserialize(deserializer).map(|members| {
            members
                .0
                .into_iter()
                .map(|(name, value)| (name, value.get()))
                .collect()
        })
    }
}

/// The text of the object that is the value of `key` (a name borrowed from `doc`) and has
/// the members `pairs` (values borrowed from `doc`): from the `{` after the name to the
/// `}` after its last member.
fn object_text<'d>(doc: &'d str, key: &str, pairs: &[(Cow<'_, str>, &str)]) -> Option<&'d str> {
    let bytes = doc.as_bytes();
    // After the name: its closing quote, whitespace, a colon, whitespace, the brace.
    let mut at = offset_in(doc, key) + key.len();
    (bytes.get(at) == Some(&b'"')).then_some(())?;
    at = skip_whitespace(bytes, at + 1);
    (bytes.get(at) == Some(&b':')).then_some(())?;
    let start = skip_whitespace(bytes, at + 1);
    (bytes.get(start) == Some(&b'{')).then_some(())?;
    let last = match pairs.last() {
        Some((_, value)) => offset_in(doc, value) + value.len(),
        None => start + 1,
    };
    let end = skip_whitespace(bytes, last);
    (bytes.get(end) == Some(&b'}')).then_some(())?;
    doc.get(start..=end)
}

/// The names of a Fusion status's members.
const STATUS_NAMES: [&str; 8] = [
    "state",
    "jobId",
    "jobConfig",
    "hostname",
    "result",
    "startTime",
    "endTime",
    "duration",
];

/// A member name: static for the names every status has, so that a stored run holds
/// no copy of them and keeping one costs no reference count; shared for any other.
#[derive(Clone)]
pub enum Name {
    Standard(&'static str),
    Other(Arc<str>),
}

impl Name {
    pub fn as_str(&self) -> &str {
        match self {
            Name::Standard(name) => name,
            Name::Other(name) => name,
        }
    }
}

impl std::ops::Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

// Equal and hashed as the text, whichever way it is held, as `Borrow<str>` requires.
impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A member name, static when it is a standard one.
fn member_name(name: &str) -> Name {
    match STATUS_NAMES.iter().find(|known| **known == name) {
        Some(known) => Name::Standard(known),
        None => Name::Other(Arc::from(name)),
    }
}

/// The members of an object nested in a stored document, borrowed from it.
pub fn object_members(value: &str) -> Result<Vec<(Cow<'_, str>, &RawValue)>, serde_json::Error> {
    serde_json::from_str::<WrittenMembers<'_>>(value).map(|m| m.0)
}

/// The members of an object nested in a document the parser has already checked: keys
/// unescaped, values raw. `None` when `valid` is not an object.
///
/// A second scan with the parser would check the text again; this one only splits it,
/// jumping over strings with `memchr`, which is several times faster on the long SQL
/// strings job configs carry. It must only be given text the parser accepted.
pub fn nested_members(valid: &str) -> Option<Vec<(Cow<'_, str>, &str)>> {
    let bytes = valid.as_bytes();
    let mut at = skip_whitespace(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    let mut members = Vec::with_capacity(12);
    loop {
        at = skip_whitespace(bytes, at);
        match bytes.get(at) {
            Some(b'}') | None => return Some(members),
            Some(b',') => {
                at += 1;
                continue;
            }
            _ => {}
        }
        let (key_end, key_escaped) = string_end(bytes, at)?;
        let key_raw = valid.get(at..key_end)?;
        at = skip_whitespace(bytes, key_end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        let start = skip_whitespace(bytes, at + 1);
        let end = value_end(bytes, start)?;
        let key = match key_raw.get(1..key_raw.len() - 1) {
            Some(plain) if !key_escaped => Cow::Borrowed(plain),
            _ => Cow::Owned(serde_json::from_str::<String>(key_raw).ok()?),
        };
        members.push((key, valid.get(start..end)?));
        at = end;
    }
}

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while bytes
        .get(at)
        .is_some_and(|b| is_json_whitespace(char::from(*b)))
    {
        at += 1;
    }
    at
}

/// The end (one past the closing quote) of the string that starts at `start`, and
/// whether it has escapes.
fn string_end(bytes: &[u8], start: usize) -> Option<(usize, bool)> {
    if bytes.get(start) != Some(&b'"') {
        return None;
    }
    let mut at = start + 1;
    let mut escaped = false;
    loop {
        at += memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
        if bytes[at] == b'"' {
            return Some((at + 1, escaped));
        }
        escaped = true;
        at += 2; // an escape: the backslash and the character it escapes
    }
}

/// The end of the value that starts at `start`.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match bytes.get(start)? {
        b'"' => string_end(bytes, start).map(|(end, _)| end),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut at = start;
            loop {
                match bytes.get(at)? {
                    b'"' => {
                        at = string_end(bytes, at)?.0;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
        }
        _ => {
            let rest = bytes.get(start..)?;
            let len = rest
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']') || is_json_whitespace(char::from(*b)))
                .unwrap_or(rest.len());
            Some(start + len)
        }
    }
}

/// A JSON object read one level deep, as written: keys unescaped, values raw.
struct WrittenMembers<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for WrittenMembers<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;

        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = WrittenMembers<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(12));
                while let Some(Key(name)) = map.next_key()? {
                    members.push((name, map.next_value::<&'de RawValue>()?));
                }
                Ok(WrittenMembers(members))
            }
        }

        deserializer.deserialize_map(MembersVisitor)
    }
}

/// A string that borrows from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The string a raw JSON value holds, unescaped; `None` when it is not a string.
pub fn as_string(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.starts_with('"') {
        return None;
    }
    // Most strings have no escapes: then the text between the quotes is the string,
    // once it is known to hold no control character, which JSON does not allow raw.
    if let Some(plain) = raw.get(1..raw.len() - 1)
        && raw.len() >= 2
        && raw.ends_with('"')
        && !plain.bytes().any(|b| matches!(b, b'"' | b'\\' | 0..0x20))
    {
        return Some(Cow::Borrowed(plain));
    }
    serde_json::from_str::<Key<'_>>(raw).ok().map(|k| k.0)
}

/// A position in a text: lines from 1, and the column is the offending byte's place on its
/// line, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` of `bytes`.
    pub fn of(bytes: &[u8], offset: usize) -> Self {
        let before = &bytes[..offset.min(bytes.len())];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        Position {
            line,
            column: offset - line_start + 1,
        }
    }
}

/// Finds the first `[` or `{` that opens level `MAX_DEPTH + 1`, outside strings.
///
/// serde_json does not bound the depth of values it skips as raw, so the limit is
/// enforced here. A body with at most `MAX_DEPTH` brackets cannot be too deep, and
/// counting them is far cheaper than tracking strings, so most bodies stop there.
pub fn find_too_deep(bytes: &[u8]) -> Option<usize> {
    // The opener that would be one too many, if all were nested.
    memchr::memchr2_iter(b'[', b'{', bytes).nth(MAX_DEPTH)?;
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Whether two raw JSON values are equal as JSON values: object key order and whitespace
/// do not matter, strings are compared unescaped, numbers by exact value.
pub fn json_eq(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(b'{'), Some(b'{')) => match (object_members(a), object_members(b)) {
            (Ok(x), Ok(y)) => {
                fn pairs<'p>(
                    members: &'p [(Cow<'_, str>, &'p RawValue)],
                ) -> Vec<(&'p str, &'p str)> {
                    members.iter().map(|(k, v)| (k.as_ref(), v.get())).collect()
                }
                members_eq(&pairs(&x), &pairs(&y))
            }
            _ => false,
        },
        (Some(b'['), Some(b'[')) => {
            match (
                serde_json::from_str::<Vec<&RawValue>>(a),
                serde_json::from_str::<Vec<&RawValue>>(b),
            ) {
                (Ok(x), Ok(y)) => {
                    x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| json_eq(p.get(), q.get()))
                }
                _ => false,
            }
        }
        (Some(b'"'), Some(b'"')) => as_string(a).is_some_and(|x| as_string(b) == Some(x)),
        (Some(x), Some(y)) if is_number_start(*x) && is_number_start(*y) => numbers_eq(a, b),
        _ => false,
    }
}

/// Whether two lists of object members are equal as objects: the same keys, each with an
/// equal value; a key written twice counts once, with its last value (as parsers do).
pub fn members_eq(a: &[(&str, &str)], b: &[(&str, &str)]) -> bool {
    let (a, b) = (last_wins(a), last_wins(b));
    a.iter().map(|(k, _)| k).eq(b.iter().map(|(k, _)| k))
        && a.iter().zip(&b).all(|((_, x), (_, y))| json_eq(x, y))
}

/// The members sorted by key, each key once with its last value.
fn last_wins<'m>(members: &[(&'m str, &'m str)]) -> Vec<(&'m str, &'m str)> {
    let mut sorted = members.to_vec();
    // A stable sort keeps a key's values in the order written.
    sorted.sort_by(|x, y| x.0.cmp(y.0));
    let mut distinct: Vec<(&str, &str)> = Vec::with_capacity(sorted.len());
    for member in sorted {
        match distinct.last_mut() {
            Some(last) if last.0 == member.0 => *last = member,
            _ => distinct.push(member),
        }
    }
    distinct
}

fn is_number_start(b: u8) -> bool {
    b == b'-' || b.is_ascii_digit()
}

/// Whether two JSON number literals have the same value, exactly: `1`, `1.0` and `10e-1`
/// are equal; `0.3` and `0.30000000000000001` are not, nor are `1e400` and `2e400`.
fn numbers_eq(a: &str, b: &str) -> bool {
    matches!((Decimal::parse(a), Decimal::parse(b)), (Some(x), Some(y)) if x == y)
}

/// A number as sign, significant digits (no leading or trailing zeros) and the power of
/// ten of the last digit; zero has no digits and no sign.
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i128,
}

impl Decimal {
    fn parse(literal: &str) -> Option<Decimal> {
        let (negative, unsigned) = match literal.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, literal),
        };
        let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
            Some((mantissa, exponent)) => (mantissa, exponent.parse::<i128>().ok()?),
            None => (unsigned, 0),
        };
        let (int, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = format!("{int}{fraction}");
        let significant = digits.trim_end_matches('0');
        // Any exponent is valid JSON, so the arithmetic must not overflow.
        let trailing_zeros = i128::try_from(digits.len() - significant.len()).ok()?;
        let exponent = exponent
            .checked_sub(i128::try_from(fraction.len()).ok()?)?
            .checked_add(trailing_zeros)?;
        let significant = significant.trim_start_matches('0');
        if significant.is_empty() {
            return Some(Decimal {
                negative: false,
                digits: String::new(),
                exponent: 0,
            });
        }
        Some(Decimal {
            negative,
            digits: significant.to_owned(),
            exponent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_members_split_checked_objects_as_the_parser_does() {
        for text in [
            r#"{}"#,
            r#" { "a" : 1 , "b":[1,{"c":"}]"}], "d\"e":"x\\\"y", "f":{"g":{}} ,"h":null,"i":-1.5e3 } "#,
            r#"{"id":"nightly","type":"aggregation","sql":"SELECT '{[' FROM t WHERE a = \"b\""}"#,
            r#"{"a":true,"a":false,"\u0041":"k"}"#,
        ] {
            let parsed: Vec<(String, String)> = object_members(text)
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.get().to_owned()))
                .collect();
            let split: Vec<(String, String)> = nested_members(text)
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.to_owned()))
                .collect();
            assert_eq!(split, parsed, "{text}");
        }
        for not_object in ["[]", "\"{}\"", "1", "null"] {
            assert!(nested_members(not_object).is_none(), "{not_object}");
        }
    }

    #[test]
    fn strings_read_as_the_parser_reads_them() {
        for raw in [
            r#""plain""#,
            r#""""#,
            r#""é and \u00e9""#,
            r#""a\"b""#,
            "\"tab\there\"",
            r#""unterminated"#,
            r#"""#,
            r#""a"b""#,
            "1",
            "null",
        ] {
            let parsed = serde_json::from_str::<String>(raw).ok();
            assert_eq!(as_string(raw).map(Cow::into_owned), parsed, "{raw}");
        }
    }

    #[test]
    fn one_pass_reads_what_two_passes_read() {
        let seed = include_str!("../../tests/fixtures/seed-status-update.json");
        let bodies = [
            seed,
            r#"{"jobConfig":{},"result":{ },"state":"running"}"#,
            r#"{"jobConfig" : { "id" : "a", "nested" : {"id":"b"} } , "result":{"jobRunId":"x","a":[1,{"b":"}"}]} }"#,
            r#"{"jobConfig":{"id":"first"},"jobConfig":{"id":"second"},"x":1}"#,
            r#"{"jobConfig":{"i\u0064":"escaped name inside","type":"t\"q"}}"#,
            "{\n  \"result\": {\n    \"state\": \"finished\"\n  }\n}\n",
        ];
        for body in bodies {
            let doc: Arc<str> = Arc::from(body);
            let read = read_status(&doc).unwrap_or_else(|| panic!("one pass: {body}"));
            let two = parse_members(&doc).unwrap();
            let names = |m: &Members| -> Vec<(String, String)> {
                m.iter()
                    .map(|(k, v)| (k.to_string(), v.as_str().to_owned()))
                    .collect()
            };
            assert_eq!(names(&read.members), names(&two), "{body}");
            let owned = |pairs: Option<Pairs<'_>>| -> Option<Vec<(String, String)>> {
                pairs.map(|p| {
                    p.into_iter()
                        .map(|(k, v)| (k.into_owned(), v.to_owned()))
                        .collect()
                })
            };
            for (name, nested) in [("jobConfig", read.job_config), ("result", read.result)] {
                let split = two.get(name).and_then(|raw| nested_members(raw.as_str()));
                assert_eq!(owned(nested), owned(split), "{name} in {body}");
            }
        }
        // The uncommon cases are left to the two passes.
        for body in [
            r#"{"jobConfig":"a string"}"#,
            r#"{"jobConfig":null}"#,
            r#"{"job\u0043onfig":{}}"#,
            r#"{"result":[1]}"#,
            r#"{"jobConfig":1e400}"#,
            "[]",
            r#"{"a":"#,
        ] {
            assert!(read_status(&Arc::from(body)).is_none(), "{body}");
        }
    }

    /// What [`repeats`] must find, counted the plain way.
    fn counted(names: &[String]) -> Repeats {
        let mut counts: IndexMap<&str, usize> = IndexMap::new();
        for name in names {
            *counts.entry(name.as_str()).or_default() += 1;
        }
        counts
            .into_iter()
            .filter(|(_, count)| *count > 1)
            .map(|(name, count)| (name.to_owned(), count))
            .collect()
    }

    #[test]
    fn repeated_names_are_counted_in_the_order_they_first_appear() {
        let pairs = |names: &[&str]| -> Vec<(Cow<'static, str>, &'static str)> {
            names
                .iter()
                .map(|n| (Cow::Owned((*n).to_owned()), "1"))
                .collect()
        };
        assert_eq!(repeats(&pairs(&[])), Repeats::new());
        assert_eq!(
            repeats(&pairs(&["id", "type", "sql", "ab"])),
            Repeats::new()
        );
        assert_eq!(
            repeats(&pairs(&["b", "a", "b", "a", "c", "b"])),
            [("b".to_owned(), 3), ("a".to_owned(), 2)]
        );
    }

    proptest::proptest! {
        #[test]
        fn repeats_finds_what_counting_finds(
            names in proptest::collection::vec("[ab]{0,3}", 0..24)
        ) {
            let pairs: Vec<(Cow<'_, str>, &str)> =
                names.iter().map(|n| (Cow::Borrowed(n.as_str()), "null")).collect();
            proptest::prop_assert_eq!(repeats(&pairs), counted(&names));
        }
    }

    #[test]
    fn names_are_found_by_their_text_however_they_are_held() {
        let value = || RawJson::whole(Arc::from("1"));
        let mut members = Members::default();
        members.insert(member_name("state"), value());
        members.insert(member_name("custom"), value());
        // The same text held the other way is the same key.
        members.insert(Name::Other(Arc::from("state")), value());
        members.insert(Name::Standard("custom"), value());
        assert_eq!(members.len(), 2);
        assert!(matches!(member_name("state"), Name::Standard("state")));
        assert!(matches!(member_name("custom"), Name::Other(_)));
        for name in ["state", "custom"] {
            assert!(members.get(name).is_some(), "{name}");
        }
    }

    #[test]
    fn members_keep_first_places_last_values_escapes_and_raw_values() {
        let doc: Arc<str> = Arc::from(r#" {"b": 1e400, "a\u0041": {"x": [1, 2]}, "b": "\u00e9"} "#);
        let members = parse_members(&doc).unwrap_or_default();
        let seen: Vec<_> = members
            .iter()
            .map(|(name, value)| (name.as_ref(), value.as_str()))
            .collect();
        // "b" keeps its first place and takes its last value.
        assert_eq!(seen, [("b", r#""\u00e9""#), ("aA", r#"{"x": [1, 2]}"#)]);
        assert_eq!(RawJson::whole(doc).as_str().chars().next(), Some('{'));
    }

    #[test]
    fn non_objects_are_refused_with_a_position() {
        let doc: Arc<str> = Arc::from("[1]");
        let err = parse_members(&doc).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid type: sequence, expected a JSON object at line 1 column 0")
        );
    }

    #[test]
    fn depth_limit_is_exactly_128() {
        let nest = |d: usize| format!("{}{}", "[".repeat(d), "]".repeat(d));
        assert_eq!(find_too_deep(nest(MAX_DEPTH).as_bytes()), None);
        assert_eq!(
            find_too_deep(nest(MAX_DEPTH + 1).as_bytes()),
            Some(MAX_DEPTH)
        );
        // Brackets inside strings, escaped quotes included, do not count.
        let quoted = format!(r#"{{"a":"\"{}"}}"#, "[".repeat(300));
        assert_eq!(find_too_deep(quoted.as_bytes()), None);
    }

    #[test]
    fn a_text_is_a_span_of_its_body_only_when_it_is_in_it() {
        let doc: Arc<str> = Arc::from(r#"{"id":"plain","x":"a\"b"}"#);
        let plain = as_string(&doc[6..13]).unwrap();
        let text = Text::within(&doc, plain);
        assert!(
            matches!(&text, Text::Span(raw) if raw.shares_doc(&RawJson::whole(Arc::clone(&doc))))
        );
        assert_eq!(text.as_str(), "plain");
        // Unescaped, it is not in the body; nor is a string from elsewhere.
        let escaped = as_string(&doc[18..24]).unwrap();
        let text = Text::within(&doc, escaped);
        assert!(matches!(text, Text::Own(_)));
        assert_eq!(text.as_str(), "a\"b");
        let elsewhere = String::from("plain");
        let text = Text::within(&doc, Cow::Borrowed(&elsewhere));
        assert!(matches!(text, Text::Own(_)));
        assert_eq!(text, Text::from("plain"));
    }

    #[test]
    fn positions_count_lines_and_columns_from_one() {
        let text = b"ab\ncd";
        assert_eq!(Position::of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 3), Position { line: 2, column: 1 });
        assert_eq!(Position::of(text, 4), Position { line: 2, column: 2 });
    }

    #[test]
    fn equality_ignores_key_order_whitespace_and_escapes() {
        assert!(json_eq(
            r#"{"a":1,"b":[true,null]}"#,
            r#"{ "b" : [ true , null ], "a" : 1 }"#
        ));
        assert!(json_eq(r#""é""#, r#""\u00e9""#));
        assert!(json_eq("0.1", "1e-1"));
        assert!(json_eq("1", "1.0"));
        assert!(json_eq("10e-1", "1"));
        assert!(json_eq("-0", "0"));
        assert!(json_eq("0.0e5", "-0"));
        assert!(json_eq(
            "123456789012345678901234567890",
            "1.2345678901234567890123456789E+29"
        ));
        assert!(json_eq(r#"{"a":1,"a":2}"#, r#"{"a":2}"#));
    }

    #[test]
    fn equality_sees_every_difference() {
        assert!(!json_eq(r#"{"a":1}"#, r#"{"a":1,"b":1}"#));
        assert!(!json_eq("[1,2]", "[2,1]"));
        assert!(!json_eq("18446744073709551617", "18446744073709551616"));
        assert!(!json_eq("-1", "1"));
        assert!(!json_eq("0.3", "0.30000000000000001"));
        assert!(!json_eq("1e400", "2e400"));
        assert!(!json_eq("1e-400", "0"));
        // Exponents past any integer type are compared without overflowing.
        let huge = format!("10e{}", i128::MAX);
        assert!(!json_eq("1", &huge));
        assert!(!json_eq(&huge, &format!("1e-{}", i128::MAX)));
        assert!(!json_eq(r#""1""#, "1"));
        assert!(!json_eq("true", "false"));
        assert!(!json_eq("null", "{}"));
    }
}

/// Property tests of [`json_eq`]: reformatting, key order and number spelling never
/// change it, and it agrees with `serde_json`'s own equality.
#[cfg(test)]
#[path = "../../tests/it/support/json_values.rs"]
mod json_values;

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::json_eq;

    use super::json_values::value;

    /// `value` as JSON text with every object's keys in an order drawn from `seed`.
    fn shuffled_keys(value: &Value, seed: u64) -> String {
        match value {
            Value::Object(map) => {
                let mut members: Vec<_> = map.iter().collect();
                // A cheap deterministic shuffle: rotate by the seed, then reverse on odd
                // seeds.
                if !members.is_empty() {
                    let by = (seed as usize) % members.len();
                    members.rotate_left(by);
                }
                if seed % 2 == 1 {
                    members.reverse();
                }
                let inner: Vec<String> = members
                    .into_iter()
                    .map(|(k, v)| {
                        format!("{}:{}", Value::from(k.as_str()), shuffled_keys(v, seed / 2))
                    })
                    .collect();
                format!("{{{}}}", inner.join(","))
            }
            Value::Array(items) => {
                let inner: Vec<String> = items.iter().map(|v| shuffled_keys(v, seed / 3)).collect();
                format!("[{}]", inner.join(","))
            }
            other => other.to_string(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn reformatting_never_changes_json_equality(value in value(), seed in any::<u64>()) {
            let compact = value.to_string();
            let pretty = serde_json::to_string_pretty(&value).unwrap_or_default();
            prop_assert!(json_eq(&compact, &pretty));
            let shuffled = shuffled_keys(&value, seed);
            prop_assert!(json_eq(&compact, &shuffled), "{} vs {}", compact, shuffled);
        }

        #[test]
        fn numbers_are_equal_however_they_are_spelt(
            digits in "[1-9][0-9]{0,25}",
            shift in 0usize..30,
            exponent in -400i32..400,
        ) {
            // digits x 10^exponent, written with the decimal point moved `shift` places
            // left and the exponent raised to match, and with trailing zeros.
            let plain = format!("{digits}e{exponent}");
            let padded = format!("{digits}000e{}", exponent - 3);
            let moved = format!("0.{}{digits}E{}", "0".repeat(shift), exponent + digits.len() as i32 + shift as i32);
            prop_assert!(json_eq(&plain, &padded), "{} vs {}", plain, padded);
            prop_assert!(json_eq(&plain, &moved), "{} vs {}", plain, moved);
            let off_by_one_digit = format!("{digits}1e{}", exponent - 1);
            prop_assert!(!json_eq(&plain, &off_by_one_digit), "{} vs {}", plain, off_by_one_digit);
            let negated = format!("-{}", plain);
            prop_assert!(!json_eq(&plain, &negated));
        }

        #[test]
        fn json_equality_agrees_with_value_equality(a in value(), b in value()) {
            prop_assert_eq!(json_eq(&a.to_string(), &b.to_string()), a == b);
        }
    }
}
