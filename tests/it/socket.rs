//! Over a real socket: concurrent writers, on one run and on many, lose nothing.

use std::collections::{BTreeSet, HashMap};

use job_launcher_mock::{AppState, serve};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::helpers::{STATUS, config, init_logs};

const WRITERS: usize = 8;
const UPDATES_PER_WRITER: usize = 40;

/// A client of the service on a loopback port.
#[derive(Clone)]
struct Client {
    base: String,
    http: reqwest::Client,
}

/// Serves the app on a free loopback port until the returned sender is dropped.
async fn spawn_app() -> (Client, oneshot::Sender<()>) {
    init_logs();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let state = AppState::new(&config()).expect("the test's config is valid");
    tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));
    let client = Client {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
    };
    (client, stop)
}

impl Client {
    async fn post(&self, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{STATUS}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> Value {
        let response = self.http.get(format!("{}{path}", self.base)).send().await;
        response.unwrap().json().await.unwrap()
    }
}

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
                let (status, answer) = client.post(&make(writer, n)).await;
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
fn entries(history: &Value, answered: &HashMap<Key, u64>) -> Vec<Key> {
    let updates = history["updates"].as_array().unwrap();
    let seqs: Vec<u64> = updates.iter().map(|u| u["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq not rising: {seqs:?}"
    );
    updates
        .iter()
        .map(|u| {
            let key = (
                u["update"]["writer"].as_u64().unwrap(),
                u["update"]["n"].as_u64().unwrap(),
            );
            assert_eq!(answered.get(&key), u["seq"].as_u64().as_ref(), "{key:?}");
            key
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_one_run_lose_nothing_and_duplicate_nothing() {
    let (client, _stop) = spawn_app().await;
    let answered = write_concurrently(
        &client,
        |writer, n| json!({"jobId": "shared", "state": "running", "writer": writer, "n": n}),
    )
    .await;

    let history = client.get("/_mock/runs/shared/history").await;
    let seen = entries(&history, &answered);
    let distinct: BTreeSet<_> = seen.iter().copied().collect();
    assert_eq!(seen.len(), WRITERS * UPDATES_PER_WRITER);
    assert_eq!(
        distinct.len(),
        seen.len(),
        "an update is in the history twice"
    );
    let run = client.get("/_mock/runs/shared").await;
    assert_eq!(run["updateCount"], WRITERS * UPDATES_PER_WRITER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_many_runs_lose_nothing_and_duplicate_nothing() {
    const RUNS: usize = 16;
    let (client, _stop) = spawn_app().await;
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
        let history = client.get(&format!("/_mock/runs/{run}/history")).await;
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
    assert_eq!(client.get("/_mock/runs").await["total"], RUNS);
}
