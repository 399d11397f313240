//! The log: workers' output lines and drover's own lines (lifecycle events, progress), printed to
//! stdout, and drover's errors, printed to stderr. Each stream has its own thread behind its own
//! bounded queue ([`Printer`]); so has the optional log file ([`crate::log_file`]). Every stdout
//! line is also kept in the recent-log ring that `drover logs` reads ([`crate::log_ring`]).
//!
//! Nothing that produces a line ever waits for a terminal or a pipe: a full queue drops the line and
//! counts it. A paused terminal (Ctrl-S) or a pipe nobody reads blocks only a printer thread, never
//! the runtime that supervises, answers the control socket and stops the workers; at exit drover
//! waits a bounded time for the printers, then leaves without them. With core's own bounded output
//! channel that makes two places where a slow reader loses lines; both counts are added up, reported
//! in the log when they grow (so the output says so once it flows again), and exported as a metric.
//!
//! How a line looks:
//! - plain: `2026-01-02T03:04:05.678Z [web 1 pid 4121] a line` (the timestamp unless
//!   `--timestamps never`, or stdout is the journal, which stamps lines itself);
//! - JSON: one object per line with `time`, `level` (`info`, `warn`, `error`), `group`, `id`, `pid`,
//!   and `exit` (`code`, `signal`, `kind`, `name`, `requested`) on exit lines;
//! - under systemd with stdout on the journal (`$JOURNAL_STREAM` names stdout), every line starts
//!   with its syslog priority, `<3>` for errors (a worker's stderr), `<4>` warnings, `<6>` the rest,
//!   which journald strips and records as the line's priority (sd-daemon(3)).
//!
//! A progress line redrawn in place (on a terminal) is erased before any other line is written to
//! the same terminal, and drawn again below it.

use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use drover::{OutputLine, OutputStream, WorkerExit, WorkerId};

use crate::log_file::{FileError, FileOptions, RotatingFile};
use crate::log_ring::Ring;

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

/// Whether plain lines start with the time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Timestamps {
    /// Yes, unless stdout is the journal (which stamps each line itself).
    #[default]
    Auto,
    Always,
    Never,
}

/// How serious a line is: JSON's `level`, the journal's priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    /// The syslog priority (sd-daemon(3)): err 3, warning 4, info 6.
    fn priority(self) -> u8 {
        match self {
            Level::Info => 6,
            Level::Warn => 4,
            Level::Error => 3,
        }
    }

    /// The level of one of drover's own lines, by its event name.
    pub fn of_event(event: &str) -> Level {
        match event {
            "failed" | "gave-up" | "start-failed" | "protocol-error" | "error" => Level::Error,
            "reload-failed" | "restarting" | "recycling" | "dropped" | "log-dropped" | "control-refused" => Level::Warn,
            _ => Level::Info,
        }
    }
}

/// Everything about how the log is written, from `drover run`'s flags.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub format: LogFormat,
    pub timestamps: Timestamps,
    pub file: Option<FileOptions>,
}

/// Lines that may wait for the stdout printer thread.
const QUEUE_LINES: usize = 8192;

/// Messages that may wait for the stderr printer thread (errors, progress redraws: few).
const ERROR_QUEUE_LINES: usize = 256;

/// Lines that may wait for the log file's printer thread.
const FILE_QUEUE_LINES: usize = 8192;

/// Erases the terminal line the cursor is on (carriage return, erase to end of line).
const ERASE_LINE: &str = "\r\x1b[K";

/// One output stream behind a bounded queue, written by a thread of its own that alone may block.
#[derive(Clone)]
struct Printer {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

enum Msg {
    /// Bytes to write as they are (a line carries its own newline).
    Text(String),
    /// A progress line to draw in place of the previous one (no newline), or, with a newline, its
    /// last state, written for good.
    Progress(String),
    /// The operation ended without a last state (it failed): take the progress line away.
    ProgressEnd,
    /// Everything before it is written and flushed: say so.
    Flush(SyncSender<()>),
}

/// What the printer thread knows of the progress line on its terminal.
#[derive(Default)]
struct ProgressLine {
    /// The line being redrawn, if an operation is under way.
    text: Option<String>,
    /// Whether it is on the screen now (under the cursor).
    shown: bool,
}

impl ProgressLine {
    /// Takes the progress line off the screen before `out` gets another line.
    fn erase(&mut self, out: &mut impl Write) {
        if self.shown {
            let _ = out.write_all(ERASE_LINE.as_bytes());
            self.shown = false;
        }
    }

