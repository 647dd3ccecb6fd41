//! Secrets are never printed by the built binary: not by `--help` when they are set in
//! the environment, not by the error for an invalid value, wherever it was given.

use std::process::Output;

use crate::support::process::binary;

/// Runs the binary to its end with `args` and `env`, which never lets it serve: `--help`,
/// or a value it refuses.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = binary();
    command.args(args).env("RUST_LOG", "info");
    for name in ["JLM_BASIC_AUTH", "JLM_API_KEY", "JLM_ADMIN_TOKEN"] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the binary runs")
}

/// stdout and stderr together, as text.
fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Flags, and environment variables, to run the binary with.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);

const ENV: [(&str, &str); 3] = [
    ("JLM_BASIC_AUTH", "fusion:pass-SECRET-1"),
    ("JLM_API_KEY", "key-SECRET-2"),
    ("JLM_ADMIN_TOKEN", "token-SECRET-3"),
];

#[test]
fn help_names_the_secrets_variables_but_not_their_values() {
    let output = run(&["--help"], &ENV);
    assert_eq!(output.status.code(), Some(0));
    let text = printed(&output);
    for name in ["JLM_BASIC_AUTH", "JLM_API_KEY", "JLM_ADMIN_TOKEN"] {
        assert!(
            text.contains(&format!("[env: {name}]")),
            "{name} in:\n{text}"
        );
    }
    assert!(!text.contains("SECRET"), "a secret in --help:\n{text}");
    // A flag that is not a secret still shows the value it takes from the environment.
    let output = run(&["--help"], &[("JLM_MAX_RUNS", "77")]);
    assert!(printed(&output).contains("[env: JLM_MAX_RUNS=77]"));
}

#[test]
fn an_invalid_secret_is_refused_without_printing_it() {
    let cases: [Case<'_>; 6] = [
        (&[], &[("JLM_BASIC_AUTH", "nocolon-SECRET")]),
        (&["--basic-auth", "nocolon-SECRET"], &[]),
        (&["--basic-auth=:pass-SECRET"], &[]),
        (&["--basic-auth", "user-SECRET:"], &[]),
        // A value that starts with `-` is a value, not flags to quote back.
        (&["--basic-auth", "-SECRET-nocolon"], &[]),
        (&["--basic-auth", "-SECRET-nocolon", "--port", "0"], &ENV),
    ];
    for (args, env) in cases {
        let output = run(args, env);
        let text = printed(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}:\n{text}");
        assert!(text.contains("error:"), "{args:?} {env:?}:\n{text}");
        assert!(!text.contains("SECRET"), "{args:?} {env:?}:\n{text}");
        assert!(
            text.contains("--basic-auth")
                || text.contains("--api-key")
                || text.contains("--admin-token"),
            "the flag is named: {text}"
        );
    }
    // What was wrong is still said.
    let text = printed(&run(&["--basic-auth", "nocolon-SECRET"], &[]));
    assert!(text.contains("must be USER:PASS"), "{text}");
}
