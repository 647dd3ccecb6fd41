//! `--data-dir`: what survives a restart and a `kill -9`, and what a bad directory gets.

use std::collections::HashMap;

use nix::sys::signal::Signal;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::SEED;
use crate::support::http::Client;
use crate::support::process::{Running, TempDir, binary, start};

fn stop(mut child: Running) {
    child.signal(Signal::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[tokio::test]
async fn a_restart_keeps_runs_histories_scenarios_configs_and_faults() {
    let dir = TempDir::new("restart");
    let args = [
        "--port",
        "0",
        "--data-dir",
        dir.path(),
        "--max-history",
        "2",
    ];
    let (child, base) = start(&args, &[]);
    let client = Client::new(&base);
    let seed: Value = serde_json::from_str(SEED).unwrap();
    assert_eq!(client.post_status(&seed).await.0, 200);
    for state in ["starting", "running", "finishing"] {
        let update =
            json!({"jobId": "kept", "state": state, "jobConfig": {"id": "cfg", "type": "t"}});
        assert_eq!(client.post_status(&update).await.0, 200);
    }
    let scenario = json!({"steps": [{"state": "finished", "after": "1s"}]});
    client
        .send(Method::PUT, "/_mock/scenarios/nightly-*", &scenario)
        .await;
    let rule = json!({"match": {"path": "/nowhere"}, "action": {"status": 500}, "times": 3});
    client.send(Method::POST, "/_mock/faults", &rule).await;
    let config = json!({"type": "script"});
    client
        .send(Method::PUT, "/api/spark/configurations/put-one", &config)
        .await;
    let before = kept(&client).await;
    stop(child);

    let (child, base) = start(&args, &[]);
    let client = Client::new(&base);
    let after = kept(&client).await;
    assert_eq!(after, before);
    assert_eq!(
        after[1]["dropped"], 1,
        "the history's bound and drop count are kept"
    );
    assert_eq!(
        after[0]["runs"][0]["status"], seed,
        "the seed reads back unchanged"
    );
    // It goes on where it stopped: the transition table still applies, seq counts on.
    let back = json!({"jobId": "kept", "state": "idle"});
    assert_eq!(client.post_status(&back).await.0, 409);
    let next = json!({"jobId": "kept", "state": "finished"});
    let (code, answer) = client.post_status(&next).await;
    assert_eq!(code, 200);
    assert_eq!(answer["seq"], 5);
    stop(child);
}

/// What a restart must keep: runs, a history, scenarios, faults, configs.
async fn kept(client: &Client) -> Vec<Value> {
    let paths = [
        "/_mock/runs",
        "/_mock/runs/kept/history",
        "/_mock/scenarios",
        "/_mock/faults",
        "/api/spark/configurations",
    ];
    futures_util::future::join_all(paths.map(|path| client.get_ok::<Value>(path))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_update_survives_a_kill_9() {
    let dir = TempDir::new("kill9");
    let args = ["--port", "0", "--data-dir", dir.path()];
    let (mut child, base) = start(&args, &[]);
    let client = Client::new(&base);
    let writers = (0..8).map(|writer| {
        let client = client.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..40 {
                let job_id = format!("w{writer}-{}", i % 4);
                let state = if i < 4 { "starting" } else { "running" };
                let update = json!({"jobId": job_id, "state": state, "n": i});
                let (code, answer) = client.post_status(&update).await;
                assert_eq!(code, 200, "{answer}");
                acknowledged.push((job_id, answer["seq"].as_u64().unwrap()));
            }
            acknowledged
        })
    });
    let mut acknowledged = Vec::new();
    for writer in futures_util::future::join_all(writers).await {
        acknowledged.extend(writer.unwrap());
    }
    // The moment the last answer is in: no graceful shutdown, no chance to flush.
    child.signal(Signal::SIGKILL);
    child.wait().unwrap();
    assert_eq!(acknowledged.len(), 320);

    let (child, base) = start(&args, &[]);
    let client = Client::new(&base);
    let mut kept: HashMap<String, Vec<u64>> = HashMap::new();
    for (job_id, _) in &acknowledged {
        if !kept.contains_key(job_id) {
            let history = client.history(job_id).await.expect("the run was kept");
            let seqs = history.updates.iter().map(|u| u.seq);
            kept.insert(job_id.clone(), seqs.collect());
        }
    }
    for (job_id, seq) in &acknowledged {
        assert!(
            kept[job_id].contains(seq),
            "update {seq} of {job_id} was answered 200 but lost"
        );
    }
    stop(child);
}

fn refused_start(dir: &str) -> String {
    let output = binary()
        .args(["--port", "0", "--data-dir", dir])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty(), "it never said it was listening");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_corrupt_or_foreign_data_dir_stops_the_start_with_a_clear_error() {
    let garbage = TempDir::new("garbage");
    std::fs::write(garbage.join("job-launcher-mock.redb"), vec![0x5a; 8192]).unwrap();
    let error = refused_start(garbage.path());
    assert!(
        error.contains("job-launcher-mock.redb is corrupt") && error.contains(garbage.path()),
        "{error}"
    );
    assert!(
        !error.contains("locked") && !error.contains("permission"),
        "{error}"
    );
    assert!(!error.contains("panicked"), "{error}");

    // A well-formed database this version did not write.
    let older = TempDir::new("older");
    {
        let db = redb::Database::create(older.join("job-launcher-mock.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
            let mut meta = txn.open_table(meta).unwrap();
            meta.insert("format", b"job-launcher-mock/0".as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let error = refused_start(older.path());
    assert!(
        error.contains("job-launcher-mock/0") && error.contains("job-launcher-mock/1"),
        "{error}"
    );

    let foreign = TempDir::new("foreign");
    redb::Database::create(foreign.join("job-launcher-mock.redb")).unwrap();
    let error = refused_start(foreign.path());
    assert!(
        error.contains("not a job-launcher-mock database"),
        "{error}"
    );

    // A run record that cannot be read is named, not skipped.
    let corrupt = TempDir::new("corrupt-record");
    {
        let db = redb::Database::create(corrupt.join("job-launcher-mock.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
            txn.open_table(meta)
                .unwrap()
                .insert("format", b"job-launcher-mock/1".as_slice())
                .unwrap();
            let runs: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("runs");
            txn.open_table(runs)
                .unwrap()
                .insert("r1", b"{not json".as_slice())
                .unwrap();
            let updates: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("updates");
            txn.open_table(updates).unwrap();
        }
        txn.commit().unwrap();
    }
    let error = refused_start(corrupt.path());
    assert!(error.contains("run record is corrupt"), "{error}");
}

#[test]
fn a_data_dir_in_use_by_another_process_is_refused_as_locked() {
    let dir = TempDir::new("locked");
    let (first, _) = start(&["--port", "0", "--data-dir", dir.path()], &[]);
    let error = refused_start(dir.path());
    assert!(
        error.contains("locked by another process") && error.contains(dir.path()),
        "{error}"
    );
    assert!(
        !error.contains("corrupt") && !error.contains("permission"),
        "{error}"
    );
    stop(first);
}

#[test]
fn a_data_dir_this_user_cannot_write_is_refused_naming_the_permission() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    let dir = TempDir::new("not-mine");
    // Open to all, as a directory of /tmp would be: only `data` is closed to the binary.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = binary();
    command
        .args(["--port", "0", "--data-dir", data.to_str().unwrap()])
        .env("RUST_BACKTRACE", "1");
    // Root may write anywhere: run as nobody then; anyone else gets a directory closed
    // to its owner.
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    if root {
        command.uid(65534).gid(65534);
    } else {
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o500)).unwrap();
    }
    let output = command.output().expect("the binary runs");
    let error = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert!(
        error.contains("permission denied") && error.contains(data.to_str().unwrap()),
        "{error}"
    );
    assert!(error.contains("runs as uid"), "{error}");
    assert!(
        !error.contains("locked") && !error.contains("corrupt"),
        "{error}"
    );
    assert!(
        !error.contains("stack backtrace"),
        "RUST_BACKTRACE=1 adds no trace: {error}"
    );
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
}
