//! Instance indexes (`DROVER_INSTANCE`, `NODE_APP_INSTANCE`), the no-worker-left event and
//! starting a master again after a shutdown: real masters, real test workers.

use drover::{Event, Master, MasterConfig, MasterStatus, ReloadStrategy, RestartPolicy};
use drover_tests::{next_event, next_exit, test_config, test_worker};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(20);

/// Live workers by instance index: instance → (id, pid).
fn places(master: &Master) -> BTreeMap<u32, (u64, u32)> {
    let mut out = BTreeMap::new();
    for w in master.workers().into_iter().filter(|w| w.is_alive()) {
        assert!(
            out.insert(w.instance, (w.id, w.pid)).is_none(),
            "two live workers at instance {} outside a reload: {:?}",
            w.instance,
            master.workers()
        );
    }
    out
}

fn indexes(master: &Master) -> Vec<u32> {
    places(master).into_keys().collect()
}

/// `sh` printing its two variables, then the test worker; run as `program` (a link named `node`
/// makes it a Node program for the master).
fn printing(program: &Path, count: usize) -> MasterConfig {
    let mut c = test_config("instances", count);
    c.program = program.to_path_buf();
    c.args = vec![
        "-c".into(),
        format!(
            "echo \"$DROVER_INSTANCE ${{NODE_APP_INSTANCE:-unset}}\"; exec {}",
            test_worker().display()
        )
        .into(),
    ];
    c.capture_output = true;
    c
}

/// The next line each of `pids` printed: pid → line.
async fn lines_of(output: &mut drover::OutputLines, pids: &[u32]) -> BTreeMap<u32, String> {
    let mut seen = BTreeMap::new();
    timeout(DEADLINE, async {
        while seen.len() < pids.len() {
            let line = output.recv().await.expect("output");
            if pids.contains(&line.pid) {
                seen.entry(line.pid).or_insert(line.line);
            }
        }
    })
    .await
    .expect("every worker printed its line");
    seen
}

