//! Over a real socket: concurrent writers, on one run and on many, lose nothing.

use std::collections::{BTreeSet, HashMap};

use job_launcher_mock::{History, MockServer};
use serde_json::{Value, json};

use crate::support::http::Client;
use crate::support::serve;

const WRITERS: usize = 8;
const UPDATES_PER_WRITER: usize = 40;

/// (writer, n): which update of which writer.
type Key = (u64, u64);

/// Runs `WRITERS` writers at once; writer `w` posts `make(w, n)` for each `n`. Every
/// update must be accepted; returns the `seq` each one was answered with.
async fn write_concurrently(client: &Client, make: fn(usize, usize) -> Value) -> HashMap<Key, u64> {
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let client = client.clone();
        writers.spawn(async move {
            let mut answered = Vec::new();
            for n in 0..UPDATES_PER_WRITER {
                let (status, answer) = client.post_status(&make(writer, n)).await;
                assert_eq!(status, 200, "{answer}");
                assert_eq!(answer["repeat"], false);
                let seq = answer["seq"].as_u64().unwrap();
                answered.push(((writer as u64, n as u64), seq));
            }
            answered
        });
    }
    let mut answered = HashMap::new();
    while let Some(done) = writers.join_next().await {
        answered.extend(done.unwrap());
    }
    answered
}

/// The updates in a history, checking that `seq` rises strictly through it and that
/// each entry carries the `seq` its writer was answered with.
fn entries(history: &History, answered: &HashMap<Key, u64>) -> Vec<Key> {
    let updates = &history.updates;
    let seqs: Vec<u64> = updates.iter().map(|u| u.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq not rising: {seqs:?}"
    );
    updates
        .iter()
        .map(|u| {
            let key = (
                u.update["writer"].as_u64().unwrap(),
                u.update["n"].as_u64().unwrap(),
            );
            assert_eq!(answered.get(&key), Some(&u.seq), "{key:?}");
            key
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_one_run_lose_nothing_and_duplicate_nothing() {
    let server = serve(MockServer::builder()).await;
    let client = Client::of(&server);
    let answered = write_concurrently(
        &client,
        |writer, n| json!({"jobId": "shared", "state": "running", "writer": writer, "n": n}),
    )
    .await;

    let history = client.history("shared").await.expect("the run exists");
    let seen = entries(&history, &answered);
    let distinct: BTreeSet<_> = seen.iter().copied().collect();
    assert_eq!(seen.len(), WRITERS * UPDATES_PER_WRITER);
    assert_eq!(
        distinct.len(),
        seen.len(),
        "an update is in the history twice"
    );
    let run = client.run("shared").await.expect("the run exists");
    assert_eq!(run.update_count, (WRITERS * UPDATES_PER_WRITER) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_many_runs_lose_nothing_and_duplicate_nothing() {
    const RUNS: usize = 16;
    let server = serve(MockServer::builder()).await;
    let client = Client::of(&server);
    // Writers share runs, and race each other to create them.
    let answered = write_concurrently(&client, |writer, n| {
        json!({"jobId": format!("run-{}", (writer + n) % RUNS), "state": "running",
               "writer": writer, "n": n})
    })
    .await;

    let mut expected: HashMap<String, BTreeSet<Key>> = HashMap::new();
    for &(writer, n) in answered.keys() {
        let run = format!("run-{}", (writer + n) % RUNS as u64);
        expected.entry(run).or_default().insert((writer, n));
    }
    assert_eq!(expected.len(), RUNS);
    let mut total = 0;
    for (run, wanted) in &expected {
        let history = client.history(run).await.expect("the run exists");
        let seen = entries(&history, &answered);
        let distinct: BTreeSet<_> = seen.iter().copied().collect();
        assert_eq!(
            seen.len(),
            distinct.len(),
            "{run}: an update is in the history twice"
        );
        assert_eq!(&distinct, wanted, "{run}");
        total += seen.len();
    }
    assert_eq!(total, WRITERS * UPDATES_PER_WRITER);
    let distinct_seqs: BTreeSet<_> = answered.values().collect();
    assert_eq!(
        distinct_seqs.len(),
        answered.len(),
        "a seq was handed out twice"
    );
    let list: Value = client.get_ok("/_mock/runs").await;
    assert_eq!(list["total"], RUNS);
}
