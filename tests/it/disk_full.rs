//! A real full disk: a small tmpfs as `--data-dir`, filled until the store cannot write.
//! Mounting needs root, as CI runs; elsewhere the test says it is skipped (the same path
//! is tested in the library with a store whose writes fail on demand).

use std::collections::HashMap;
use std::process::Command;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::support::http::Client;
use crate::support::process::{TempDir, start, start_logging, wait_for_log};

/// A tmpfs mounted on a directory of the test's own, unmounted when dropped.
struct Tmpfs(TempDir);

impl Tmpfs {
    /// `None` when this process may not mount (not root).
    fn mount(name: &str, size: &str) -> Option<Tmpfs> {
        let dir = TempDir::new(name);
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                dir.path(),
            ])
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").args(["-l", self.0.path()]).status();
    }
}

#[tokio::test]
#[ignore = "slow (2 s): fills a real disk; CI runs it with --include-ignored"]
async fn a_full_disk_refuses_changes_until_space_returns_and_loses_nothing_acknowledged() {
    let Some(disk) = Tmpfs::mount("disk-full", "3m") else {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs this as root)");
        return;
    };
    // A filler takes a third of the disk, so that freeing it frees space later.
    let filler = disk.0.join("filler");
    std::fs::write(&filler, vec![0u8; 1 << 20]).unwrap();
    let data = disk.0.join("data");
    let data = data.to_str().unwrap();
    let (child, base, logs) = start_logging(&["--port", "0", "--data-dir", data]);
    let client = Client::new(&base);
    let pad = "x".repeat(2000);

    // Fill it: every 200 is counted, until the first refusal.
    let mut acknowledged: HashMap<String, u64> = HashMap::new();
    let refusal = loop {
        assert!(acknowledged.len() < 5000, "a 3 MB disk never filled");
        let job_id = format!("r{}", acknowledged.len());
        let update = json!({"jobId": job_id, "state": "running", "pad": pad});
        let (status, body) = client.post_status(&update).await;
        if status != 200 {
            break (status, body, job_id);
        }
        acknowledged.insert(job_id, body["seq"].as_u64().unwrap());
    };
    let (status, body, refused) = refusal;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "storage_unavailable", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("no space left on device"), "{message}");

    // Down, with the reason; alive; reads work; the refused change is nowhere.
    let (status, health) = client.get_text("/actuator/health").await;
    assert_eq!(status, 503, "{health}");
    assert!(
        health.contains(r#""status":"DOWN""#) && health.contains("no space left on device"),
        "{health}"
    );
    assert_eq!(client.get_text("/actuator/health/readiness").await.0, 503);
    assert_eq!(
        client.get_text("/actuator/health/liveness").await,
        (200, r#"{"status":"UP"}"#.to_owned())
    );
    assert_eq!(client.get_text("/_mock/runs/r0").await.0, 200);
    assert_eq!(
        client.get_text(&format!("/_mock/runs/{refused}")).await.0,
        404
    );
    let metrics = client.get_text("/metrics").await.1;
    assert!(metrics.contains("jlm_store_down 1"), "{metrics}");
    assert!(!metrics.contains("jlm_store_errors_total 0"), "{metrics}");

    // Space again: the store says so by itself, and changes are taken again.
    std::fs::remove_file(&filler).unwrap();
    wait_for_log(&logs, "can be written again");
    assert_eq!(client.get_text("/actuator/health").await.0, 200);
    for i in 0..50 {
        let job_id = format!("after{i}");
        let update = json!({"jobId": job_id, "state": "running"});
        let (status, body) = client.post_status(&update).await;
        assert_eq!(status, 200, "{body}");
        acknowledged.insert(job_id, body["seq"].as_u64().unwrap());
    }

    // A crash, and a restart on the same disk: every acknowledged update is there, and
    // seq goes on past every one handed out.
    child.signal(Signal::SIGKILL);
    drop(child);
    let (child, base) = start(&["--port", "0", "--data-dir", data], &[]);
    let client = Client::new(&base);
    for (job_id, seq) in &acknowledged {
        let (status, history) = client
            .get_text(&format!("/_mock/runs/{job_id}/history"))
            .await;
        assert_eq!(status, 200, "run {job_id} was acknowledged but is gone");
        let history: Value = serde_json::from_str(&history).unwrap();
        assert_eq!(history["updates"][0]["seq"], *seq, "{job_id}");
    }
    let last = acknowledged.values().max().copied().unwrap();
    let update = json!({"jobId": "next", "state": "running"});
    let (_, body) = client.post_status(&update).await;
    assert!(body["seq"].as_u64().unwrap() > last, "{body} after {last}");
    child.signal(Signal::SIGTERM);
    drop(child);
}
