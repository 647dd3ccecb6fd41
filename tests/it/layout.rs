//! The code's layout: no two modules of `src/` import each other, directly or through
//! others. Read from the source, not the compiled crate: each file is a module, and a
//! path in its code (`use crate::registry::Registry`, `super::fusion::STATUS`,
//! `json::as_string` for a child `json`) is an edge to the module that defines the item,
//! re-exports (`pub use`) followed. A parent declaring a child (`mod x;`) is no edge;
//! a parent using its child's items is. Test-only code (`#[cfg(test)]`) and comments do
//! not count.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// A module by its path from the crate root, e.g. `["api", "fusion"]`; the root is `[]`.
type Module = Vec<String>;

#[test]
fn no_two_modules_import_each_other() {
    let crate_ = Crate::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path());
    let edges = crate_.edges();
    assert!(
        edges.len() > 50,
        "the reader found only {} edges: it no longer reads the code",
        edges.len()
    );
    let cycles = cycles_of(&edges);
    assert!(
        cycles.is_empty(),
        "modules that import each other (each line a cycle):\n{}",
        cycles.join("\n")
    );
    // Nor do the top-level rooms, each taken with its submodules (`api`, `sim`, ...).
    let rooms: BTreeSet<(Module, Module)> = edges
        .iter()
        .map(|(from, to)| (from[..1].to_vec(), to[..1].to_vec()))
        .filter(|(from, to)| from != to)
        .collect();
    let cycles = cycles_of(&rooms);
    assert!(
        cycles.is_empty(),
        "top-level modules that import each other:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_reader_sees_a_cycle_when_there_is_one() {
    // Two modules that use each other, one through a re-export of its parent.
    let crate_ = Crate::from_files(vec![
        (vec![], "pub mod a; pub mod b; pub use b::Thing;".to_owned()),
        (
            vec!["a".to_owned()],
            "use crate::Thing;\n// crate::c is a comment\nfn f() {}".to_owned(),
        ),
        (
            vec!["b".to_owned()],
            "pub struct Thing;\n#[cfg(test)]\nmod tests { use crate::a::f; }\nfn g() { crate::a::f(); }"
                .to_owned(),
        ),
    ]);
    let edges = crate_.edges();
    assert_eq!(cycles_of(&edges), ["a -> b -> a"]);
}

struct Crate {
    /// Each module's code, comments and test-only items taken out.
    code: BTreeMap<Module, String>,
    /// Each module's re-exports: a name, and the path it stands for.
    reexports: HashMap<Module, HashMap<String, Vec<String>>>,
}

impl Crate {
    fn read(src: &Path) -> Crate {
        let mut files = Vec::new();
        collect(src, src, &mut files);
        Crate::from_files(files)
    }

    fn from_files(files: Vec<(Module, String)>) -> Crate {
        let code: BTreeMap<Module, String> = files
            .into_iter()
            .map(|(module, text)| (module, without_tests(&without_comments(&text))))
            .collect();
        let reexports = code
            .iter()
            .map(|(module, text)| {
                let names = uses(text)
                    .into_iter()
                    .filter(|(public, _, _)| *public)
                    .map(|(_, path, name)| (name, path))
                    .collect();
                (module.clone(), names)
            })
            .collect();
        Crate { code, reexports }
    }

    /// Every module each module's code names, other than itself and the root.
    fn edges(&self) -> BTreeSet<(Module, Module)> {
        let mut edges = BTreeSet::new();
        for (module, text) in &self.code {
            if module.is_empty() {
                continue; // lib.rs: module declarations and re-exports
            }
            let paths = uses(text)
                .into_iter()
                .map(|(_, path, _)| path)
                .chain(paths_in_code(text));
            for path in paths {
                if let Some(target) = self.resolve(module, &path, 0)
                    && !target.is_empty()
                    && &target != module
                {
                    edges.insert((module.clone(), target));
                }
            }
        }
        edges
    }

