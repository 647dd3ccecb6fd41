//! The docs say what the code does. README.md's flags table is `--help`'s, flag for
//! flag and default for default; its routes table is the OpenAPI document's, operation
//! for operation; it names the crate's minimum Rust version, and it stays a page.
//! docs/staging.md's metrics table is `/metrics`', and docs/contract.md's error codes are
//! the OpenAPI document's.
//!
//! The other snippets of README.md and docs/ are run by `.ci/snippets.py` (part of
//! `.ci/test`); the Rust ones are the tests in this module's files, which that script
//! holds to the pages' text.

use std::collections::{BTreeMap, BTreeSet};

use job_launcher_mock::MockServer;
use serde_json::Value;

use crate::support::http::Client;
use crate::support::process::binary;

mod faults;
mod readme;
mod simulated_jobs;

const README: &str = include_str!("../../../README.md");
const STAGING: &str = include_str!("../../../docs/staging.md");
const CONTRACT: &str = include_str!("../../../docs/contract.md");

/// The rows of the first table under the heading `## {heading}` of `page`, each split
/// into its cells.
fn table(page: &'static str, heading: &str) -> Vec<Vec<&'static str>> {
    let start = page
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading}"));
    let section = &page[start + 1..];
    let section = &section[..section[1..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 1)];
    let rows: Vec<Vec<&str>> = section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // the header and its rule
        .map(|line| line.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    assert!(!rows.is_empty(), "the {heading} table is empty");
    rows
}

/// What the mock started by `MockServer::start` answers to `GET path`.
async fn get(path: &str) -> String {
    let server = MockServer::start().await;
    let (status, text) = Client::of(&server).get_text(path).await;
    assert_eq!(status, 200, "GET {path}");
    text
}

/// The text between each pair of backticks.
fn quoted(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// A flag's default and environment variable, as `--help` shows them.
#[derive(Debug, Default, PartialEq)]
struct Help {
    default: Option<String>,
    env: Option<String>,
}

fn help() -> (BTreeMap<String, Help>, Vec<String>) {
    let mut command = binary();
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("JLM_") {
            command.env_remove(name); // --help would show their values as the defaults
        }
    }
    let output = command.arg("--help").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();

    let (mut flags, mut commands) = (BTreeMap::new(), Vec::new());
    let mut current: Option<String> = None;
    let mut in_commands = false;
    for line in text.lines() {
        if line == "Commands:" || line == "Options:" {
            in_commands = line == "Commands:";
            continue;
        }
        if in_commands {
            if let Some(name) = line.split_whitespace().next() {
                commands.push(name.to_owned());
            }
        } else if line.starts_with("  -") || line.starts_with("      --") {
            current = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix("--"))
                .map(|name| name.trim_end_matches(',').to_owned());
            if let Some(name) = &current {
                flags.insert(name.clone(), Help::default());
            }
        } else if let Some(flag) = current.as_ref().and_then(|name| flags.get_mut(name)) {
            let line = line.trim();
            if let Some(default) = line.strip_prefix("[default: ") {
                flag.default = Some(default.trim_end_matches(']').to_owned());
            } else if let Some(env) = line.strip_prefix("[env: ") {
                let name = env.trim_end_matches(']').split('=').next().unwrap();
                flag.env = Some(name.to_owned());
            }
        }
    }
    flags.remove("help");
    flags.remove("version");
    commands.retain(|name| name != "help");
    (flags, commands)
}

#[test]
fn the_flags_table_is_what_help_says() {
    let (help, commands) = help();
    assert!(help.len() >= 20, "--help was not read: {help:?}");

    let mut tabled = BTreeMap::new();
    for row in table(README, "Flags") {
        let flag = quoted(row[0])[0].strip_prefix("--").unwrap().to_owned();
        let default = match row[1] {
            "none" => None,
            cell => Some(quoted(cell)[0].to_owned()),
        };
        assert!(
            tabled.insert(flag.clone(), default).is_none(),
            "--{flag} is in the table twice"
        );
    }
    let helped: BTreeMap<String, Option<String>> = help
        .iter()
        .map(|(flag, help)| (flag.clone(), help.default.clone()))
        .collect();
    assert_eq!(
        tabled, helped,
        "the README's flags and defaults (left), --help's (right)"
    );

    // "Each flag is also an environment variable, JLM_ and the flag in capitals".
    for (flag, help) in &help {
        let variable = format!("JLM_{}", flag.to_uppercase().replace('-', "_"));
        assert_eq!(help.env.as_deref(), Some(variable.as_str()), "--{flag}");
    }
    for command in commands {
        assert!(
            README.contains(&format!("`job-launcher-mock {command}`")),
            "the README does not say what `job-launcher-mock {command}` does"
        );
    }
}

