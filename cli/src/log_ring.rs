//! The recent log, kept in the master for `drover logs`: a ring of the last [`RING_LINES`] lines
//! (and at most [`RING_BYTES`] of them), and a bounded feed of new lines for `drover logs -f`.
//!
//! Both are bounded whatever the workers write: the ring forgets its oldest lines, and a follower
//! that reads slower than lines come is skipped ahead ([`FOLLOW_QUEUE_LINES`] behind at most) and
//! told how many lines it missed. Neither ever makes the master wait.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Lines the ring keeps.
pub const RING_LINES: usize = 10_000;

/// Bytes of text the ring keeps (worker lines are cut by core at 16 KiB each). With the entries'
/// own cost, a full ring holds about 3 MB of the master's memory.
pub const RING_BYTES: usize = 2 * 1024 * 1024;

/// Lines a `drover logs -f` may fall behind before it is skipped ahead.
pub const FOLLOW_QUEUE_LINES: usize = 1024;

/// `drover logs -f` connections at once (each holds a control connection).
pub const MAX_FOLLOWERS: usize = 16;

/// One line of the log, as printed (without a journald priority prefix).
#[derive(Debug)]
pub struct Entry {
    /// The group it is about; `None` for drover's own lines. Shared by every line of the group.
    pub group: Option<Arc<str>>,
    pub text: Box<str>,
}

/// The ring and the feed. Cheap to clone.
#[derive(Clone)]
pub struct Ring {
    inner: Arc<Mutex<Lines>>,
    feed: broadcast::Sender<Arc<Entry>>,
    followers: Arc<tokio::sync::Semaphore>,
}

#[derive(Default)]
struct Lines {
    lines: VecDeque<Arc<Entry>>,
    bytes: usize,
    /// Each group's name, once (a config has at most 1000 groups).
    names: Vec<Arc<str>>,
}

impl Default for Ring {
    fn default() -> Ring {
        Ring {
            inner: Arc::default(),
            feed: broadcast::channel(FOLLOW_QUEUE_LINES).0,
            followers: Arc::new(tokio::sync::Semaphore::new(MAX_FOLLOWERS)),
        }
    }
}

impl Ring {
    /// Keeps `text`, forgetting the oldest lines past the bounds, and hands it to every follower.
    pub fn push(&self, group: Option<&str>, text: &str) {
        let entry = {
            let mut ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let group = group.map(|name| match ring.names.iter().find(|n| &***n == name) {
                Some(shared) => shared.clone(),
                None => {
                    let shared: Arc<str> = name.into();
                    ring.names.push(shared.clone());
                    shared
                }
            });
            let entry = Arc::new(Entry {
                group,
                text: text.into(),
            });
            ring.bytes += entry.text.len();
            ring.lines.push_back(entry.clone());
            while ring.lines.len() > RING_LINES || (ring.bytes > RING_BYTES && ring.lines.len() > 1) {
                if let Some(old) = ring.lines.pop_front() {
                    ring.bytes -= old.text.len();
                }
            }
            entry
        };
        // No follower is not an error.
        let _ = self.feed.send(entry);
    }

    /// The last `lines` lines (of `group`, or all), oldest first.
    pub fn tail(&self, group: Option<&str>, lines: usize) -> Vec<String> {
        let ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut tail: Vec<String> = ring
            .lines
            .iter()
            .rev()
            .filter(|e| matches(e, group))
            .take(lines)
            .map(|e| e.text.to_string())
            .collect();
        tail.reverse();
        tail
    }

    /// A follower's feed of new lines, or `None` when [`MAX_FOLLOWERS`] already follow.
    pub fn follow(&self) -> Option<(broadcast::Receiver<Arc<Entry>>, tokio::sync::OwnedSemaphorePermit)> {
        let permit = self.followers.clone().try_acquire_owned().ok()?;
        Some((self.feed.subscribe(), permit))
    }
}

/// Whether `entry` is shown for a `drover logs GROUP` (every line without a group filter).
pub fn matches(entry: &Entry, group: Option<&str>) -> bool {
    group.is_none() || entry.group.as_deref() == group
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_lines_within_both_bounds() {
        let ring = Ring::default();
        for i in 0..RING_LINES + 5 {
            ring.push(Some(if i % 2 == 0 { "a" } else { "b" }), &i.to_string());
        }
        let all = ring.tail(None, usize::MAX);
        assert_eq!(all.len(), RING_LINES);
        assert_eq!(all[0], "5");
        assert_eq!(
            ring.tail(Some("b"), 2),
            [(RING_LINES + 1).to_string(), (RING_LINES + 3).to_string()]
        );
        let big = "x".repeat(RING_BYTES / 3);
        for _ in 0..4 {
            ring.push(None, &big);
        }
        assert_eq!(ring.tail(None, usize::MAX).len(), 3, "bytes bound");
    }
}
