//! Listening sockets owned by the master (declared, systemd-style; and on demand over the bus),
//! and readiness without the MessageBus (notify, node-ipc, spawn).

use drover::{Error, Event, Events, ExitReason, ListenSpec, Master, MasterConfig, ReadySource, WorkerStatus};
use drover_tests::{next_exit, next_matching, pid_is_running, test_config};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::TcpStream;
use std::time::Duration;

fn config(count: usize) -> MasterConfig {
    test_config("sockets", count)
}

/// Asks test worker `id` to listen on `address` over the bus; returns what it answers under
/// `answer` (`listening`: the local address; `listen_error`: the error).
async fn ask_to_listen(master: &Master, events: &mut Events, id: u64, address: &str, answer: &str) -> String {
    master
        .send(id, &json!({"cmd": "listen", "address": address}))
        .await
        .unwrap();
    next_matching(events, |e| match e {
        Event::Message { data, .. } => data.get(answer).and_then(Value::as_str).map(String::from),
        _ => None,
    })
    .await
}

/// [`drover_tests::ask_pid`] off the async runtime.
async fn ask_pid(addr: String) -> std::io::Result<u32> {
    tokio::task::spawn_blocking(move || drover_tests::ask_pid(&addr))
        .await
        .expect("the blocking client task runs")
}

fn bound(master: &Master) -> String {
    master.listeners()[0].1.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_sockets_are_passed_systemd_style_and_shared_by_every_worker() {
    let c = config(4)
        .env("DROVER_TEST_SERVE_FDS", "1")
        .listen("web=127.0.0.1:0".parse::<ListenSpec>().unwrap());
    let master = Master::new(c).unwrap();
    master.start().await.unwrap(); // a worker exits 64 if LISTEN_PID is not its own pid
    let addr = bound(&master);
    let workers: BTreeSet<u32> = master.workers().iter().map(|w| w.pid).collect();
    // Shared by several: with the one that answered frozen (the kernel may wake the same worker
    // for every connection on a quiet machine), another one answers.
    let first = ask_pid(addr.clone()).await.unwrap();
    assert!(workers.contains(&first), "pid {first} is not one of the workers");
    freeze(first).await;
    let other = ask_pid(addr.clone()).await.unwrap();
    signal(first, libc::SIGCONT);
    assert!(workers.contains(&other) && other != first, "{other} after {first}");
    master.graceful_shutdown().await.unwrap();
    assert!(TcpStream::connect(&addr).is_err(), "the socket is closed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_stays_open_through_restart_and_reload_so_no_connection_is_refused() {
    let c = config(2)
        .env("DROVER_TEST_SERVE_FDS", "1")
        .listen("127.0.0.1:0".parse().unwrap());
    let master = Master::new(c).unwrap();
    master.start().await.unwrap();
    let addr = bound(&master);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (addr, stop) = (addr.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match ask_pid(addr.clone()).await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        })
    };
    let first = master.workers()[0].id;
    master.restart_worker(first).await.unwrap();
    master.graceful_reload(None).await.unwrap();
    master.rescale(3).await.unwrap();
    master.rescale(1).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = client.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} connections failed: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 10, "the client made {ok} requests");
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn a_port_in_use_is_a_start_error_and_nothing_is_spawned() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let master = Master::new(config(2).listen(addr.parse().unwrap())).unwrap();
    let err = master.start().await.unwrap_err();
    assert!(matches!(err, Error::Listen(_)), "{err:?}");
    assert!(
        err.to_string().contains(&format!("cannot listen on {addr}")) && err.to_string().contains("EADDRINUSE"),
        "{err}"
    );
    assert!(master.workers().is_empty());
}

