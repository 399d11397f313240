//! The actor against a fake process, under tokio's paused clock: the test plays the worker on a
//! real socket pair, and every timeout is checked to the instant.

use super::*;
use crate::config::{Heartbeat, Timeouts};
use crate::exit::ExitReason;
use crate::master::events::Events;
use crate::master::host_reads::WorkerChannel;
use crate::master::spawn::fake::FakeChild;
use crate::protocol::channel;
use std::sync::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

const PID: u32 = 4242;
const START: Duration = Duration::from_secs(3);
const STOP: Duration = Duration::from_secs(10);
const QUIT: Duration = Duration::from_secs(5);
const KILL: Duration = Duration::from_secs(7);

/// A config whose timeouts all differ, so each step of an escalation shows which one it took.
fn config(ready: ReadySource, heartbeat: Option<Heartbeat>) -> Arc<MasterConfig> {
    let mut config = MasterConfig::program("/bin/true");
    config.name = "test".into();
    config.timeouts = Timeouts {
        start: START,
        stop: STOP,
        quit: QUIT,
        kill: KILL,
    };
    config.ready = ready;
    config.heartbeat = heartbeat;
    Arc::new(config)
}

/// The test's side: the worker's end of the channel, the fake process, the master's handle.
struct Worker {
    handle: WorkerHandle,
    child: FakeChild,
    events: Events,
    lines: Lines<BufReader<OwnedReadHalf>>,
    out: OwnedWriteHalf,
    /// `ready: node-ipc`: the worker's end of its Node IPC channel.
    node: Option<tokio::net::UnixStream>,
}

/// A launched worker whose actor reads its channel itself (or, with `host`, gets its frames
/// from the host's loop, as `frames` says).
fn launch(config: Arc<MasterConfig>, obeys_sigterm: bool) -> Worker {
    launch_with(config, obeys_sigterm, None).0
}

fn launch_with(
    config: Arc<MasterConfig>,
    obeys_sigterm: bool,
    host: Option<Arc<dyn ChannelHost>>,
) -> (Worker, EventHub) {
    let (master_end, worker_end) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
    let codec = FrameCodec::new(config.max_frame_bytes);
    let (node_channel, node) = if config.ready == ReadySource::NodeIpc {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
        theirs.set_nonblocking(true).expect("non-blocking");
        let theirs = tokio::net::UnixStream::from_std(theirs).expect("registered");
        (
            Some(channel::split(ours).expect("the master's end splits")),
            Some(theirs),
        )
    } else {
        (None, None)
    };
    let (frames, write_half) = match host {
        None => {
            let (read, write) = channel::split(master_end).expect("the master's end splits");
            (Frames::Own(FramedRead::new(read, codec)), write)
        }
        Some(host) => {
            let (host_frames, write) = channel::split_for_host(master_end, codec).expect("split for the host");
            let fd = host_frames.fd();
            let (to_actor, from_host) = mpsc::unbounded_channel();
            host.adopt(WorkerChannel::new(1, PID, host_frames, to_actor));
            (Frames::Host { from_host, host, fd }, write)
        }
    };
    let child = FakeChild::new(PID, obeys_sigterm);
    let hub = EventHub::default();
    let events = hub.subscribe();
    let launched = Launched {
        id: 1,
        instance: 0,
        restarts: 0,
        generation: 0,
        config,
        child: child.clone(),
        frames,
        write_half,
        notify: None,
        node_channel,
        listeners: Arc::new(Listeners::default()),
        router: None,
    };
    let handle = super::super::launch::start(launched, &hub);
    worker_end.set_nonblocking(true).expect("non-blocking");
    let stream = tokio::net::UnixStream::from_std(worker_end).expect("registered");
    let (read, out) = stream.into_split();
    let worker = Worker {
        handle,
        child,
        events,
        lines: BufReader::new(read).lines(),
        out,
        node,
    };
    (worker, hub)
}

impl Worker {
    async fn say(&mut self, frame: &WorkerFrame) {
        let mut line = serde_json::to_vec(frame).expect("a frame encodes");
        line.push(b'\n');
        self.out.write_all(&line).await.expect("the master's end reads");
    }

    async fn report(&mut self, status: WorkerStatus) {
        self.say(&WorkerFrame::Status { status, name: None }).await;
    }

