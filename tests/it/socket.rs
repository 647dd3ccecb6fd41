//! Over a real socket: concurrent writers, on one run and on many, lose nothing.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use job_launcher_mock::{AppState, serve};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::helpers::{STATUS, config, init_logs};

const WRITERS: usize = 8;
const UPDATES_PER_WRITER: usize = 40;

/// The service on a loopback port, stopped when dropped.
struct Served {
    base: String,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

async fn spawn_app() -> Served {
    init_logs();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let state = AppState::new(&config());
    tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));
    Served {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        _stop: stop,
    }
}

impl Served {
    async fn post(&self, body: &Value) -> (u16, Value) {
        let response = self
            .client
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
        let response = self.client.get(format!("{}{path}", self.base)).send().await;
        response.unwrap().json().await.unwrap()
    }
}

/// Runs `WRITERS` writers at once; writer `w` posts `make(w, i)` for each `i`. Every
/// update must be accepted, and its answer must show the update itself applied.
async fn write_concurrently(app: &Served, make: fn(usize, usize) -> Value) {
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let (client, base) = (app.client.clone(), app.base.clone());
        writers.spawn(async move {
            let app = Served {
                base,
                client,
                _stop: oneshot::channel().0,
            };
            for i in 0..UPDATES_PER_WRITER {
                let body = make(writer, i);
                let (status, answer) = app.post(&body).await;
                assert_eq!(status, 200, "{answer}");
                assert_eq!(
                    (answer["writer"].clone(), answer["n"].clone()),
                    (json!(writer), json!(i))
                );
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
}

/// Every (writer, n) in a history, checking that seq rises strictly through it.
fn entries(history: &Value) -> Vec<(u64, u64)> {
    let updates = history["updates"].as_array().unwrap();
    let seqs: Vec<u64> = updates.iter().map(|u| u["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq not rising: {seqs:?}"
    );
    updates
        .iter()
        .filter_map(|u| Some((u["update"]["writer"].as_u64()?, u["update"]["n"].as_u64()?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_one_run_lose_nothing_and_duplicate_nothing() {
    let app = spawn_app().await;
    write_concurrently(
        &app,
        |writer, n| json!({"jobId": "shared", "state": "running", "writer": writer, "n": n}),
    )
    .await;

    let history = app.get("/_mock/runs/shared/history").await;
    let seen = entries(&history);
    let distinct: BTreeSet<_> = seen.iter().copied().collect();
    assert_eq!(seen.len(), WRITERS * UPDATES_PER_WRITER);
    assert_eq!(
        distinct.len(),
        seen.len(),
        "an update is in the history twice"
    );
    let run = app.get("/_mock/runs/shared").await;
    assert_eq!(run["updateCount"], WRITERS * UPDATES_PER_WRITER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_many_runs_lose_nothing_and_duplicate_nothing() {
    const RUNS: usize = 16;
    let app = spawn_app().await;
    // Writers share runs, and race each other to create them.
    write_concurrently(&app, |writer, n| {
        json!({"jobId": format!("run-{}", (writer + n) % RUNS), "state": "running",
               "writer": writer, "n": n})
    })
    .await;

    let mut expected: HashMap<String, BTreeSet<(u64, u64)>> = HashMap::new();
    for writer in 0..WRITERS {
        for n in 0..UPDATES_PER_WRITER {
            let run = format!("run-{}", (writer + n) % RUNS);
            expected
                .entry(run)
                .or_default()
                .insert((writer as u64, n as u64));
        }
    }
    let mut all_seqs = BTreeSet::new();
    for (run, wanted) in &expected {
        let history = app.get(&format!("/_mock/runs/{run}/history")).await;
        let seen = entries(&history);
        let distinct: BTreeSet<_> = seen.iter().copied().collect();
        assert_eq!(
            seen.len(),
            distinct.len(),
            "{run}: an update is in the history twice"
        );
        assert_eq!(&distinct, wanted, "{run}");
        for update in history["updates"].as_array().unwrap() {
            assert!(
                all_seqs.insert(update["seq"].as_u64().unwrap()),
                "seq reused"
            );
        }
    }
    assert_eq!(all_seqs.len(), WRITERS * UPDATES_PER_WRITER);
    assert_eq!(app.get("/_mock/runs").await["total"], RUNS);
}