#[tokio::test]
async fn a_unix_socket_path_is_removed_at_shutdown() {
    let path = std::env::temp_dir().join(format!("drover-sockets-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let master = Master::new(config(1).listen(ListenSpec {
        name: None,
        addr: drover::ListenAddr::Unix(path.clone()),
        balance: None,
    }))
    .unwrap();
    master.start().await.unwrap();
    assert!(path.exists());
    master.graceful_shutdown().await.unwrap();
    assert!(!path.exists(), "{} survived the shutdown", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_asking_for_the_same_address_share_one_socket_and_bind_errors_come_back() {
    let master = Master::new(config(2)).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    let w = master.workers();
    let local = ask_to_listen(&master, &mut events, w[0].id, "127.0.0.1:0", "listening").await;
    let second = ask_to_listen(&master, &mut events, w[1].id, "127.0.0.1:0", "listening").await;
    assert_eq!(local, second, "the same address gives the same socket");
    // Both accept on it. On a quiet machine the kernel may wake the same worker for every
    // connection, so the one that answered is frozen: the next connection can only be the other's.
    let first = ask_pid(local.clone()).await.unwrap();
    let pids: BTreeSet<u32> = w.iter().map(|w| w.pid).collect();
    assert!(pids.contains(&first), "{first} is not a worker");
    freeze(first).await;
    let other = ask_pid(local.clone()).await.unwrap();
    signal(first, libc::SIGCONT);
    assert_eq!(BTreeSet::from([first, other]), pids, "both workers accept on it");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    master
        .send(w[0].id, &json!({"cmd": "listen", "address": busy}))
        .await
        .unwrap();
    let reply = next_matching(&mut events, |e| match e {
        Event::Message { data, .. } if data.get("listen_error").is_some() => Some(data.clone()),
        _ => None,
    })
    .await;
    let error = reply["listen_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("cannot listen on {busy}")) && error.contains("EADDRINUSE"),
        "{error}"
    );
    // The worker has the errno and the address as fields, not only in the words.
    assert_eq!(reply["errno"], json!(98), "EADDRINUSE on Linux: {reply}");
    assert_eq!(reply["refused"], json!(busy), "{reply}");
    assert_eq!(
        master.worker(w[0].id).unwrap().status,
        WorkerStatus::Started,
        "the worker lives on"
    );
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn notify_readiness_waits_for_ready_1_from_the_worker_and_ignores_strangers() {
    let master = Master::new(config(1).env("DROVER_TEST_MODE", "notify").ready(ReadySource::Notify)).unwrap();
    let mut events = master.events();
    let start = {
        let master = master.clone();
        tokio::spawn(async move { master.start().await })
    };
    let (id, socket) = next_matching(&mut events, |e| match e {
        Event::Message { id, data, .. } => data
            .get("notify_socket")
            .and_then(Value::as_str)
            .map(|s| (*id, s.to_string())),
        _ => None,
    })
    .await;
    assert!(socket.starts_with('@'), "{socket}");
    // A process outside the worker's group cannot make it ready.
    {
        use std::os::linux::net::SocketAddrExt;
        let stranger = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&socket.as_bytes()[1..]).unwrap();
        stranger.send_to_addr(b"READY=1\n", &addr).unwrap();
    }
    master.send(id, &json!({"cmd": "echo"})).await.unwrap();
    next_matching(&mut events, |e| {
        matches!(e, Event::Message { data, .. } if data.get("echo").is_some()).then_some(())
    })
    .await;
    assert_eq!(
        master.worker(id).unwrap().status,
        WorkerStatus::Initialized,
        "a stranger's READY=1 is ignored"
    );
    master.send(id, &json!({"cmd": "notify-ready"})).await.unwrap();
    start.await.unwrap().unwrap();
    assert_eq!(master.worker(id).unwrap().status, WorkerStatus::Started);
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn a_message_to_a_program_that_never_speaks_the_protocol_fails_when_it_exits() {
    // It never says hello, so the message waits behind the welcome; when the process is gone the
    // sender learns it failed, instead of waiting forever.
    let c = MasterConfig::program("sleep")
        .arg("1")
        .count(1)
        .ready(ReadySource::Spawn);
    let master = Master::new(c).unwrap();
    master.start().await.unwrap();
    let id = master.workers()[0].id;
    let sent = tokio::time::timeout(Duration::from_secs(30), master.send(id, &json!({"hello": 1})))
        .await
        .expect("the send settles once the worker is gone");
    assert!(sent.is_err(), "a message nobody could read is not reported as sent");
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn spawn_readiness_starts_a_program_that_speaks_nothing_and_stops_it_with_sigterm() {
    let mut c = MasterConfig::program("sleep")
        .arg("60")
        .count(2)
        .ready(ReadySource::Spawn);
    c.timeouts.stop = Duration::from_secs(5);
    let master = Master::new(c).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let pids: Vec<u32> = master.workers().iter().map(|w| w.pid).collect();
    master.graceful_shutdown().await.unwrap();
    for pid in pids {
        assert!(!pid_is_running(pid));
    }
    let exit = next_exit(&mut events).await;
    assert_eq!(
        exit.reason,
        ExitReason::ExternalSignal {
            signal: libc::SIGTERM,
            core_dumped: false
        }
    );
    assert!(exit.requested);
}

#[tokio::test]
async fn node_ipc_readiness_runs_pm2_style_apps_unchanged() {
    let dir = std::env::temp_dir().join(format!("drover-node-ipc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let app = dir.join("app.js");
    std::fs::write(
        &app,
        r#"
        // A PM2-style app: says 'ready' when it is, leaves on 'shutdown', echoes other messages.
        process.on('message', (msg) => {
            if (msg === 'shutdown') process.exit(0);
            else process.send({ echo: msg });
        });
        setTimeout(() => process.send('ready'), 50);
        "#,
    )
    .unwrap();
    let mut c = MasterConfig::program("node")
        .arg(&app)
        .count(2)
        .ready(ReadySource::NodeIpc);
    c.env.insert("NODE_EXTRA_CA_CERTS".into(), String::new());
    let master = Master::new(c).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let w = master.workers();
    assert!(w.iter().all(|w| w.status == WorkerStatus::Started));
    master.send(w[0].id, &json!({"hello": 1})).await.unwrap();
    let echo = next_matching(&mut events, |e| match e {
        Event::Message { data, .. } => data.get("echo").cloned(),
        _ => None,
    })
    .await;
    assert_eq!(echo, json!({"hello": 1}));
    master.graceful_shutdown().await.unwrap();
    let mut exits = 0;
    while let Some(e) = events.try_recv() {
        if let Event::Exit(x) = e {
            assert_eq!(
                x.reason,
                ExitReason::NormalExit { code: 0 },
                "'shutdown' makes the app exit by itself"
            );
            assert!(x.requested);
            exits += 1;
        }
    }
    assert_eq!(exits, 2);
    let _ = std::fs::remove_dir_all(dir);
}

/// A worker that swaps the directory of a socket it asked for with a symlink to another makes the
/// master remove nothing there: the master removes only the socket file it made, through the
/// directory it made it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_socket_directory_makes_the_master_remove_nothing_else() {
    let root = std::env::temp_dir().join(format!("drover-swap-{}", std::process::id()));
    let (dir, old, victim) = (root.join("d"), root.join("d.old"), root.join("victim"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&victim).unwrap();
    let master = Master::new(config(1)).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let id = master.workers()[0].id;
    let address = format!("unix:{}", dir.join("x.sock").display());
    ask_to_listen(&master, &mut events, id, &address, "listening").await;
    // The swap: the socket's directory moves away, a symlink to another directory takes its name,
    // and there a file of the same name waits to be deleted.
    std::fs::rename(&dir, &old).unwrap();
    std::os::unix::fs::symlink(&victim, &dir).unwrap();
    std::fs::write(victim.join("x.sock"), "not yours").unwrap();
    master.graceful_shutdown().await.unwrap();
    assert_eq!(
        std::fs::read_to_string(victim.join("x.sock")).ok().as_deref(),
        Some("not yours"),
        "the master removed a file it did not make"
    );
    assert!(
        !old.join("x.sock").exists(),
        "the socket the master made was not removed"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// A worker may hold 64 on-demand sockets; the 65th is refused with the bound named, and the worker
/// (and its master) go on. Its successor gets the same sockets back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_asking_for_too_many_sockets_is_refused_and_its_successor_gets_the_same_ones() {
    let mut c = config(1);
    c.restart = drover::RestartPolicy::Always;
    let master = Master::new(c).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let id = master.workers()[0].id;
    let limit = drover::listen::MAX_LISTENERS_PER_WORKER;
    let mut locals = Vec::new();
    for i in 0..limit {
        let address = format!("127.0.1.{}:0", i + 1);
        locals.push(ask_to_listen(&master, &mut events, id, &address, "listening").await);
    }
    let error = ask_to_listen(&master, &mut events, id, "127.0.2.1:0", "listen_error").await;
    assert!(error.contains(&format!("{limit} listening sockets")), "{error}");
    assert_eq!(master.listeners().len(), limit);
    // kill -9: the restarted worker asks again for the first address and gets the same socket
    // (same port): it lingered for it.
    let pid = master.workers()[0].pid;
    // SAFETY: kill of our own worker.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    next_exit(&mut events).await;
    let restarted = drover_tests::eventually(Duration::from_secs(10), || {
        master
            .workers()
            .first()
            .is_some_and(|w| w.pid != pid && w.status == WorkerStatus::Started)
    })
    .await;
    assert!(restarted, "the worker was not restarted");
    let again = ask_to_listen(&master, &mut events, id, "127.0.1.1:0", "listening").await;
    assert_eq!(again, locals[0], "the successor got another socket");
    master.graceful_shutdown().await.unwrap();
}

/// A worker that dropped its privileges cannot have the master create a Unix socket file for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_running_as_another_user_cannot_ask_for_a_unix_socket_path() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: a worker cannot run as another user here; nothing to test");
        return;
    }
    let path = std::env::temp_dir().join(format!("drover-foreign-{}.sock", std::process::id()));
    let master = Master::new(config(1).env("DROVER_TEST_SETUID", "65534")).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let id = master.workers()[0].id;
    let error = ask_to_listen(
        &master,
        &mut events,
        id,
        &format!("unix:{}", path.display()),
        "listen_error",
    )
    .await;
    assert!(error.contains("uid 65534"), "{error}");
    assert!(!path.exists(), "the master created {} for the worker", path.display());
    // TCP is still served.
    ask_to_listen(&master, &mut events, id, "127.0.0.1:0", "listening").await;
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_robin_socket_hands_every_worker_its_share_of_connections_and_a_restart_drops_none() {
    let master = Master::new(config(4).balance(drover::Balance::RoundRobin)).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let ids: Vec<u64> = master.workers().iter().map(|w| w.id).collect();
    let mut addr = String::new();
    for id in &ids {
        addr = ask_to_listen(&master, &mut events, *id, "127.0.0.1:0", "listening").await;
    }
    assert_eq!(master.listeners().len(), 1, "one socket for every worker");
    let mut share = std::collections::BTreeMap::<u32, usize>::new();
    for _ in 0..400 {
        *share.entry(ask_pid(addr.clone()).await.unwrap()).or_default() += 1;
    }
    let pids: BTreeSet<u32> = master.workers().iter().map(|w| w.pid).collect();
    assert_eq!(
        share.keys().copied().collect::<BTreeSet<_>>(),
        pids,
        "every worker got connections"
    );
    let (max, min) = (share.values().max().unwrap(), share.values().min().unwrap());
    assert!(*max as f64 / *min as f64 <= 1.3, "{share:?}");

    // A client loop while worker 0 is restarted: it stops getting connections before its `stop`,
    // the others take them, and no connection is refused or reset.
    let client = ClientLoop::start(&addr);
    master.restart_worker(ids[0]).await.unwrap();
    let answered = client.finish().await;
    assert!(answered > 0);
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_reads_nothing_is_skipped_past_its_hand_off_bound_and_no_connection_is_lost() {
    use tokio::io::AsyncReadExt;
    let master = Master::new(config(2).balance(drover::Balance::RoundRobin)).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let workers = master.workers();
    let mut addr = String::new();
    for w in &workers {
        addr = ask_to_listen(&master, &mut events, w.id, "127.0.0.1:0", "listening").await;
    }
    // Worker 0 reads nothing from its channel for 5 s: the connections handed to it fill its
    // socket, then the master's hand-off bound; past that, round-robin skips it.
    master
        .send(workers[0].id, &json!({"cmd": "block", "ms": 5000}))
        .await
        .unwrap();
    const CONNECTIONS: usize = 1500;
    let mut streams = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        streams.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut share = std::collections::BTreeMap::<u32, usize>::new();
    for mut stream in streams {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_string(&mut line))
            .await
            .expect("every connection is answered within 30 s")
            .expect("no connection is reset");
        *share.entry(line.trim().parse().unwrap()).or_default() += 1;
    }
    let (blocked, reading) = (share[&workers[0].pid], share[&workers[1].pid]);
    eprintln!("connections answered: {blocked} by the blocked worker, {reading} by the other");
    assert_eq!(blocked + reading, CONNECTIONS);
    assert!(
        blocked > 0 && reading > 2 * blocked,
        "the blocked worker got {blocked}, the other {reading}: it was not skipped"
    );
    master.graceful_shutdown().await.unwrap();
}

/// The inodes of the TCP sockets listening on `port`: one per `reuseport` slot.
fn listening_inodes(port: u16) -> BTreeSet<u64> {
    drover_tests::listening_sockets(port).iter().map(|s| s.inode).collect()
}

/// The inodes of the sockets process `pid` has open.
fn socket_inodes_of(pid: u32) -> BTreeSet<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok())
        .collect()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port")
}

/// A reuseport master of `count` test workers, each of which has asked for the socket.
async fn reuseport_master(config: MasterConfig) -> (Master, Events, String) {
    let master = Master::new(config.balance(drover::Balance::ReusePort)).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let mut addr = String::new();
    for w in master.workers() {
        addr = ask_to_listen(&master, &mut events, w.id, "127.0.0.1:0", "listening").await;
    }
    (master, events, addr)
}

/// Opens `n` connections at once and reads each one's answer (a worker's pid) within 30 s.
async fn connect_and_read_pids(addr: &str, n: usize) -> Vec<u32> {
    use tokio::io::AsyncReadExt;
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        streams.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let mut pids = Vec::with_capacity(n);
    for (i, mut stream) in streams.into_iter().enumerate() {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_string(&mut line))
            .await
            .unwrap_or_else(|_| panic!("connection {i} of {n} got no answer within 30 s"))
            .unwrap_or_else(|e| panic!("connection {i} of {n} was reset: {e}"));
        pids.push(
            line.trim()
                .parse()
                .unwrap_or_else(|_| panic!("connection {i} answered {line:?}")),
        );
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuseport_gives_each_worker_a_socket_of_its_own_and_its_replacement_takes_the_same_socket() {
    let (master, mut events, addr) = reuseport_master(config(4)).await;
    let port = port_of(&addr);
    let slots = listening_inodes(port);
    assert_eq!(slots.len(), 4, "one listening socket per worker: {slots:?}");
    let workers = master.workers();
    let mut held = BTreeSet::new();
    for w in &workers {
        let own: Vec<u64> = socket_inodes_of(w.pid).intersection(&slots).copied().collect();
        assert_eq!(own.len(), 1, "worker {} holds exactly one slot: {own:?}", w.instance);
        held.insert(own[0]);
    }
    assert_eq!(held, slots, "no two workers share a slot");

    // The kernel spreads new connections over the slots by a hash of their addresses.
    let mut share = std::collections::BTreeMap::<u32, usize>::new();
    for _ in 0..2000 {
        *share.entry(ask_pid(addr.clone()).await.unwrap()).or_default() += 1;
    }
    let pids: BTreeSet<u32> = workers.iter().map(|w| w.pid).collect();
    assert_eq!(share.keys().copied().collect::<BTreeSet<_>>(), pids, "{share:?}");
    let (max, min) = (share.values().max().unwrap(), share.values().min().unwrap());
    assert!(*max as f64 / *min as f64 <= 1.35, "{share:?}");

    // Restarted under a client loop: nothing refused or reset, and the replacement gets the slot
    // its predecessor had.
    let first = workers.iter().find(|w| w.instance == 0).unwrap().clone();
    let first_slot = *socket_inodes_of(first.pid).intersection(&slots).next().unwrap();
    let client = ClientLoop::start(&addr);
    master.restart_worker(first.id).await.unwrap();
    let replacement = master.workers().into_iter().find(|w| w.id == first.id).unwrap();
    assert_ne!(replacement.pid, first.pid);
    ask_to_listen(&master, &mut events, first.id, "127.0.0.1:0", "listening").await;
    let answered = client.finish().await;
    assert!(answered > 0);
    assert!(
        socket_inodes_of(replacement.pid).contains(&first_slot),
        "the replacement of instance 0 holds the socket instance 0 had"
    );
    assert_eq!(listening_inodes(port), slots, "the same four sockets");
    master.graceful_shutdown().await.unwrap();
    assert!(listening_inodes(port).is_empty(), "every slot is closed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reuseport_slot_without_its_worker_is_served_by_the_others_and_a_retired_one_closes_once_drained() {
    let (master, mut events, addr) = reuseport_master(config(4).restart(drover::RestartPolicy::OnFailure)).await;
    let port = port_of(&addr);
    let last = master.workers().into_iter().find(|w| w.instance == 3).unwrap();

    // Frozen, instance 3 accepts nothing: its share of 200 connections waits on its slot. Killed,
    // it leaves the slot to the master, which hands those connections to the other workers
    // (without that, they would wait for a replacement that never asks for the socket).
    let pending = freeze_and_connect(last.pid, &addr, 200).await;
    signal(last.pid, libc::SIGKILL);
    let pids = pending.await.unwrap();
    assert!(!pids.contains(&last.pid), "the frozen worker answered nothing");
    assert_eq!(pids.len(), 200);
    let exit = drover_tests::next_exit_of(&mut events, last.id).await;
    assert!(
        matches!(exit.reason, ExitReason::ExternalSignal { signal: 9, .. }),
        "{exit:?}"
    );

    // Its replacement takes the slot again; frozen too, then scaled away: from its `stop` on
    // the master serves the slot (every queued connection is answered though the worker never
    // wakes), and once the worker is gone the slot is closed.
    let restarted = || {
        master
            .workers()
            .into_iter()
            .find(|w| w.instance == 3 && w.pid != last.pid && w.status == WorkerStatus::Started)
    };
    assert!(
        drover_tests::eventually(Duration::from_secs(30), || restarted().is_some()).await,
        "instance 3 is restarted"
    );
    let replacement = restarted().unwrap();
    ask_to_listen(&master, &mut events, replacement.id, "127.0.0.1:0", "listening").await;
    assert_eq!(listening_inodes(port).len(), 4);
    let pending = freeze_and_connect(replacement.pid, &addr, 200).await;
    let rescale = tokio::spawn({
        let master = master.clone();
        async move { master.rescale(3).await }
    });
    let pids = pending.await.unwrap();
    assert!(!pids.contains(&replacement.pid));
    rescale.await.unwrap().unwrap();
    assert!(
        drover_tests::eventually(Duration::from_secs(30), || listening_inodes(port).len() == 3).await,
        "the retired slot is closed: {:?}",
        listening_inodes(port)
    );
    // And the three left serve on.
    let live: BTreeSet<u32> = master.workers().iter().map(|w| w.pid).collect();
    for pid in connect_and_read_pids(&addr, 60).await {
        assert!(live.contains(&pid));
    }
    master.graceful_shutdown().await.unwrap();
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on one of the test's own workers.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}

/// Freezes worker `pid` with SIGSTOP, and waits until it is stopped (kill(2) returns before).
async fn freeze(pid: u32) {
    let stopped = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) == Some("T"))
    };
    signal(pid, libc::SIGSTOP);
    assert!(
        drover_tests::eventually(Duration::from_secs(30), stopped).await,
        "pid {pid} stops"
    );
}

/// Freezes worker `pid` (see [`freeze`]), then opens `n` connections to `addr` and returns once some of them wait in an accept queue
/// (the frozen worker's share); the task gives every connection's answer.
async fn freeze_and_connect(pid: u32, addr: &str, n: usize) -> tokio::task::JoinHandle<Vec<u32>> {
    freeze(pid).await;
    let pending = tokio::spawn({
        let addr = addr.to_string();
        async move { connect_and_read_pids(&addr, n).await }
    });
    let port = port_of(addr);
    assert!(
        drover_tests::eventually(Duration::from_secs(30), || tcp_queued_on(port) > 0).await,
        "connections queue on the frozen worker's slot"
    );
    pending
}

/// How many connections wait in the accept queues of the sockets listening on `port`.
fn tcp_queued_on(port: u16) -> usize {
    drover_tests::listening_sockets(port).iter().map(|s| s.queued).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_reuseport_socket_passes_each_worker_its_own_slot_at_fd_3() {
    let c = config(4)
        .env("DROVER_TEST_SERVE_FDS", "1")
        .listen("web=127.0.0.1:0,balance=reuseport".parse::<ListenSpec>().unwrap());
    let master = Master::new(c).unwrap();
    master.start().await.unwrap();
    let addr = bound(&master);
    let slots = listening_inodes(port_of(&addr));
    assert_eq!(slots.len(), 4, "{slots:?}");
    let mut held = BTreeSet::new();
    for w in master.workers() {
        let own: Vec<u64> = socket_inodes_of(w.pid).intersection(&slots).copied().collect();
        assert_eq!(own.len(), 1, "worker {} holds one slot: {own:?}", w.instance);
        held.insert(own[0]);
    }
    assert_eq!(held, slots);
    let mut served = BTreeSet::new();
    for _ in 0..400 {
        served.insert(ask_pid(addr.clone()).await.unwrap());
    }
    assert_eq!(
        served,
        master.workers().iter().map(|w| w.pid).collect::<BTreeSet<u32>>()
    );
    master.graceful_shutdown().await.unwrap();
    assert!(listening_inodes(port_of(&addr)).is_empty());
}

/// One client connecting again and again (a new connection per answer) until finished.
struct ClientLoop {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Result<usize, String>>,
}

impl ClientLoop {
    fn start(addr: &str) -> ClientLoop {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, addr) = (stop.clone(), addr.to_string());
        let task = tokio::task::spawn_blocking(move || {
            let mut answered = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                drover_tests::ask_pid(&addr).map_err(|e| format!("after {answered} answers: {e}"))?;
                answered += 1;
            }
            Ok(answered)
        });
        ClientLoop { stop, task }
    }

    /// Stops it; how many answers it got, every connection having been answered.
    async fn finish(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task
            .await
            .expect("the client loop runs")
            .expect("no connection refused or reset")
    }
}