    /// The next frame the master writes.
    async fn hears(&mut self) -> MasterFrame {
        let line = self.lines.next_line().await.expect("the channel reads");
        let line = line.expect("the master wrote a frame before closing");
        serde_json::from_str(&line).expect("a master frame")
    }

    /// Hello, welcome, STARTED, and the actor has seen it.
    async fn start(&mut self) {
        let hello = WorkerFrame::Hello {
            version: protocol::PROTOCOL_VERSION,
            pid: None,
        };
        self.say(&hello).await;
        assert!(matches!(self.hears().await, MasterFrame::Welcome { .. }));
        self.report(WorkerStatus::Started).await;
        self.reaches(WorkerStatus::Started).await;
    }

    /// Waits for the actor to announce `status`.
    async fn reaches(&mut self, status: WorkerStatus) {
        self.event(|e| matches!(e, Event::Status { to, .. } if *to == status))
            .await;
    }

    /// The first event that matches, skipping the others.
    async fn event(&mut self, wanted: impl Fn(&Event) -> bool) -> Event {
        loop {
            let event = self.events.recv().await.expect("the hub lives");
            if wanted(&event) {
                return event;
            }
        }
    }

    async fn exit(&mut self) -> WorkerExit {
        match self.event(|e| matches!(e, Event::Exit(_))).await {
            Event::Exit(exit) => exit,
            _ => unreachable!("only an exit matches"),
        }
    }