    /// The module that defines what `path`, written in `from`, names; `None` for a path
    /// outside the crate (another crate's, a local name).
    fn resolve(&self, from: &Module, path: &[String], depth: usize) -> Option<Module> {
        if depth > 8 || path.is_empty() {
            return None;
        }
        let (mut module, rest): (Module, &[String]) = match path[0].as_str() {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (from.clone(), &path[1..]),
            "super" => {
                let mut base = from.clone();
                let mut rest = path;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                (base, rest)
            }
            first if self.is_module(&child(from, first)) => (from.clone(), path),
            _ => return None,
        };
        for (i, segment) in rest.iter().enumerate() {
            let next = child(&module, segment);
            if self.is_module(&next) {
                module = next;
                continue;
            }
            // An item of `module`, or a name it re-exports from elsewhere.
            if let Some(target) = self.reexports.get(&module).and_then(|r| r.get(segment)) {
                let mut followed = target.clone();
                followed.extend(rest[i + 1..].iter().cloned());
                return self.resolve(&module, &followed, depth + 1).or(Some(module));
            }
            return Some(module);
        }
        Some(module)
    }

    fn is_module(&self, module: &Module) -> bool {
        self.code.contains_key(module)
    }
}

fn child(module: &Module, name: &str) -> Module {
    let mut child = module.clone();
    child.push(name.to_owned());
    child
}

/// The `.rs` files under `dir`, each with its module path; `main.rs` is the binary's.
fn collect(src: &Path, dir: &Path, files: &mut Vec<(Module, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(src, &path, files);
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") || path == src.join("main.rs") {
            continue;
        }
        let relative = path.strip_prefix(src).unwrap().with_extension("");
        let mut module: Module = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if module
            .last()
            .is_some_and(|last| last == "mod" || last == "lib")
        {
            module.pop();
        }
        files.push((module, std::fs::read_to_string(&path).unwrap()));
    }
}

/// The code without comments, and with string and character literals emptied.
fn without_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while at < bytes.len() {
        let rest = &text[at..];
        if rest.starts_with("//") {
            at += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            at += rest.find("*/").map_or(rest.len(), |end| end + 2);
        } else if let Some(hashes) = raw_string_start(rest) {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            at += rest[body..]
                .find(&close)
                .map_or(rest.len(), |end| body + end + close.len());
            out.push_str("\"\"");
        } else if rest.starts_with('"') {
            let mut i = 1;
            while i < rest.len() && rest.as_bytes()[i] != b'"' {
                i += if rest.as_bytes()[i] == b'\\' { 2 } else { 1 };
            }
            at += (i + 1).min(rest.len());
            out.push_str("\"\"");
        } else if let Some(length) = char_literal(rest) {
            at += length;
            out.push_str("' '");
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            at += c.len_utf8();
        }
    }
    out
}

/// `r"`, `r#"`, `br##"`...: how many `#` the raw string's quotes take.
fn raw_string_start(rest: &str) -> Option<usize> {
    let after_r = rest.strip_prefix("br").or_else(|| rest.strip_prefix('r'))?;
    let hashes = after_r.bytes().take_while(|b| *b == b'#').count();
    let prefix = rest.len() - after_r.len();
    after_r[hashes..]
        .starts_with('"')
        .then_some(hashes)
        .filter(|_| prefix > 0)
}

/// The length of a character literal at the start of `rest` (`'a'`, `'\n'`, `'\''`,
/// `b'x'`); `None` for a lifetime (`'a`) or anything else.
fn char_literal(rest: &str) -> Option<usize> {
    let (prefix, quoted) = match rest.strip_prefix("b'") {
        Some(after) => (1, after),
        None => (0, rest.strip_prefix('\'')?),
    };
    let mut chars = quoted.char_indices();
    let (_, first) = chars.next()?;
    let end = if first == '\\' {
        quoted[1..].find('\'').map(|at| at + 1)?
    } else {
        let (at, next) = chars.next()?;
        (next == '\'').then_some(at)?
    };
    Some(prefix + 1 + end + 1)
}

