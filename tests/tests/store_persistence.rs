//! The persisted store (PROTOCOL.md §5.6, "Persistence") with real processes: a master killed
//! with SIGKILL in the middle of its workers' writes comes back with every write they saw
//! acknowledged; a second master cannot take the same directory; a torn last record is cut off
//! and a damaged one in the middle is refused, naming the file and the offset.

use drover::store::persist::{PersistConfig, PersistError};
use drover::{ConfigError, Master};
use drover_tests::{target_bin, test_config, EVENT_DEADLINE};
use serde_json::json;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

/// Writes acknowledged before the master is killed: enough that the kill lands mid-writes.
const ACKED_BEFORE_KILL: usize = 400;

/// The master process's stdout (its workers' too), line by line, from a thread.
fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// `acked PATH VALUE` → (PATH, VALUE).
fn acked(line: &str) -> Option<(String, u64)> {
    let mut parts = line.strip_prefix("acked ")?.split(' ');
    Some((parts.next()?.to_string(), parts.next()?.parse().ok()?))
}

fn persisted(dir: &Path) -> drover::MasterConfig {
    test_config("store-reopened", 1).persist_store(PersistConfig::new(dir))
}

/// A master on `dir` once the one before it let go: a dropped master's loop ends (and its store
/// is closed, unlocking the directory) a moment after its last handle is gone.
fn reopen(dir: &Path) -> Result<Master, ConfigError> {
    let deadline = Instant::now() + EVENT_DEADLINE;
    loop {
        match Master::new(persisted(dir)) {
            Err(ConfigError::StorePersistence(PersistError::Locked { .. })) if Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// The log file of the directory's current generation.
fn log_file(dir: &Path) -> PathBuf {
    let logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("store.log."))
        .collect();
    assert_eq!(logs.len(), 1, "one log: {logs:?}");
    logs.into_iter().next().unwrap()
}

fn acknowledged_writes_survive_a_killed_master(fsync: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(target_bin("drover-test-store-master"))
        .arg(dir.path())
        .arg("2")
        .arg(fsync)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the store master runs");
    let lines = lines_of(child.stdout.take().unwrap());
    let deadline = Instant::now() + 2 * EVENT_DEADLINE;
    let mut seen = Vec::new();
    while seen.len() < ACKED_BEFORE_KILL {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("only {} writes acknowledged in time", seen.len()));
        seen.extend(acked(&line));
    }

    // While it lives, the directory is its own.
    let _enter = runtime.enter();
    match Master::new(persisted(dir.path())) {
        Err(ConfigError::StorePersistence(PersistError::Locked { dir: locked })) => {
            assert_eq!(locked, dir.path().display().to_string());
        }
        other => panic!("a second master took the directory: {other:?}"),
    }

    // SIGKILL while the workers write; what they were told until their channel closed counts.
    child.kill().unwrap();
    child.wait().unwrap();
    let drain_until = Instant::now() + EVENT_DEADLINE;
    while let Ok(line) = lines.recv_timeout(drain_until.saturating_duration_since(Instant::now())) {
        seen.extend(acked(&line));
    }

    let master = Master::new(persisted(dir.path())).expect("the directory is free and whole");
    for (path, value) in &seen {
        assert_eq!(
            master.store("get", json!({ "path": path })).unwrap(),
            json!(value),
            "{path}, acknowledged, is lost"
        );
    }
    let workers = master.store("keys", json!({"path": ""})).unwrap();
    assert_eq!(workers.as_array().map(Vec::len), Some(2), "{workers}");
    drop(master);

    // A crash in the middle of a record (simulated: SIGKILL cannot cut a write(2) short).
    let log = log_file(dir.path());
    let whole = std::fs::read(&log).unwrap();
    let mut torn = whole.clone();
    torn.extend_from_slice(b"0badf00d {\"op\":\"set\",\"path\":\"w1.k");
    std::fs::write(&log, torn).unwrap();
    let master = reopen(dir.path()).expect("a torn last record is cut off");
    let (path, value) = seen.last().unwrap();
    assert_eq!(master.store("get", json!({ "path": path })).unwrap(), json!(value));
    drop(master);
    assert_eq!(
        std::fs::read(&log).unwrap(),
        whole,
        "the torn record is cut off the log"
    );

    // A damaged record with others after it: refused, naming the file and the offset.
    let mut damaged = whole.clone();
    let second = whole.iter().position(|b| *b == b'\n').unwrap() + 1;
    damaged[second + 12] ^= 0x20;
    std::fs::write(&log, damaged).unwrap();
    let err = reopen(dir.path()).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, ConfigError::StorePersistence(PersistError::Corrupt { offset, .. }) if *offset == second as u64),
        "{message}"
    );
    assert!(message.contains(&log.display().to_string()), "{message}");
    assert!(message.contains(&format!("byte {second}")), "{message}");
}

#[test]
fn every_write_acknowledged_with_fsync_always_is_there_after_kill_9_of_the_master() {
    acknowledged_writes_survive_a_killed_master("always");
}

#[test]
fn every_write_acknowledged_with_fsync_everysec_is_there_after_kill_9_of_the_master() {
    acknowledged_writes_survive_a_killed_master("everysec");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_masters_user_and_ttls_persist_and_expired_values_stay_gone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let master = Master::new(persisted(dir.path())).unwrap();
        master
            .store("set", json!({"path": "config.mode", "value": "blue"}))
            .unwrap();
        master
            .store("set", json!({"path": "session.a", "value": 1, "ttl_ms": 600_000}))
            .unwrap();
        master
            .store("set", json!({"path": "session.b", "value": 2, "ttl_ms": 1}))
            .unwrap();
        assert_eq!(
            master
                .store(
                    "cas",
                    json!({"path": "config.mode", "expected": "blue", "value": "green"})
                )
                .unwrap(),
            json!(true)
        );
        master.store("delete", json!({"path": "nothing"})).unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let master = reopen(dir.path()).unwrap();
    assert_eq!(
        master.store("get", json!({"path": ""})).unwrap(),
        json!({"config": {"mode": "green"}, "session": {"a": 1}})
    );
}
