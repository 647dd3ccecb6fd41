//! A strict JSON scanner for the common shape of a status update: one pass that checks
//! the whole body and splits it into members, without serde's machinery.
//!
//! It answers only when it is sure. Anything unusual (an escaped member name, `jobConfig`
//! or `result` not an object, deep nesting, a syntax error) gives `None`, and serde_json
//! reads the body instead and reports the errors. So whatever it accepts, serde_json
//! accepts too and splits the same way; the tests below hold it to that.
//!
//! Most of a Fusion body is string contents (SQL in `jobConfig`), so strings are where
//! the time goes: they are read sixteen bytes at a time, in vector registers (the `wide`
//! crate), to the closing quote, the next escape, or a control character, which JSON does
//! not allow raw.

use std::borrow::Cow;

use wide::u8x16;

/// Deeper bodies are left to serde_json (which allows more, up to the contract's depth
/// limit); status updates nest a few levels.
pub const MAX_NESTING: usize = 32;

/// Members of an object, keys unescaped and values as written, borrowed from its text.
pub type Pairs<'a> = Vec<(Cow<'a, str>, &'a str)>;

/// A status split into members: `(name, value as written)` in order, and the members of
/// the last `jobConfig` and `result`.
pub struct Scanned<'a> {
    pub members: Pairs<'a>,
    pub job_config: Option<Pairs<'a>>,
    pub result: Option<Pairs<'a>>,
}

/// Checks and splits `doc`, a JSON object; `None` when it is not sure (see the module
/// documentation).
pub fn status(doc: &str) -> Option<Scanned<'_>> {
    let mut scan = Scan {
        text: doc,
        bytes: doc.as_bytes(),
        at: 0,
    };
    let (mut job_config, mut result) = (None, None);
    scan.skip_whitespace();
    let members = scan.pairs(1, |scan, name| {
        let slot = match name {
            "jobConfig" => &mut job_config,
            "result" => &mut result,
            _ => return scan.value(1),
        };
        // Only an object is the common case; serde_json reads anything else.
        if scan.peek() != Some(b'{') {
            return None;
        }
        *slot = Some(scan.pairs(2, |scan, _| scan.value(2))?);
        Some(())
    })?;
    scan.skip_whitespace();
    (scan.at == scan.bytes.len()).then_some(Scanned {
        members,
        job_config,
        result,
    })
}

struct Scan<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(byte)).then(|| self.at += 1)
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// The object at `at`, nested `depth` deep: its members, names unescaped (an escaped
    /// name gives `None`) and values as written. `value` scans each value, starting on
    /// its first byte, given the member's name.
    fn pairs(
        &mut self,
        depth: usize,
        mut value: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<Pairs<'a>> {
        let mut pairs = Vec::with_capacity(12);
        self.members(depth, |scan, name| {
            let start = scan.at;
            value(scan, name)?;
            pairs.push((Cow::Borrowed(name), scan.text.get(start..scan.at)?));
            Some(())
        })?;
        Some(pairs)
    }

    /// Walks the object at `at`, calling `member` with each name (unescaped names only)
    /// once `at` is on the first byte of its value; `member` must scan the value.
    fn members(
        &mut self,
        depth: usize,
        mut member: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
        self.items([b'{', b'}'], depth, |scan| {
            let (start, end, escaped) = scan.string()?;
            if escaped {
                return None;
            }
            let name = scan.text.get(start..end)?;
            scan.skip_whitespace();
            scan.eat(b':')?;
            scan.skip_whitespace();
            member(scan, name)
        })
    }

    /// Walks the bracketed list at `at` (an object's members, an array's elements),
    /// nested `depth` deep: `item` scans each one from its first byte.
    fn items(
        &mut self,
        [open, close]: [u8; 2],
        depth: usize,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        if depth > MAX_NESTING {
            return None;
        }
        self.eat(open)?;
        self.skip_whitespace();
        if self.eat(close).is_some() {
            return Some(());
        }
        loop {
            item(self)?;
            self.skip_whitespace();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.skip_whitespace();
                }
                byte if byte == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Scans the value at `at`, nested `depth` deep.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.members(depth + 1, |scan, _| scan.value(depth + 1)),
            b'[' => self.array(depth + 1),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        self.items([b'[', b']'], depth, |scan| scan.value(depth))
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// A number as RFC 8259 writes it: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            self.digits1()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.digits1()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    fn digits1(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }

    /// The string at `at`: the span of its contents as written, and whether it has
    /// escapes. Escapes are checked as serde_json checks a string it skips: one of
    /// `\" \\ \/ \b \f \n \r \t`, or `\u` and four hex digits.
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        self.eat(b'"')?;
        let start = self.at;
        let mut escaped = false;
        loop {
            self.at += stop(self.bytes.get(self.at..)?)?;
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some((start, self.at - 1, escaped));
                }
                b'\\' => escaped = true,
                // A control character, which JSON does not allow raw.
                _ => return None,
            }
            match self.bytes.get(self.at + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 2,
                b'u' => {
                    let hex = self.bytes.get(self.at + 2..self.at + 6)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    self.at += 6;
                }
                _ => return None,
            }
        }
    }
}

