//! The log: workers' output lines and drover's own lines (lifecycle events, progress), printed to
//! stdout by one thread behind a bounded queue.
//!
//! Nothing that produces a line ever waits for the terminal: a full queue drops the line and counts
//! it. With core's own bounded output channel that makes two places where a slow reader loses
//! lines; both counts are added up, reported in the log when they grow, and exported as a metric.

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

/// Lines that may wait for the printer thread.
const QUEUE_LINES: usize = 8192;

/// Where every line goes. Cheap to clone.
#[derive(Clone)]
pub struct Log {
    tx: SyncSender<Msg>,
    format: LogFormat,
    dropped: Arc<AtomicU64>,
}

enum Msg {
    Line(String),
    /// Everything before it is written and flushed: say so.
    Flush(SyncSender<()>),
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
    /// Starts the printer thread writing to stdout.
    pub fn start(format: LogFormat) -> Log {
        let (tx, rx) = sync_channel::<Msg>(QUEUE_LINES);
        std::thread::Builder::new()
            .name("drover-log".into())
            .spawn(move || {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
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
                        Msg::Line(line) => {
                            let _ = out.write_all(line.as_bytes());
                            let _ = out.write_all(b"\n");
                        }
                        Msg::Flush(ack) => {
                            let _ = out.flush();
                            let _ = ack.try_send(());
                        }
                    }
                }
                let _ = out.flush();
            })
            .expect("a thread for the log can be created at start");
        Log {
            tx,
            format,
            dropped: Arc::default(),
        }
    }

    /// Waits up to `limit` for every line queued so far to be written out.
    pub fn flush(&self, limit: Duration) {
        let (ack_tx, ack) = sync_channel(1);
        let tx = self.tx.clone();
        // The queue may be full and stdout stuck: queue the marker from a thread we can abandon.
        std::thread::spawn(move || {
            let _ = tx.send(Msg::Flush(ack_tx));
        });
        let _ = ack.recv_timeout(limit);
    }

    /// Lines dropped here because the printer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn push(&self, line: String) {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
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
