//! Several masters in one process are independent.

use drover::{Master, MasterConfig, MasterStatus, ReadySource, WorkerStatus};
use drover_tests::{pid_is_running, test_worker};

#[tokio::test]
async fn two_masters_with_different_programs_run_and_stop_independently() {
    let rust = Master::new(MasterConfig::program(test_worker()).count(2).name("rust")).unwrap();
    let sleepers = Master::new(
        MasterConfig::program("sleep")
            .arg("60")
            .count(2)
            .name("sleep")
            .ready(ReadySource::Spawn),
    )
    .unwrap();
    tokio::try_join!(rust.start(), sleepers.start()).unwrap();
    let sleeper_pids: Vec<u32> = sleepers.workers().iter().map(|w| w.pid).collect();
    rust.graceful_shutdown().await.unwrap();
    assert_eq!(rust.status(), MasterStatus::ShutDown);
    assert_eq!(sleepers.status(), MasterStatus::Started);
    assert!(sleepers.workers().iter().all(|w| w.status == WorkerStatus::Started));
    assert!(sleeper_pids.iter().all(|p| pid_is_running(*p)));
    // Ids are per master: each starts at 1.
    assert_eq!(sleepers.workers()[0].id, 1);
    sleepers.hard_shutdown().await.unwrap();
    assert!(sleeper_pids.iter().all(|p| !pid_is_running(*p)));
}