/// Where in `bytes` a string's contents stop running on: the first `"`, `\` or control
/// character (below 0x20). Sixteen bytes at a time, in one vector register each: most
/// strings of a status end within the first sixteen, and the long ones (SQL) are read at
/// a vector's pace with no separate pass for control characters.
pub(super) fn stop(bytes: &[u8]) -> Option<usize> {
    let quote = u8x16::splat(b'"');
    let backslash = u8x16::splat(b'\\');
    let below_space = u8x16::splat(0x1f);
    let (chunks, tail) = bytes.as_chunks::<16>();
    for (i, chunk) in chunks.iter().enumerate() {
        let v = u8x16::new(*chunk);
        let hits = v.simd_eq(quote) | v.simd_eq(backslash) | v.min(below_space).simd_eq(v);
        let mask = hits.to_bitmask();
        if mask != 0 {
            return Some(i * 16 + mask.trailing_zeros() as usize);
        }
    }
    let at = tail
        .iter()
        .position(|&b| matches!(b, b'"' | b'\\' | 0..0x20))?;
    Some(chunks.len() * 16 + at)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::json;

    type Owned = Vec<(String, String)>;

    fn owned(pairs: &Pairs<'_>) -> Owned {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).to_owned()))
            .collect()
    }

    /// What serde_json's one pass reads, in the scanner's terms.
    fn parsed(body: &str) -> Option<(Owned, Option<Owned>, Option<Owned>)> {
        let (members, job_config, result) = json::parse_status(body)?;
        Some((
            owned(&members),
            job_config.as_ref().map(owned),
            result.as_ref().map(owned),
        ))
    }

    fn scanned(body: &str) -> Option<(Owned, Option<Owned>, Option<Owned>)> {
        let read = status(body)?;
        Some((
            owned(&read.members),
            read.job_config.as_ref().map(owned),
            read.result.as_ref().map(owned),
        ))
    }

    /// The scanner answers only what serde_json answers the same way.
    fn agrees(body: &str) -> Result<(), TestCaseError> {
        if let Some(scan) = scanned(body) {
            prop_assert_eq!(Some(scan), parsed(body), "{}", body);
        }
        Ok(())
    }

    #[test]
    fn reads_the_seed_and_common_bodies_as_serde_json_does() {
        let seed = include_str!("../../tests/fixtures/seed-status-update.json");
        for body in [
            seed,
            r#"{}"#,
            " {\"a\" : 1 , \"b\":[1,{\"c\":\"}]\"}], \"d\":\"x\\\"y\\u00e9\", \"f\":{\"g\":{}} ,\"h\":null,\"i\":-1.5e3 }\r\n",
            r#"{"jobConfig":{},"result":{ },"state":"running","n":[true,false,null,0,-0.0,1E+2,[]]}"#,
            r#"{"jobConfig":{"id":"first"},"jobConfig":{"id":"second"},"x":1}"#,
            "{\n  \"result\": {\n    \"state\": \"finished\"\n  }\n}\n",
        ] {
            assert!(status(body).is_some(), "{body}");
            agrees(body).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn leaves_the_uncommon_and_the_wrong_to_serde_json() {
        for body in [
            r#"{"jobConfig":"a string"}"#,
            r#"{"result":[1]}"#,
            r#"{"job\u0043onfig":{}}"#,
            r#"{"jobConfig":{"i\u0064":"x"}}"#,
            "[]",
            r#"{"a":"#,
            r#"{"a":1,}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":tru}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u00g0"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":1} x"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            "{\"a\":1}\u{a0}",
        ] {
            assert!(status(body).is_none(), "{body}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(40), "]".repeat(40));
        assert!(status(&deep).is_none());
    }

    #[test]
    fn a_run_stops_at_the_first_quote_backslash_or_control_character() {
        // Every length up to three chunks and a tail, each byte in turn a stop, among
        // bytes just above and far above a control character and next to `"` and `\`.
        for len in 0..60 {
            for filler in [b' ', b'!', b'#', b'[', b']', b'~', 0x80, 0xff] {
                let mut text = vec![filler; len];
                assert_eq!(stop(&text), None, "{len}");
                for at in 0..len {
                    for byte in [0x00, 0x1f, b'"', b'\\'] {
                        text[at] = byte;
                        assert_eq!(stop(&text), Some(at), "{len} {at} {byte}");
                        // Only the first counts.
                        if at + 1 < len {
                            text[len - 1] = b'"';
                            assert_eq!(stop(&text), Some(at), "{len} {at} {byte}");
                            text[len - 1] = filler;
                        }
                    }
                    text[at] = filler;
                }
            }
        }
    }

    /// Valid JSON objects, with members named like a status's.
    fn object() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<f64>().prop_map(|f| serde_json::to_string(&f).unwrap_or_default()),
            any::<i64>().prop_map(|i| i.to_string()),
            ".{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        ];
        let value = leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(("[a-z]{1,3}|id|type|state", inner), 0..4).prop_map(|m| {
                    let m: Vec<_> = m.iter().map(|(k, v)| format!("\"{k}\" : {v}")).collect();
                    format!("{{ {} }}", m.join(", "))
                }),
            ]
        });
        let name = "jobConfig|result|state|jobId|[a-z]{1,4}";
        prop::collection::vec((name, value), 0..6).prop_map(|m| {
            let m: Vec<_> = m.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", m.join(",\n"))
        })
    }

    /// Valid objects with a few pieces inserted or bytes deleted: mostly invalid, some
    /// still valid, all of it near the shapes a scanner can get wrong.
    fn jsonish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just(""),
            Just("{"),
            Just("}"),
            Just("["),
            Just("]"),
            Just(","),
            Just(":"),
            Just(" "),
            Just("\t"),
            Just("\""),
            Just("\\"),
            Just("\\u12"),
            Just("\\u00e9"),
            Just("0"),
            Just("-"),
            Just("."),
            Just("e"),
            Just("true"),
            Just("\"jobConfig\""),
            Just("\"result\":{}"),
        ];
        let edit = (any::<prop::sample::Index>(), 0..3usize, piece);
        (object(), prop::collection::vec(edit, 0..3)).prop_map(|(mut body, edits)| {
            for (at, delete, insert) in edits {
                let starts: Vec<usize> = body.char_indices().map(|(i, _)| i).collect();
                if starts.is_empty() {
                    break;
                }
                let from = at.index(starts.len());
                let to = starts.get(from + delete).copied().unwrap_or(body.len());
                body.replace_range(starts[from]..to, insert);
            }
            body
        })
    }

    proptest! {
        #[test]
        fn whatever_it_answers_serde_json_answers_alike(body in jsonish()) {
            agrees(&body)?;
        }

        #[test]
        fn valid_objects_are_read_alike(body in object()) {
            agrees(&body)?;
            // Everything this strategy writes is common: the scanner reads it all
            // unless a jobConfig or result is not an object.
            let odd = parsed(&body).is_none();
            prop_assert_eq!(status(&body).is_none(), odd, "{}", body);
        }
    }
}
