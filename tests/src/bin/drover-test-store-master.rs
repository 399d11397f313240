//! A master process whose store is persisted, for the tests that kill the master itself:
//! `drover-test-store-master DIR COUNT [FSYNC]` starts COUNT test workers in the `store-writer`
//! mode (each writes to the store without end and prints `acked PATH VALUE` on the shared stdout
//! as each write is acknowledged) over a store persisted in DIR, prints `started`, and then
//! waits to be killed.

use drover::store::persist::{FsyncPolicy, PersistConfig};
use drover::MasterConfig;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: drover-test-store-master DIR COUNT [FSYNC]");
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(2);
    let fsync = match args.next().as_deref() {
        Some("everysec") => FsyncPolicy::Everysec,
        Some("never") => FsyncPolicy::Never,
        _ => FsyncPolicy::Always,
    };
    let worker = std::env::current_exe()
        .expect("own path")
        .with_file_name("drover-test-worker");
    let config = MasterConfig::program(worker)
        .count(count)
        .name("store-crash")
        .env("DROVER_TEST_MODE", "store-writer")
        .persist_store(PersistConfig {
            fsync,
            ..PersistConfig::new(dir)
        });
    let master = match drover::Master::new(config) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("drover-test-store-master: {e}");
            std::process::exit(2);
        }
    };
    master.start().await.expect("workers start");
    println!("started");
    std::future::pending::<()>().await;
}
