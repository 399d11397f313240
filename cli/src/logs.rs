//! The log: workers' output lines and drover's own lines (lifecycle events, progress), printed to
//! stdout, and drover's errors and progress redraws, printed to stderr. Each stream has its own
//! thread behind its own bounded queue ([`Printer`]).
//!
//! Nothing that produces a line ever waits for a terminal or a pipe: a full queue drops the line and
//! counts it. A paused terminal (Ctrl-S) or a pipe nobody reads blocks only a printer thread, never
//! the runtime that supervises, answers the control socket and stops the workers; at exit drover
//! waits a bounded time for the printers, then leaves without them. With core's own bounded output
//! channel that makes two places where a slow reader loses lines; both counts are added up, reported
//! in the log when they grow (so the output says so once it flows again), and exported as a metric.

use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use drover::{OutputLine, OutputStream, WorkerId};

/// How lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `[web 1 pid 4121] a line`, `[web 1 pid 4121] drover: started`.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Lines that may wait for the stdout printer thread.
const QUEUE_LINES: usize = 8192;

/// Messages that may wait for the stderr printer thread (errors, progress redraws: few).
const ERROR_QUEUE_LINES: usize = 256;

/// One output stream behind a bounded queue, written by a thread of its own that alone may block.
#[derive(Clone)]
struct Printer {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

enum Msg {
    /// Bytes to write as they are (a line carries its own newline).
    Text(String),
    /// Everything before it is written and flushed: say so.
    Flush(SyncSender<()>),
}

impl Printer {
    /// `open` runs on the new thread (a stream's lock may not move between threads).
    fn start<W: Write>(name: &str, open: impl FnOnce() -> W + Send + 'static, capacity: usize) -> Printer {
        let (tx, rx) = sync_channel::<Msg>(capacity);
        // If the thread cannot be created, `rx` is dropped with the closure: every line is then
        // refused at once and counted as dropped, as with a stuck terminal. Nothing blocks.
        let _ = std::thread::Builder::new().name(name.into()).spawn(move || {
            let mut out = std::io::BufWriter::new(open());
            loop {
                let msg = match rx.try_recv() {
                    Ok(msg) => msg,
                    Err(_) => {
                        let _ = out.flush();
                        match rx.recv() {
                            Ok(msg) => msg,
                            Err(_) => break,
                        }
                    }
                };
                match msg {
                    Msg::Text(text) => {
                        let _ = out.write_all(text.as_bytes());
                    }
                    Msg::Flush(ack) => {
                        let _ = out.flush();
                        let _ = ack.try_send(());
                    }
                }
            }
            let _ = out.flush();
        });
        Printer {
            tx,
            dropped: Arc::default(),
        }
    }

    /// Queues `text`, or drops and counts it when the queue is full: never waits.
    fn push(&self, text: String) {
        match self.tx.try_send(Msg::Text(text)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits until `deadline` for everything queued so far to be written out; says whether it was.
    fn flush(&self, deadline: std::time::Instant) -> bool {
        let (ack_tx, ack) = sync_channel(1);
        let tx = self.tx.clone();
        // The queue may be full and the stream stuck: queue the marker from a thread we can abandon.
        std::thread::spawn(move || {
            let _ = tx.send(Msg::Flush(ack_tx));
        });
        ack.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .is_ok()
    }
}

/// Where every line goes. Cheap to clone.
#[derive(Clone)]
pub struct Log {
    out: Printer,
    err: Printer,
    format: LogFormat,
}

/// Whose line it is.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub group: &'a str,
    pub id: Option<WorkerId>,
    pub pid: Option<u32>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}

impl Log {
    /// Starts the printer threads writing to stdout and stderr.
    pub fn start(format: LogFormat) -> Log {
        // Each thread holds its stream's lock for good: nothing else in the process writes there
        // behind its back (the standard library's exit-time flush only tries the lock).
        Log {
            out: Printer::start("drover-log", || std::io::stdout().lock(), QUEUE_LINES),
            err: Printer::start("drover-stderr", || std::io::stderr().lock(), ERROR_QUEUE_LINES),
            format,
        }
    }

    /// Waits up to `limit` for every line queued so far, on both streams, to be written out; says
    /// whether they were.
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let out = self.out.flush(deadline);
        self.err.flush(deadline) && out
    }

    /// Lines dropped here because a printer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.out.dropped.load(Ordering::Relaxed) + self.err.dropped.load(Ordering::Relaxed)
    }

    fn push(&self, mut line: String) {
        line.push('\n');
        self.out.push(line);
    }

    /// `drover: MESSAGE` on stderr, for errors a user must see whatever the log format.
    pub fn error(&self, message: &str) {
        self.err.push(format!("drover: {message}\n"));
    }

    /// Text on stderr as it is (a progress line redrawn in place with `\r`).
    pub fn stderr_raw(&self, text: String) {
        self.err.push(text);
    }

    /// One line a worker wrote.
    pub fn output(&self, group: &str, line: &OutputLine) {
        let text = match self.format {
            LogFormat::Plain => {
                let stream = match line.stream {
                    OutputStream::Stdout => "",
                    OutputStream::Stderr => " stderr",
                };
                let cut = if line.truncated { " [truncated]" } else { "" };
                format!("[{group} {} pid {}{stream}] {}{cut}", line.id, line.pid, line.line)
            }
            LogFormat::Json => json!({
                "time": now(),
                "group": group,
                "id": line.id,
                "pid": line.pid,
                "stream": line.stream.name(),
                "line": line.line,
                "truncated": line.truncated,
            })
            .to_string(),
        };
        self.push(text);
    }

    /// A line of drover's own about a group or a worker; `event` names it in JSON.
    pub fn event(&self, who: Who<'_>, event: &str, message: &str) {
        let text = match self.format {
            LogFormat::Plain => {
                let mut prefix = who.group.to_string();
                if let Some(id) = who.id {
                    prefix.push_str(&format!(" {id}"));
                }
                if let Some(pid) = who.pid {
                    prefix.push_str(&format!(" pid {pid}"));
                }
                format!("[{prefix}] drover: {message}")
            }
            LogFormat::Json => json!({
                "time": now(),
                "group": who.group,
                "id": who.id,
                "pid": who.pid,
                "event": event,
                "message": message,
            })
            .to_string(),
        };
        self.push(text);
    }

    /// A line of drover's own about itself.
    pub fn info(&self, event: &str, message: &str) {
        let text = match self.format {
            LogFormat::Plain => format!("drover: {message}"),
            LogFormat::Json => json!({ "time": now(), "event": event, "message": message }).to_string(),
        };
        self.push(text);
    }
}