    /// The signals sent so far, as (time since `t0`, signal).
    fn signals_since(&self, t0: Instant) -> Vec<(Duration, libc::c_int)> {
        self.child.signals().into_iter().map(|(at, s)| (at - t0, s)).collect()
    }
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_ignores_stop_gets_quit_then_sigterm_then_sigkill_each_after_its_timeout() {
    let mut worker = launch(config(ReadySource::Message, None), false);
    worker.start().await;
    let t0 = Instant::now();
    worker.handle.retire();
    assert_eq!(worker.hears().await, MasterFrame::Stop);
    assert_eq!(t0.elapsed(), Duration::ZERO);
    assert_eq!(worker.hears().await, MasterFrame::Quit);
    assert_eq!(t0.elapsed(), STOP, "quit follows stop after the stop timeout");
    let exit = worker.exit().await;
    assert_eq!(
        worker.signals_since(t0),
        vec![(STOP + QUIT, libc::SIGTERM), (STOP + QUIT + KILL, libc::SIGKILL)],
        "SIGTERM after the quit timeout, SIGKILL after the kill timeout"
    );
    assert!(exit.requested);
    assert_eq!(exit.last_status, WorkerStatus::Started);
    assert_eq!(
        exit.reason,
        ExitReason::ExternalSignal {
            signal: libc::SIGKILL,
            core_dumped: false
        }
    );
    assert!(!worker.handle.info().is_alive());
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_stops_when_asked_is_told_to_quit_at_once_and_never_signalled() {
    let mut worker = launch(config(ReadySource::Message, None), false);
    worker.start().await;
    let t0 = Instant::now();
    worker.handle.retire();
    assert_eq!(worker.hears().await, MasterFrame::Stop);
    tokio::time::sleep(Duration::from_secs(2)).await;
    worker.report(WorkerStatus::Stopped).await;
    assert_eq!(worker.hears().await, MasterFrame::Quit);
    assert_eq!(t0.elapsed(), Duration::from_secs(2));
    worker.report(WorkerStatus::ShuttedDown).await;
    worker.child.exit(ExitReason::NormalExit { code: 0 });
    let exit = worker.exit().await;
    assert!(worker.child.signals().is_empty(), "{:?}", worker.child.signals());
    assert!(exit.requested);
    assert_eq!(exit.last_status, WorkerStatus::ShuttedDown);
    assert_eq!(worker.handle.info().status, WorkerStatus::ShuttedDown);
}

#[tokio::test(start_paused = true)]
async fn a_second_retire_never_restarts_the_escalation() {
    let mut worker = launch(config(ReadySource::Message, None), false);
    worker.start().await;
    let t0 = Instant::now();
    worker.handle.retire();
    assert_eq!(worker.hears().await, MasterFrame::Stop);
    tokio::time::sleep(STOP / 2).await;
    worker.handle.retire();
    assert_eq!(worker.hears().await, MasterFrame::Quit);
    assert_eq!(t0.elapsed(), STOP);
    worker.exit().await;
    assert_eq!(worker.signals_since(t0)[0], (STOP + QUIT, libc::SIGTERM));
}

#[tokio::test(start_paused = true)]
async fn what_a_worker_wrote_just_before_it_exited_is_reported_before_its_exit() {
    let mut worker = launch(config(ReadySource::Message, None), false);
    worker.start().await;
    let last = WorkerFrame::Message {
        data: serde_json::json!("last words"),
    };
    worker.say(&last).await;
    worker.child.exit(ExitReason::AbnormalExit { code: 3 });
    let event = worker
        .event(|e| matches!(e, Event::Message { .. } | Event::Exit(_)))
        .await;
    assert!(matches!(event, Event::Message { .. }), "{event:?}");
    let exit = worker.exit().await;
    assert!(!exit.requested);
    assert_eq!(exit.reason, ExitReason::AbnormalExit { code: 3 });
    assert_eq!(
        worker.handle.info().status,
        WorkerStatus::Failed,
        "a worker that died serving is FAILED"
    );
}

/// A worker that exits with the master's welcome unread resets the channel (ECONNRESET on the
/// master's read): that is not a protocol error, and its exit code is why it went. (Node's
/// `process.exit(3)` right after `new MessageBus()` did this now and then.)
#[tokio::test(start_paused = true)]
async fn a_worker_that_exits_with_frames_unread_is_reported_by_its_exit_not_as_a_protocol_error() {
    let Worker {
        handle,
        child,
        mut events,
        lines,
        mut out,
        node: _,
    } = launch(config(ReadySource::Message, None), false);
    let hello = WorkerFrame::Hello {
        version: protocol::PROTOCOL_VERSION,
        pid: None,
    };
    let mut line = serde_json::to_vec(&hello).expect("a frame encodes");
    line.push(b'\n');
    out.write_all(&line).await.expect("the master's end reads");
    // The welcome is waiting, unread, on the worker's end when the worker closes it: a reset.
    let read = lines.into_inner().into_inner();
    let readable = tokio::time::timeout(Duration::from_secs(1), read.readable()).await;
    assert!(
        matches!(readable, Ok(Ok(()))),
        "the master wrote its welcome: {readable:?}"
    );
    drop((read, out));
    child.exit(ExitReason::AbnormalExit { code: 3 });
    let exit = loop {
        match events.recv().await.expect("the actor reports") {
            Event::ProtocolError { error, .. } => panic!("reported as a protocol error: {error}"),
            Event::Failed { failure, .. } => panic!("failed as {failure:?}, not by its exit"),
            Event::Exit(exit) => break exit,
            _ => {}
        }
    };
    assert_eq!(exit.reason, ExitReason::AbnormalExit { code: 3 });
    assert!(!exit.requested);
    assert_eq!(handle.info().failure, None);
}

#[tokio::test(start_paused = true)]
async fn a_refused_worker_gets_the_quit_timeout_to_leave_before_the_signals() {
    let mut worker = launch(config(ReadySource::Message, None), false);
    let hello = WorkerFrame::Hello {
        version: protocol::PROTOCOL_VERSION + 1,
        pid: None,
    };
    worker.say(&hello).await;
    let t0 = Instant::now();
    match worker.hears().await {
        MasterFrame::Error { code, .. } => assert_eq!(code, "version_mismatch"),
        other => panic!("a refusal, not {other:?}"),
    }
    let exit = worker.exit().await;
    assert_eq!(
        worker.signals_since(t0),
        vec![(QUIT, libc::SIGTERM), (QUIT + KILL, libc::SIGKILL)]
    );
    assert!(!exit.requested);
    assert!(matches!(
        worker.handle.info().failure,
        Some(WorkerFailure::Protocol {
            error: ProtocolError::VersionMismatch { .. }
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_node_ipc_worker_is_asked_to_shut_down_and_given_the_stop_timeout() {
    let mut worker = launch(config(ReadySource::NodeIpc, None), false);
    let mut node = worker.node.take().expect("a Node IPC channel");
    node.write_all(b"\"ready\"\n").await.expect("the master reads");
    worker.reaches(WorkerStatus::Started).await;
    let t0 = Instant::now();
    worker.handle.retire();
    let mut line = vec![0u8; b"\"shutdown\"\n".len()];
    tokio::io::AsyncReadExt::read_exact(&mut node, &mut line)
        .await
        .expect("the master writes");
    assert_eq!(line, b"\"shutdown\"\n");
    assert_eq!(t0.elapsed(), Duration::ZERO);
    worker.exit().await;
    assert_eq!(
        worker.signals_since(t0),
        vec![(STOP, libc::SIGTERM), (STOP + KILL, libc::SIGKILL)]
    );
}

#[tokio::test(start_paused = true)]
async fn kill_sends_sigkill_to_the_group_at_once() {
    let mut worker = launch(config(ReadySource::Message, None), false);
    worker.start().await;
    let t0 = Instant::now();
    worker.handle.kill();
    let exit = worker.exit().await;
    assert_eq!(worker.signals_since(t0), vec![(Duration::ZERO, libc::SIGKILL)]);
    assert!(exit.requested);
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_never_says_hello_fails_at_the_start_timeout_and_is_terminated() {
    let mut worker = launch(config(ReadySource::Message, None), false);
    let t0 = Instant::now();
    let failed = worker.event(|e| matches!(e, Event::Failed { .. })).await;
    assert_eq!(t0.elapsed(), START);
    assert!(matches!(
        failed,
        Event::Failed {
            failure: WorkerFailure::StartTimeout { timeout: START },
            ..
        }
    ));
    let exit = worker.exit().await;
    assert_eq!(
        worker.signals_since(t0),
        vec![(START, libc::SIGTERM), (START + KILL, libc::SIGKILL)]
    );
    assert!(!exit.requested, "the master gave up on it; nobody asked it to end");
    assert_eq!(worker.handle.info().status, WorkerStatus::Failed);
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_speaks_no_protocol_gets_sigterm_as_its_stop_request_with_the_stop_timeout() {
    let mut worker = launch(config(ReadySource::Spawn, None), false);
    worker.reaches(WorkerStatus::Started).await;
    let t0 = Instant::now();
    worker.handle.retire();
    worker.exit().await;
    assert_eq!(
        worker.signals_since(t0),
        vec![(Duration::ZERO, libc::SIGTERM), (STOP, libc::SIGKILL)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_exits_on_sigterm_is_never_killed() {
    let mut worker = launch(config(ReadySource::Spawn, None), true);
    worker.reaches(WorkerStatus::Started).await;
    worker.handle.retire();
    let exit = worker.exit().await;
    assert_eq!(worker.child.signals().len(), 1);
    assert_eq!(
        exit.reason,
        ExitReason::ExternalSignal {
            signal: libc::SIGTERM,
            core_dumped: false
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_worker_silent_past_its_heartbeat_interval_and_tolerance_is_failed_as_hung() {
    let heartbeat = Heartbeat {
        interval: Duration::from_secs(2),
        tolerance: Duration::from_secs(1),
    };
    let mut worker = launch(config(ReadySource::Message, Some(heartbeat)), false);
    worker.start().await;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let beat = WorkerFrame::Heartbeat {
        rss_bytes: Some(1),
        uptime_ms: None,
        stats: Default::default(),
    };
    worker.say(&beat).await;
    let failed = worker.event(|e| matches!(e, Event::Failed { .. })).await;
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(2 + 3),
        "the heartbeat pushed the deadline back"
    );
    assert!(matches!(
        failed,
        Event::Failed {
            failure: WorkerFailure::Hung { .. },
            ..
        }
    ));
    worker.exit().await;
    assert_eq!(worker.signals_since(t0)[0], (Duration::from_secs(5), libc::SIGTERM));
    assert_eq!(worker.handle.info().rss_bytes, Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_retiring_worker_is_not_failed_for_missing_heartbeats() {
    let heartbeat = Heartbeat {
        interval: Duration::from_secs(1),
        tolerance: Duration::from_secs(1),
    };
    let mut worker = launch(config(ReadySource::Message, Some(heartbeat)), false);
    worker.start().await;
    worker.handle.retire();
    assert_eq!(worker.hears().await, MasterFrame::Stop);
    assert_eq!(worker.hears().await, MasterFrame::Quit);
    worker.exit().await;
    assert!(worker.handle.info().failure.is_none());
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_kills_the_worker() {
    let worker = launch(config(ReadySource::Message, None), false);
    let Worker {
        handle,
        child,
        mut events,
        ..
    } = worker;
    let t0 = Instant::now();
    drop(handle);
    while !matches!(events.recv().await, Some(Event::Exit(_)) | None) {}
    let signals: Vec<_> = child.signals().into_iter().map(|(at, s)| (at - t0, s)).collect();
    assert_eq!(signals, vec![(Duration::ZERO, libc::SIGKILL)]);
    assert!(child.has_exited());
}

/// A host that records, in one log with the events, what the actor reports handled.
#[derive(Default)]
struct RecordingHost {
    log: Arc<Mutex<Vec<String>>>,
    channel: Mutex<Option<WorkerChannel>>,
}

impl ChannelHost for RecordingHost {
    fn adopt(&self, channel: WorkerChannel) {
        *self.channel.lock().expect("not poisoned") = Some(channel);
    }

    fn caught_up(&self, mark: CaughtUp) {
        let mut log = self.log.lock().expect("not poisoned");
        log.push(format!("{mark:?}"));
    }
}

#[tokio::test(start_paused = true)]
async fn the_actor_reports_each_forwarded_frame_handled_after_its_events() {
    let host = Arc::new(RecordingHost::default());
    let (mut worker, hub) = launch_with(config(ReadySource::Message, None), false, Some(host.clone()));
    let log = host.log.clone();
    let _subscription = hub.subscribe_fn(Arc::new(move |event: &Event| {
        if let Event::Status { to, .. } = event {
            log.lock().expect("not poisoned").push(format!("status {to:?}"));
        }
    }));
    let hello = WorkerFrame::Hello {
        version: protocol::PROTOCOL_VERSION,
        pid: None,
    };
    worker.say(&hello).await;
    worker.report(WorkerStatus::Started).await;
    // The host's loop reads both frames; neither is a message, so both go to the actor.
    let mut direct = 0;
    let mut read = |host: &RecordingHost| {
        let mut channel = host.channel.lock().expect("not poisoned");
        let channel = channel.as_mut().expect("adopted");
        channel.read_ready(&mut |_| direct += 1);
    };
    read(&host);
    assert!(matches!(worker.hears().await, MasterFrame::Welcome { .. }));
    worker.reaches(WorkerStatus::Started).await;
    let log = host.log.lock().expect("not poisoned").clone();
    assert_eq!(
        log,
        vec![
            format!("{:?}", CaughtUp::new(1, 1, true)),
            "status Started".to_string(),
            format!("{:?}", CaughtUp::new(1, 2, true)),
        ],
        "hello opens the channel to messages; STARTED is reported handled after its event"
    );
    assert_eq!(direct, 0);
}

#[tokio::test(start_paused = true)]
async fn a_heartbeats_stats_are_kept_and_one_past_their_bound_is_malformed() {
    let heartbeat = Heartbeat {
        interval: Duration::from_secs(2),
        tolerance: Duration::from_secs(1),
    };
    let mut worker = launch(config(ReadySource::Message, Some(heartbeat)), false);
    worker.start().await;
    let stats: std::collections::BTreeMap<String, f64> = [
        ("event_loop_lag_max_ms".to_string(), 812.5),
        ("gc_count".to_string(), 3.0),
    ]
    .into();
    worker
        .say(&WorkerFrame::Heartbeat {
            rss_bytes: None,
            uptime_ms: None,
            stats: stats.clone(),
        })
        .await;
    worker.event(|e| matches!(e, Event::Heartbeat { .. })).await;
    assert_eq!(worker.handle.info().stats, stats);
    // A heartbeat without stats keeps the last ones.
    worker
        .say(&WorkerFrame::Heartbeat {
            rss_bytes: None,
            uptime_ms: None,
            stats: Default::default(),
        })
        .await;
    worker.event(|e| matches!(e, Event::Heartbeat { .. })).await;
    assert_eq!(worker.handle.info().stats, stats);

    let too_many = (0..=MAX_HEARTBEAT_STATS).map(|i| (format!("s{i}"), 1.0)).collect();
    worker
        .say(&WorkerFrame::Heartbeat {
            rss_bytes: None,
            uptime_ms: None,
            stats: too_many,
        })
        .await;
    worker.event(|e| matches!(e, Event::ProtocolError { .. })).await;
    worker.exit().await;
    assert!(matches!(
        worker.handle.info().failure,
        Some(WorkerFailure::Protocol {
            error: ProtocolError::Malformed { .. }
        })
    ));
    assert_eq!(worker.handle.info().stats, stats, "the refused frame changed nothing");
}