/// The code without the items marked `#[cfg(test)]`.
fn without_tests(text: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let item = &rest[at + MARK.len()..];
        let (brace, semi) = (item.find('{'), item.find(';'));
        let end = match (brace, semi) {
            (Some(open), semi) if semi.is_none_or(|semi| open < semi) => {
                let mut depth = 0;
                let mut end = item.len();
                for (i, c) in item.char_indices().skip(open) {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (_, Some(semi)) => semi + 1,
            _ => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Every `use` declaration's paths, expanded: whether it is public (a re-export), the
/// path, and the name it brings in.
fn uses(text: &str) -> Vec<(bool, Vec<String>, String)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = find_word(rest, "use") {
        let before = rest[..at].trim_end();
        let public = before.ends_with("pub") || before.ends_with(')') && before.contains("pub(");
        let tree_start = at + "use".len();
        let Some(end) = rest[tree_start..].find(';') else {
            break;
        };
        // Whitespace out, `as` (an alias) kept as `@`.
        let tree: String = rest[tree_start..tree_start + end]
            .split_whitespace()
            .map(|token| if token == "as" { "@" } else { token })
            .collect();
        for (path, name) in expand(&tree, &[]) {
            found.push((public, path, name));
        }
        rest = &rest[tree_start + end..];
    }
    found
}

/// The paths of a use tree (no whitespace), each with the name it binds.
fn expand(tree: &str, prefix: &[String]) -> Vec<(Vec<String>, String)> {
    let tree = tree.trim_start_matches("::");
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let mut base = prefix.to_vec();
        base.extend(head);
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        return split_top_level(inner)
            .into_iter()
            .flat_map(|part| expand(part, &base))
            .collect();
    }
    let (path, alias) = match tree.split_once('@') {
        Some((path, alias)) => (path, Some(alias.to_owned())),
        None => (tree, None),
    };
    let mut full = prefix.to_vec();
    full.extend(
        path.split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    );
    if full.last().is_some_and(|last| last == "self") {
        full.pop();
    }
    let name = alias.unwrap_or_else(|| full.last().cloned().unwrap_or_default());
    if name == "*" {
        full.pop();
    }
    vec![(full, name)]
}

fn split_top_level(inner: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// Paths written in code outside `use` declarations: `a::b::c` sequences.
fn paths_in_code(text: &str) -> Vec<Vec<String>> {
    let mut code = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_word(rest, "use") {
        code.push_str(&rest[..at]);
        rest = rest[at..].find(';').map_or("", |end| &rest[at + end + 1..]);
    }
    code.push_str(rest);
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut paths = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let starts_ident = is_ident(bytes[at])
            && !bytes[at].is_ascii_digit()
            && (at == 0 || !(is_ident(bytes[at - 1]) || bytes[at - 1] == b':'));
        if !starts_ident {
            at += 1;
            continue;
        }
        let mut segments = Vec::new();
        let mut end = at;
        loop {
            let start = end;
            while end < bytes.len() && is_ident(bytes[end]) {
                end += 1;
            }
            segments.push(code[start..end].to_owned());
            if code[end..].starts_with("::")
                && code[end + 2..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            {
                end += 2;
            } else {
                break;
            }
        }
        if segments.len() > 1 {
            paths.push(segments);
        }
        at = end.max(at + 1);
    }
    paths
}

/// Where `word` occurs as a whole word in `text`.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut from = 0;
    while let Some(found) = text[from..].find(word) {
        let at = from + found;
        let end = at + word.len();
        let before_ok = at == 0 || !is_ident(bytes[at - 1]);
        let after_ok = end < bytes.len() && bytes[end].is_ascii_whitespace();
        if before_ok && after_ok {
            return Some(at);
        }
        from = end;
    }
    None
}

/// Each cycle in the module graph, written `a -> b -> a`, shortest first, one per pair
/// of modules that reach each other.
fn cycles_of(edges: &BTreeSet<(Module, Module)>) -> Vec<String> {
    let mut next: BTreeMap<&Module, Vec<&Module>> = BTreeMap::new();
    for (from, to) in edges {
        next.entry(from).or_default().push(to);
    }
    let name = |m: &Module| m.join("::");
    let mut seen: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut found = Vec::new();
    for (from, to) in edges {
        // The shortest way back from `to` to `from`, if any.
        let mut previous: HashMap<&Module, &Module> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([to]);
        while let Some(at) = queue.pop_front() {
            if at == from {
                break;
            }
            for &n in next.get(at).into_iter().flatten() {
                if n != to && !previous.contains_key(n) {
                    previous.insert(n, at);
                    queue.push_back(n);
                }
            }
        }
        if to != from && !previous.contains_key(from) {
            continue;
        }
        let mut cycle = vec![from];
        let mut at = from;
        while at != to {
            at = previous[at];
            cycle.push(at);
        }
        cycle.reverse();
        cycle.insert(0, from);
        let mut key: Vec<String> = cycle[1..].iter().map(|m| name(m)).collect();
        key.sort();
        if seen.insert(key) {
            found.push(
                cycle
                    .iter()
                    .map(|m| name(m))
                    .collect::<Vec<_>>()
                    .join(" -> "),
            );
        }
    }
    found.sort_by_key(|cycle| cycle.len());
    found
}