#[tokio::test]
async fn instances_are_kept_by_restarts_and_renewed_by_reloads_and_scales() {
    let mut c = test_config("instances", 3);
    c.restart = RestartPolicy::OnFailure;
    let master = Master::new(c).unwrap();
    master.start().await.unwrap();
    assert_eq!(indexes(&master), [0, 1, 2]);
    let before = places(&master);

    // Restarted by request and by policy: same id, same place, new process.
    let (id1, pid1) = before[&1];
    master.restart_worker(id1).await.unwrap();
    let w = master.worker_at(1).unwrap();
    assert_eq!((w.id, w.instance, w.restarts), (id1, 1, 1));
    assert_ne!(w.pid, pid1);
    let mut events = master.events();
    let (id2, _) = before[&2];
    master.send(id2, &json!({"cmd": "exit", "code": 3})).await.unwrap();
    assert_eq!(next_exit(&mut events).await.id, id2);
    assert!(
        drover_tests::eventually(DEADLINE, || master.worker_at(2).is_some_and(|w| w.restarts == 1
            && w.is_alive()
            && w.status == drover::WorkerStatus::Started))
        .await
    );
    assert_eq!(master.worker_at(2).unwrap().id, id2);

    // A reload, all at once: new ids in the same places.
    master.graceful_reload(None).await.unwrap();
    let after = places(&master);
    assert_eq!(after.keys().copied().collect::<Vec<_>>(), [0, 1, 2]);
    assert!(after.values().all(|(id, _)| *id > 3), "{after:?}");
    // Rolling, one at a time: the same.
    let mut rolling = (*master.config()).clone();
    rolling.reload = ReloadStrategy::Rolling { batch: 1 };
    master.graceful_reload(Some(rolling)).await.unwrap();
    assert_eq!(indexes(&master), [0, 1, 2]);
    assert!(places(&master).values().all(|(id, _)| *id > 6));

    // Scaling down removes the highest places, up fills the lowest free ones.
    master.rescale(1).await.unwrap();
    assert_eq!(indexes(&master), [0]);
    master.rescale(4).await.unwrap();
    assert_eq!(indexes(&master), [0, 1, 2, 3]);
    assert!(master.worker_at(4).is_none());
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn every_worker_gets_drover_instance_and_a_node_program_node_app_instance() {
    let dir = tempfile::tempdir().unwrap();
    // The same shell under two names: a program called `node` is a Node program.
    let node = dir.path().join("node");
    std::os::unix::fs::symlink("/bin/sh", &node).unwrap();
    for (program, node_app) in [(Path::new("/bin/sh"), false), (node.as_path(), true)] {
        let master = Master::new(printing(program, 2)).unwrap();
        assert_eq!(master.config().runs_node(), node_app);
        let mut output = master.output();
        master.start().await.unwrap();
        let by_pid: BTreeMap<u32, u32> = master.workers().iter().map(|w| (w.pid, w.instance)).collect();
        let pids: Vec<u32> = by_pid.keys().copied().collect();
        for (pid, line) in lines_of(&mut output, &pids).await {
            let i = by_pid[&pid];
            let expected = if node_app {
                format!("{i} {i}")
            } else {
                format!("{i} unset")
            };
            assert_eq!(line, expected, "{}", program.display());
        }
        // A replacement is told the same index.
        let w = master.worker_at(1).unwrap();
        master.restart_worker(w.id).await.unwrap();
        let new_pid = master.worker_at(1).unwrap().pid;
        let line = lines_of(&mut output, &[new_pid]).await.remove(&new_pid).unwrap();
        assert!(line.starts_with("1 "), "{line}");
        master.graceful_shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_group_left_without_workers_says_so_once_and_again_after_it_revives() {
    let mut c = test_config("empty", 2);
    c.restart = RestartPolicy::Never;
    let master = Master::new(c).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    let ids: Vec<u64> = master.workers().iter().map(|w| w.id).collect();
    master.send(ids[0], &json!({"cmd": "exit", "code": 1})).await.unwrap();
    assert_eq!(next_exit(&mut events).await.id, ids[0]);
    master.send(ids[1], &json!({"cmd": "exit", "code": 0})).await.unwrap();
    // The second exit empties the group: then the event, and nothing is restarted.
    let mut saw_exit = false;
    loop {
        match next_event(&mut events).await {
            Event::Exit(e) => {
                assert_eq!(e.id, ids[1]);
                saw_exit = true;
            }
            Event::NoWorkerLeft => break,
            Event::Restarting { .. } => panic!("restart never restarted"),
            _ => {}
        }
    }
    assert!(saw_exit, "the event follows the last exit");
    assert_eq!(master.status(), MasterStatus::Started, "core's status is unchanged");

    // A worker restarted on request revives the group; emptied again, it says so again.
    master.restart_worker(ids[0]).await.unwrap();
    master.send(ids[0], &json!({"cmd": "exit", "code": 1})).await.unwrap();
    loop {
        if let Event::NoWorkerLeft = next_event(&mut events).await {
            break;
        }
    }
    master.graceful_shutdown().await.unwrap();
    // Shut down: no such event for the workers the shutdown ended.
    while let Some(event) = events.try_recv() {
        assert!(!matches!(event, Event::NoWorkerLeft), "after the shutdown: {event:?}");
    }
}

#[tokio::test]
async fn a_master_that_was_shut_down_starts_again_only_when_asked_to() {
    let master = Master::new(test_config("again", 2)).unwrap();
    master.start().await.unwrap();
    let first: Vec<u32> = master.workers().iter().map(|w| w.pid).collect();
    master.graceful_shutdown().await.unwrap();
    assert_eq!(master.status(), MasterStatus::ShutDown);
    // start(): a shutdown is final, as in every face.
    assert!(matches!(
        master.start().await,
        Err(drover::Error::State {
            status: MasterStatus::ShutDown,
            ..
        })
    ));
    master.start_again().await.unwrap();
    assert_eq!(master.status(), MasterStatus::Started);
    assert_eq!(indexes(&master), [0, 1]);
    assert!(master.workers().iter().all(|w| !first.contains(&w.pid)));
    master.graceful_shutdown().await.unwrap();
}