    /// Puts it back, below what was just written.
    fn redraw(&mut self, out: &mut impl Write) {
        // The cursor is at the start of a line: after a newline, or where the line was erased.
        if let (Some(text), false) = (&self.text, self.shown) {
            let _ = out.write_all(text.as_bytes());
            self.shown = true;
        }
    }
}

impl Printer {
    /// `open` runs on the new thread (a stream's lock may not move between threads).
    fn start<W: Write>(name: &str, open: impl FnOnce() -> W + Send + 'static, capacity: usize) -> Printer {
        let (tx, rx) = sync_channel::<Msg>(capacity);
        // If the thread cannot be created, `rx` is dropped with the closure: every line is then
        // refused at once and counted as dropped, as with a stuck terminal. Nothing blocks.
        let _ = std::thread::Builder::new().name(name.into()).spawn(move || {
            let mut out = std::io::BufWriter::new(open());
            let mut progress = ProgressLine::default();
            loop {
                let msg = match rx.try_recv() {
                    Ok(msg) => msg,
                    Err(_) => {
                        // The queue is empty: what was written is on the screen, the progress line
                        // goes back under it.
                        progress.redraw(&mut out);
                        let _ = out.flush();
                        match rx.recv() {
                            Ok(msg) => msg,
                            Err(_) => break,
                        }
                    }
                };
                match msg {
                    Msg::Text(text) => {
                        progress.erase(&mut out);
                        let _ = out.write_all(text.as_bytes());
                    }
                    Msg::Progress(text) => {
                        progress.erase(&mut out);
                        if text.ends_with('\n') {
                            let _ = out.write_all(text.as_bytes());
                            progress.text = None;
                        } else {
                            progress.text = Some(text);
                        }
                    }
                    Msg::ProgressEnd => {
                        progress.erase(&mut out);
                        progress.text = None;
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

    /// Queues `msg`, or drops and counts it when the queue is full: never waits.
    fn send(&self, msg: Msg) {
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn push(&self, text: String) {
        self.send(Msg::Text(text));
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
    file: Option<Printer>,
    /// Where a progress line is redrawn: the printer of a terminal, stdout's first.
    progress: Option<Printer>,
    /// stdout and stderr are the same terminal: errors go through stdout's printer, which erases
    /// the progress line first (two printers could not agree on who erases it).
    errors_via_stdout: bool,
    ring: Ring,
    format: LogFormat,
    timestamps: bool,
    /// stdout is the journal: lines start with their priority.
    journal: bool,
    /// stderr is the journal: errors start with `<3>`.
    journal_errors: bool,
}

/// Whose line it is.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub group: &'a str,
    pub id: Option<WorkerId>,
    pub pid: Option<u32>,
}

impl Who<'_> {
    /// `web 1 pid 4121`, as plain lines show it.
    fn plain(&self) -> String {
        let mut prefix = self.group.to_string();
        if let Some(id) = self.id {
            prefix.push_str(&format!(" {id}"));
        }
        if let Some(pid) = self.pid {
            prefix.push_str(&format!(" pid {pid}"));
        }
        prefix
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}

/// Whether `$JOURNAL_STREAM` (`DEVICE:INODE`, set by systemd) names the stream `fd`: then the
/// journal reads it (systemd.exec(5)); a stream redirected elsewhere keeps the variable but is no
/// longer the journal.
fn is_journal(fd: std::os::fd::RawFd) -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(fd) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(stat.st_dev) && ino.parse::<u64>().ok() == Some(stat.st_ino)
}

/// Whether stdout and stderr are one terminal (the same device).
fn same_terminal() -> bool {
    use std::io::IsTerminal;
    use std::os::fd::AsRawFd;
    if !(std::io::stdout().is_terminal() && std::io::stderr().is_terminal()) {
        return false;
    }
    let device = |fd| nix::sys::stat::fstat(fd).ok().map(|s| s.st_rdev);
    let (out, err) = (
        device(std::io::stdout().as_raw_fd()),
        device(std::io::stderr().as_raw_fd()),
    );
    out.is_some() && out == err
}

impl Log {
    /// Starts the printer threads writing to stdout and stderr (and the log file).
    pub fn start(options: &LogOptions) -> Result<Log, FileError> {
        use std::io::IsTerminal;
        let file = match &options.file {
            Some(file_options) => {
                let file = RotatingFile::open(file_options.clone())?;
                Some(Printer::start("drover-logfile", move || file, FILE_QUEUE_LINES))
            }
            None => None,
        };
        use std::os::fd::AsRawFd;
        let journal = is_journal(std::io::stdout().as_raw_fd());
        let journal_errors = is_journal(std::io::stderr().as_raw_fd());
        // Each thread holds its stream's lock for good: nothing else in the process writes there
        // behind its back (the standard library's exit-time flush only tries the lock).
        let out = Printer::start("drover-log", || std::io::stdout().lock(), QUEUE_LINES);
        let err = Printer::start("drover-stderr", || std::io::stderr().lock(), ERROR_QUEUE_LINES);
        let errors_via_stdout = same_terminal();
        let progress = if std::io::stdout().is_terminal() {
            Some(out.clone())
        } else if std::io::stderr().is_terminal() {
            Some(err.clone())
        } else {
            None
        };
        Ok(Log {
            out,
            err,
            file,
            progress,
            errors_via_stdout,
            ring: Ring::default(),
            format: options.format,
            timestamps: match options.timestamps {
                Timestamps::Always => true,
                Timestamps::Never => false,
                Timestamps::Auto => !journal,
            },
            journal,
            journal_errors,
        })
    }

    /// The recent lines, for `drover logs`.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Waits up to `limit` for every line queued so far, on every stream, to be written out; says
    /// whether they were.
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let out = self.out.flush(deadline);
        let file = self.file.as_ref().is_none_or(|f| f.flush(deadline));
        self.err.flush(deadline) && out && file
    }

    /// Lines dropped here because a printer could not keep up.
    pub fn dropped(&self) -> u64 {
        let file = self.file.as_ref().map_or(0, |f| f.dropped.load(Ordering::Relaxed));
        self.out.dropped.load(Ordering::Relaxed) + self.err.dropped.load(Ordering::Relaxed) + file
    }

    /// Whether a progress line can be redrawn in place (a terminal shows the log).
    pub fn has_terminal(&self) -> bool {
        self.progress.is_some()
    }

    /// `text` as a plain line: with the time, if timestamps are on.
    fn stamped(&self, text: String) -> String {
        if self.timestamps && self.format == LogFormat::Plain {
            format!("{} {text}", humantime::format_rfc3339_millis(SystemTime::now()))
        } else {
            text
        }
    }

    /// One line to stdout, the ring and the file.
    fn push(&self, group: Option<&str>, level: Level, line: String) {
        let line = self.stamped(line);
        self.ring.push(group, &line);
        if let Some(file) = &self.file {
            file.push(format!("{line}\n"));
        }
        let text = if self.journal {
            format!("<{}>{line}\n", level.priority())
        } else {
            format!("{line}\n")
        };
        self.out.push(text);
    }

    /// `drover: MESSAGE` on stderr, for errors a user must see whatever the log format.
    pub fn error(&self, message: &str) {
        let line = self.stamped(format!("drover: {message}"));
        if let Some(file) = &self.file {
            file.push(format!("{line}\n"));
        }
        let prefix = if self.journal_errors { "<3>" } else { "" };
        let printer = if self.errors_via_stdout { &self.out } else { &self.err };
        printer.push(format!("{prefix}{line}\n"));
    }

    /// A progress line, redrawn in place on a terminal (`done`: its last state, kept).
    pub fn progress(&self, text: String, done: bool) {
        if let Some(printer) = &self.progress {
            let end = if done { "\n" } else { "" };
            printer.send(Msg::Progress(format!("{text}{end}")));
        }
    }

    /// The operation whose progress was shown ended (failed, or was cut short): no more redraws.
    pub fn progress_end(&self) {
        if let Some(printer) = &self.progress {
            printer.send(Msg::ProgressEnd);
        }
    }

    /// One line a worker wrote. stderr lines are errors (journal priority 3).
    pub fn output(&self, group: &str, line: &OutputLine) {
        let level = match line.stream {
            OutputStream::Stdout => Level::Info,
            OutputStream::Stderr => Level::Error,
        };
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
                "level": level.name(),
                "group": group,
                "id": line.id,
                "pid": line.pid,
                "stream": line.stream.name(),
                "line": line.line,
                "truncated": line.truncated,
            })
            .to_string(),
        };
        self.push(Some(group), level, text);
    }

    /// A line of drover's own about a group or a worker; `event` names it in JSON and sets its
    /// level ([`Level::of_event`]).
    pub fn event(&self, who: Who<'_>, event: &str, message: &str) {
        self.event_at(who, event, Level::of_event(event), message, None);
    }

    /// A worker's exit: an error when nobody asked for it and it failed, a warning when nobody asked
    /// for it, else info; JSON lines carry the exit's fields in `exit`.
    pub fn exit(&self, who: Who<'_>, exit: &WorkerExit, message: &str) {
        let level = match (exit.requested, exit.reason.code()) {
            (true, _) => Level::Info,
            (false, Some(0)) => Level::Warn,
            (false, _) => Level::Error,
        };
        let mut fields = exit.reason.to_json();
        fields["requested"] = exit.requested.into();
        fields["last_status"] = exit.last_status.name().into();
        self.event_at(who, "exited", level, message, Some(fields));
    }

    fn event_at(&self, who: Who<'_>, event: &str, level: Level, message: &str, exit: Option<serde_json::Value>) {
        let text = match self.format {
            LogFormat::Plain => format!("[{}] drover: {message}", who.plain()),
            LogFormat::Json => {
                let mut line = json!({
                    "time": now(),
                    "level": level.name(),
                    "group": who.group,
                    "id": who.id,
                    "pid": who.pid,
                    "event": event,
                    "message": message,
                });
                if let Some(exit) = exit {
                    line["exit"] = exit;
                }
                line.to_string()
            }
        };
        self.push(Some(who.group), level, text);
    }

    /// A line of drover's own about itself.
    pub fn info(&self, event: &str, message: &str) {
        let level = Level::of_event(event);
        let text = match self.format {
            LogFormat::Plain => format!("drover: {message}"),
            LogFormat::Json => {
                json!({ "time": now(), "level": level.name(), "event": event, "message": message }).to_string()
            }
        };
        self.push(None, level, text);
    }
}
