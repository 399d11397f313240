//! Workers' stdout and stderr, captured line by line (opt-in: [`MasterConfig::capture_output`]).
//!
//! When capture is on, each worker's stdout and stderr are pipes; one reader task per pipe splits
//! what arrives into lines and hands each to every subscriber of [`Master::output`] through a
//! *bounded* channel. A subscriber that does not keep up loses lines, never the master its pace:
//! a full channel drops the line and counts it ([`OutputLines::dropped`]). A line longer than
//! [`MAX_LINE_BYTES`] is cut there, marked [`OutputLine::truncated`], and the rest of it skipped.
//!
//! [`MasterConfig::capture_output`]: crate::MasterConfig::capture_output

use serde::Serialize;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::Master;
use crate::WorkerId;

/// The longest line delivered whole; a longer one is cut and marked truncated.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Lines a subscriber may have waiting before further lines are dropped.
pub const OUTPUT_BUFFER_LINES: usize = 4096;

/// Which of a worker's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl OutputStream {
    /// `"stdout"` or `"stderr"`.
    pub fn name(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

/// One line a worker wrote, without its newline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputLine {
    /// The worker.
    pub id: WorkerId,
    /// Its process.
    pub pid: u32,
    /// Which stream.
    pub stream: OutputStream,
    /// The line (invalid UTF-8 replaced by U+FFFD).
    pub line: String,
    /// The line was longer than [`MAX_LINE_BYTES`] and was cut.
    pub truncated: bool,
}

struct Subscriber {
    tx: mpsc::Sender<OutputLine>,
    dropped: Arc<AtomicU64>,
}

/// The fan-out point of a master's captured output.
#[derive(Clone, Default)]
pub(crate) struct OutputHub {
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
}

impl std::fmt::Debug for OutputHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutputHub")
    }
}

impl OutputHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn subscribe(&self) -> OutputLines {
        let (tx, rx) = mpsc::channel(OUTPUT_BUFFER_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        self.lock().push(Subscriber {
            tx,
            dropped: dropped.clone(),
        });
        OutputLines { rx, dropped }
    }

    /// Never waits: a full subscriber loses the line and counts it.
    fn emit(&self, line: OutputLine) {
        let mut subs = self.lock();
        subs.retain(|s| !s.tx.is_closed());
        for s in subs.iter() {
            if s.tx.try_send(line.clone()).is_err() {
                s.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Starts one reader task per captured stream of worker `id` (process `pid`).
    pub(crate) fn read_worker(&self, id: WorkerId, pid: u32, stdout: OwnedFd, stderr: OwnedFd) {
        for (fd, stream) in [(stdout, OutputStream::Stdout), (stderr, OutputStream::Stderr)] {
            match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
                Ok(pipe) => {
                    tokio::spawn(read_lines(self.clone(), pipe, id, pid, stream));
                }
                Err(error) => tracing::warn!(id, pid, %error, stream = stream.name(), "cannot read worker output"),
            }
        }
    }
}

/// Reads a pipe to its end, emitting each line.
async fn read_lines(
    hub: OutputHub,
    mut pipe: tokio::net::unix::pipe::Receiver,
    id: WorkerId,
    pid: u32,
    stream: OutputStream,
) {
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; 8192];
    let mut emit = |line, truncated| {
        hub.emit(OutputLine {
            id,
            pid,
            stream,
            line,
            truncated,
        })
    };
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => splitter.push(&buf[..n], &mut emit),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => {
                tracing::debug!(id, pid, %error, "reading worker output failed");
                break;
            }
        }
    }
    splitter.finish(emit);
}

/// Splits bytes into lines of at most [`MAX_LINE_BYTES`].
#[derive(Default)]
struct LineSplitter {
    pending: Vec<u8>,
    /// The current line was already delivered cut; skip to its end.
    skipping: bool,
}

impl LineSplitter {
    fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(String, bool)) {
        let mut segments = bytes.split(|b| *b == b'\n').peekable();
        while let Some(segment) = segments.next() {
            let ends_line = segments.peek().is_some();
            if !self.skipping {
                let room = MAX_LINE_BYTES - self.pending.len();
                if segment.len() > room {
                    self.pending.extend_from_slice(&segment[..room]);
                    emit(String::from_utf8_lossy(&self.pending).into_owned(), true);
                    self.pending.clear();
                    self.skipping = !ends_line;
                } else {
                    self.pending.extend_from_slice(segment);
                    if ends_line {
                        emit(String::from_utf8_lossy(&self.pending).into_owned(), false);
                        self.pending.clear();
                    }
                }
            } else if ends_line {
                self.skipping = false;
            }
        }
    }

    fn finish(&mut self, mut emit: impl FnMut(String, bool)) {
        if !self.skipping && !self.pending.is_empty() {
            emit(String::from_utf8_lossy(&self.pending).into_owned(), false);
        }
        self.pending.clear();
    }
}

impl Master {
    /// Subscribes to the workers' captured stdout and stderr lines from now on (only produced
    /// when the config's `capture_output` is on). The channel is bounded: when the subscriber lags
    /// behind, lines are dropped and counted, and the master never waits.
    pub fn output(&self) -> OutputLines {
        self.inner.events.output.subscribe()
    }
}

/// A subscription to the workers' output, from [`Master::output`].
#[derive(Debug)]
pub struct OutputLines {
    rx: mpsc::Receiver<OutputLine>,
    dropped: Arc<AtomicU64>,
}

impl OutputLines {
    /// The next line; `None` once the master is gone and every line was read.
    pub async fn recv(&mut self) -> Option<OutputLine> {
        self.rx.recv().await
    }

    /// The next line if one is waiting.
    pub fn try_recv(&mut self) -> Option<OutputLine> {
        self.rx.try_recv().ok()
    }

    /// How many lines this subscriber lost because it was not reading fast enough.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let mut s = LineSplitter::default();
        for c in chunks {
            s.push(c, |l, t| out.push((l, t)));
        }
        s.finish(|l, t| out.push((l, t)));
        out
    }

    #[test]
    fn lines_are_split_across_reads_and_long_ones_cut_once() {
        assert_eq!(
            split(&[b"a\nb", b"c\n\nd"]),
            vec![
                ("a".into(), false),
                ("bc".into(), false),
                ("".into(), false),
                ("d".into(), false)
            ]
        );
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let got = split(&[&long, &long, b"\nnext\n"]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.len(), MAX_LINE_BYTES);
        assert!(got[0].1);
        assert_eq!(got[1], ("next".into(), false));
    }
}