/// `/api[/apps/{app}]/x` is `/api/x` and `/api/apps/{app}/x`.
fn expand(path: &str) -> Vec<String> {
    match (path.find('['), path.find(']')) {
        (Some(open), Some(close)) if open < close => {
            let (before, optional, after) =
                (&path[..open], &path[open + 1..close], &path[close + 1..]);
            [
                format!("{before}{after}"),
                format!("{before}{optional}{after}"),
            ]
            .iter()
            .flat_map(|path| expand(path))
            .collect()
        }
        _ => vec![path.to_owned()],
    }
}

#[tokio::test]
async fn the_routes_table_is_the_openapi_document() {
    let document: Value = serde_json::from_str(&get("/openapi.json").await).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(
        documented.len() > 40,
        "the document was not read: {documented:?}"
    );

    let mut tabled = BTreeSet::new();
    for row in table(README, "Routes") {
        // Every route again under a session: a rule about paths, not an operation of
        // the document (tests/it/sessions.rs drives it).
        if row[0] == "any" {
            assert_eq!(quoted(row[1]), ["/sessions/{id}/..."], "{row:?}");
            continue;
        }
        for method in row[0].split(", ") {
            for path in quoted(row[1]).into_iter().flat_map(expand) {
                let operation = (method.to_owned(), path);
                assert!(
                    documented.contains(&operation),
                    "the README's routes table has {operation:?}, which the mock does not serve"
                );
                tabled.insert(operation);
            }
        }
    }
    let missing: Vec<_> = documented.difference(&tabled).collect();
    assert!(
        missing.is_empty(),
        "the README's routes table lacks {missing:?}"
    );
}

#[test]
fn the_readme_names_the_minimum_rust_version() {
    let version = env!("CARGO_PKG_RUST_VERSION");
    assert!(
        README.contains(&format!("With Rust {version} or later")),
        "Cargo.toml's rust-version is {version}"
    );
}

#[test]
fn the_readme_stays_a_page() {
    // What a user needs; the depth is in docs/.
    assert!(
        README.len() <= 15_000,
        "README.md is {} bytes",
        README.len()
    );
}

#[tokio::test]
async fn the_metrics_table_is_what_metrics_serves() {
    // A family shows once it has a sample: a refused update, then a request timed.
    let server = MockServer::start().await;
    let client = reqwest::Client::new();
    let refused = client
        .post(format!("{}/job-launcher/launcher/status", server.uri()))
        .json(&serde_json::json!({"jobId": "r1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let mut scrape = String::new();
    for _ in 0..2 {
        let answer = client
            .get(format!("{}/metrics", server.uri()))
            .send()
            .await
            .unwrap();
        scrape = answer.text().await.unwrap();
    }

    // Each family's samples, as a scrape shows them: a counter's with `_total`.
    let mut served = BTreeSet::new();
    for line in scrape.lines() {
        if let Some(family) = line.strip_prefix("# TYPE ") {
            let (name, kind) = family.split_once(' ').unwrap();
            let sample = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            served.insert(sample);
        }
    }
    assert!(served.len() >= 10, "/metrics was not read: {served:?}");
    let tabled: BTreeSet<String> = table(STAGING, "Metrics")
        .iter()
        .map(|row| quoted(row[0])[0].split('{').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        tabled, served,
        "docs/staging.md's metrics (left), /metrics' (right)"
    );
}

#[tokio::test]
async fn the_contract_lists_every_error_code() {
    let document: Value = serde_json::from_str(&get("/openapi.json").await).unwrap();
    let codes: BTreeSet<&str> = document["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap())
        .collect();
    assert!(
        codes.len() >= 10,
        "the document's codes were not read: {codes:?}"
    );
    let tabled: BTreeSet<&str> = table(CONTRACT, "Errors")
        .iter()
        .map(|row| quoted(row[0])[0])
        .collect();
    assert_eq!(
        tabled, codes,
        "docs/contract.md's error codes (left), the mock's (right)"
    );
}
