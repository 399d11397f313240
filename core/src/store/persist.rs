//! Persistence of the embedded store (PROTOCOL.md §5.6, "Persistence"): a snapshot plus an
//! append-only log of every write that changed something, in one directory the master locks.
//!
//! The directory holds:
//! - `LOCK`: `flock`ed by the master that uses the directory, for as long as it lives, so that two
//!   masters never write one log.
//! - `store.snapshot`: the whole tree and its deadlines, as one JSON document, with the
//!   *generation* of the log that follows it. Replaced only whole (written to
//!   `store.snapshot.tmp`, fsynced, renamed over, the directory fsynced).
//! - `store.log.G`: the writes made since snapshot generation `G`, one record a line:
//!   eight hex digits of the CRC-32 of the JSON, a space, the JSON, a newline.
//!
//! On open: the snapshot is loaded, its log replayed. A last record cut short (a crash in the
//! middle of a write) is cut off with a warning; a damaged record with records after it is
//! refused with a [`PersistError::Corrupt`] naming the file and the byte offset, since replaying
//! past it would make up a state that never was.
//!
//! Times to live are kept as wall-clock deadlines (milliseconds since the Unix epoch): a value
//! whose deadline passed while the master was down is gone when it comes back.
//!
//! ```
//! use drover::store::persist::{FsyncPolicy, PersistConfig, Persistence};
//! use drover::store::{Store, StoreLimits};
//! use serde_json::json;
//! use std::time::Instant;
//!
//! let dir = std::env::temp_dir().join(format!("drover-persist-doc-{}", std::process::id()));
//! let config = PersistConfig::new(&dir);
//! {
//!     let mut store = Store::new(StoreLimits::default());
//!     let mut log = Persistence::open(&config, &mut store)?;
//!     store.set("a.b", json!(1), None, Instant::now()).unwrap();
//!     log.record_set("a.b", &json!(1), None, &store)?;
//! } // the directory is unlocked with the `Persistence`
//! let mut again = Store::new(StoreLimits::default());
//! let _log = Persistence::open(&config, &mut again)?;
//! assert_eq!(again.get("a.b", Instant::now()), Some(json!(1)));
//! # drop(_log); std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), drover::store::persist::PersistError>(())
//! ```

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Store;

/// The log is compacted into a new snapshot once it holds this many bytes (and at least as many
/// as the tree itself), unless configured otherwise.
pub const DEFAULT_COMPACT_LOG_BYTES: u64 = 16 * 1024 * 1024;
/// The largest `compactLogBytes` accepted.
pub const MAX_COMPACT_LOG_BYTES: u64 = 1024 * 1024 * 1024;
/// The smallest `compactLogBytes` accepted.
pub const MIN_COMPACT_LOG_BYTES: u64 = 4096;

const SNAPSHOT: &str = "store.snapshot";
const SNAPSHOT_TMP: &str = "store.snapshot.tmp";
const LOG_PREFIX: &str = "store.log.";
const LOCK: &str = "LOCK";
/// What a snapshot says it is, so that another file put in its place is refused, not misread.
const FORMAT: &str = "drover-store/1";

/// When an acknowledged write reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsyncPolicy {
    /// `fdatasync` after each write, before it is acknowledged (default): an acknowledged write
    /// survives a crash of the machine. Each write costs one disk flush, and the store's
    /// operations wait behind it.
    #[default]
    Always,
    /// `fdatasync` once a second when something was written: a crash of the machine loses at
    /// most the last second; a crash (or `kill -9`) of the master alone loses nothing.
    Everysec,
    /// Never flushed by drover (the kernel writes back when it will): a crash of the master
    /// alone loses nothing, one of the machine an unbounded tail.
    Never,
}

/// Where and how the store is persisted ([`crate::MasterConfig::store`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistConfig {
    /// The directory (created if missing, locked while the master lives).
    pub dir: PathBuf,
    /// When writes reach the disk.
    pub fsync: FsyncPolicy,
    /// The log is compacted into a new snapshot once it passes this many bytes and the size of
    /// the tree; [`MIN_COMPACT_LOG_BYTES`]..=[`MAX_COMPACT_LOG_BYTES`], default
    /// [`DEFAULT_COMPACT_LOG_BYTES`].
    pub compact_log_bytes: u64,
}

impl PersistConfig {
    /// Persistence in `dir` with the defaults: `fsync` always, compaction at 16 MiB.
    pub fn new(dir: impl Into<PathBuf>) -> PersistConfig {
        PersistConfig {
            dir: dir.into(),
            fsync: FsyncPolicy::default(),
            compact_log_bytes: DEFAULT_COMPACT_LOG_BYTES,
        }
    }
}

/// Why the store's directory cannot be used, or a write could not be made durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersistError {
    /// Another master (in this process or another) holds the directory.
    #[error("{dir}: another master holds this store directory (its LOCK is taken)")]
    Locked {
        /// The directory.
        dir: String,
    },
    /// A file operation failed.
    #[error("{path}: {doing}: {message}")]
    Io {
        /// The file or directory.
        path: String,
        /// What was being done (`reading`, `fsync`...).
        doing: &'static str,
        /// The system's words.
        message: String,
    },
    /// A damaged file: a snapshot that does not parse, or a log record that fails its checksum
    /// with records after it.
    #[error("{file}: damaged at byte {offset}: {why}; move the file away to start without it")]
    Corrupt {
        /// The file.
        file: String,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        why: String,
    },
}

fn io<'p>(path: &'p Path, doing: &'static str) -> impl FnOnce(std::io::Error) -> PersistError + 'p {
    move |e| PersistError::Io {
        path: path.display().to_string(),
        doing,
        message: e.to_string(),
    }
}

/// One write, as the log keeps it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Record {
    Set {
        path: String,
        value: Value,
        /// Wall-clock deadline, ms since the Unix epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_ms: Option<u64>,
    },
    Delete {
        path: String,
    },
}

/// The snapshot file.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    format: String,
    /// The log that follows this snapshot is `store.log.GENERATION`.
    generation: u64,
    tree: Map<String, Value>,
    /// Deadlines by path, ms since the Unix epoch.
    expires_ms: BTreeMap<String, u64>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The wall-clock deadline of a store deadline on the monotonic clock.
fn wall_deadline(when: Instant, now: Instant) -> u64 {
    unix_ms(SystemTime::now() + when.saturating_duration_since(now))
}

/// How long until a wall-clock deadline (`None`: it passed).
fn time_left(expires_ms: u64) -> Option<Duration> {
    let left = expires_ms.saturating_sub(unix_ms(SystemTime::now()));
    (left > 0).then(|| Duration::from_millis(left))
}

/// The open persistence of one store: the locked directory and the log being appended to.
#[derive(Debug)]
pub struct Persistence {
    dir: PathBuf,
    /// Held for the life of this value: the directory is ours.
    _lock: Flock<File>,
    generation: u64,
    log: File,
    log_path: PathBuf,
    /// Bytes of whole records in the log.
    log_bytes: u64,
    fsync: FsyncPolicy,
    compact_log_bytes: u64,
    /// Written since the last flush (for [`FsyncPolicy::Everysec`]).
    dirty: bool,
}

impl Persistence {
    /// Locks `config.dir` (creating it), loads its snapshot and replays its log into `store`
    /// (which should be empty), and opens the log for appending.
    pub fn open(config: &PersistConfig, store: &mut Store) -> Result<Persistence, PersistError> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(io(&dir, "creating the directory"))?;
        let lock_path = dir.join(LOCK);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path, "opening"))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                PersistError::Locked {
                    dir: dir.display().to_string(),
                }
            } else {
                io(&lock_path, "flock")(std::io::Error::from(errno))
            }
        })?;
        let generation = load_snapshot(&dir, store)?;
        let log_path = dir.join(format!("{LOG_PREFIX}{generation}"));
        let log_bytes = replay_log(&log_path, store)?;
        remove_leftovers(&dir, generation);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(&log_path, "opening"))?;
        sync_dir(&dir)?;
        Ok(Persistence {
            dir,
            _lock: lock,
            generation,
            log,
            log_path,
            log_bytes,
            fsync: config.fsync,
            compact_log_bytes: config.compact_log_bytes,
            dirty: false,
        })
    }

    /// The policy in force.
    pub fn fsync_policy(&self) -> FsyncPolicy {
        self.fsync
    }

    /// Bytes of the current log.
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes
    }

    /// Logs that `value` was put at `path` (with its time to live, if any), made durable as the
    /// policy says; then compacts when the log is due. `store` is the state after the write.
    /// On an error the log is as before the call (a partial record is cut off).
    pub fn record_set(
        &mut self,
        path: &str,
        value: &Value,
        ttl: Option<Duration>,
        store: &Store,
    ) -> Result<(), PersistError> {
        let expires_ms = ttl.map(|t| unix_ms(SystemTime::now() + t));
        self.append(
            &Record::Set {
                path: path.to_string(),
                value: value.clone(),
                expires_ms,
            },
            store,
        )
    }

    /// Logs that the value at `path` was removed, as [`Persistence::record_set`].
    pub fn record_delete(&mut self, path: &str, store: &Store) -> Result<(), PersistError> {
        self.append(&Record::Delete { path: path.to_string() }, store)
    }

    /// Whether the log must be compacted before it takes another record.
    fn compaction_due(&self, store: &Store) -> bool {
        self.log_bytes >= self.compact_log_bytes.max(store.bytes() as u64)
    }

    fn append(&mut self, record: &Record, store: &Store) -> Result<(), PersistError> {
        // A log that could not be compacted is compacted before it grows: its bound holds.
        if self.compaction_due(store) {
            self.compact(store)?;
        }
        let json = serde_json::to_string(record).map_err(|e| PersistError::Io {
            path: self.log_path.display().to_string(),
            doing: "encoding a record",
            message: e.to_string(),
        })?;
        let line = format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()));
        let written = self.log.write_all(line.as_bytes()).and_then(|()| match self.fsync {
            FsyncPolicy::Always => self.log.sync_data(),
            _ => Ok(()),
        });
        if let Err(e) = written {
            // Cut off what part of the record went in, so the next one follows a whole record.
            if let Err(cut) = self.log.set_len(self.log_bytes) {
                tracing::error!(log = %self.log_path.display(), error = %cut, "a partial store log record could not be cut off");
            }
            return Err(io(&self.log_path, "appending a record")(e));
        }
        self.log_bytes += line.len() as u64;
        self.dirty = true;
        if self.compaction_due(store) {
            if let Err(e) = self.compact(store) {
                // The write is in the log; the next write tries again (and is refused if it fails).
                tracing::warn!(error = %e, "the store log could not be compacted");
            }
        }
        Ok(())
    }

    /// For [`FsyncPolicy::Everysec`]: a handle to the log to flush, if something was written since
    /// the last call. The flush is the caller's, outside whatever lock guards `self`.
    pub fn take_dirty(&mut self) -> Option<File> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        match self.log.try_clone() {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(log = %self.log_path.display(), error = %e, "the store log could not be flushed");
                None
            }
        }
    }

    /// Writes `store` as a new snapshot followed by an empty log, then drops the old log.
    pub fn compact(&mut self, store: &Store) -> Result<(), PersistError> {
        let next = self.generation + 1;
        let now = Instant::now();
        let snapshot = Snapshot {
            format: FORMAT.into(),
            generation: next,
            tree: store.tree().clone(),
            expires_ms: store
                .expiring()
                .map(|(path, when)| (path.to_string(), wall_deadline(when, now)))
                .collect(),
        };
        // The new log first: once the snapshot names it, it must exist.
        let log_path = self.dir.join(format!("{LOG_PREFIX}{next}"));
        let log = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&log_path)
            .map_err(io(&log_path, "creating"))?;
        let tmp = self.dir.join(SNAPSHOT_TMP);
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            serde_json::to_writer(std::io::BufWriter::new(&mut file), &snapshot)?;
            file.sync_all()
        };
        write().map_err(io(&tmp, "writing the snapshot"))?;
        let path = self.dir.join(SNAPSHOT);
        std::fs::rename(&tmp, &path).map_err(io(&path, "renaming the new snapshot"))?;
        sync_dir(&self.dir)?;
        let old = std::mem::replace(&mut self.log_path, log_path);
        self.log = OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .map_err(io(&self.log_path, "opening"))?;
        drop(log);
        self.generation = next;
        self.log_bytes = 0;
        self.dirty = false;
        if let Err(e) = std::fs::remove_file(&old) {
            tracing::warn!(log = %old.display(), error = %e, "an old store log could not be removed");
        }
        tracing::debug!(dir = %self.dir.display(), generation = next, "the store log was compacted");
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir, "fsync of the directory"))
}

/// Loads the snapshot (if any) into `store`; the generation of the log that follows it.
fn load_snapshot(dir: &Path, store: &mut Store) -> Result<u64, PersistError> {
    let path = dir.join(SNAPSHOT);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(&path, "reading")(e)),
    };
    let corrupt = |offset: u64, why: String| PersistError::Corrupt {
        file: path.display().to_string(),
        offset,
        why,
    };
    let snapshot: Snapshot = serde_json::from_slice(&bytes).map_err(|e| {
        let offset = offset_of(&bytes, e.line(), e.column());
        corrupt(offset, e.to_string())
    })?;
    if snapshot.format != FORMAT {
        return Err(corrupt(0, format!("format {:?}, expected {FORMAT:?}", snapshot.format)));
    }
    let now = Instant::now();
    for (key, value) in snapshot.tree {
        store
            .set(&key, value, None, now)
            .map_err(|e| corrupt(0, format!("it does not fit this store: {e}")))?;
    }
    for (p, expires_ms) in snapshot.expires_ms {
        match time_left(expires_ms) {
            None => {
                let _ = store.delete(&p, now);
            }
            Some(left) => {
                if let Some(value) = store.get(&p, now) {
                    store
                        .set(&p, value, Some(left), now)
                        .map_err(|e| corrupt(0, format!("it does not fit this store: {e}")))?;
                }
            }
        }
    }
    Ok(snapshot.generation)
}

/// The byte offset of serde_json's 1-based line and column.
fn offset_of(bytes: &[u8], line: usize, column: usize) -> u64 {
    let start: usize = bytes
        .split(|b| *b == b'\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    (start + column.saturating_sub(1)) as u64
}

/// Replays the log at `path` into `store`; the bytes of whole records it holds (a torn last
/// record is cut off the file).
fn replay_log(path: &Path, store: &mut Store) -> Result<u64, PersistError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes).map_err(io(path, "reading"))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(path, "opening")(e)),
    }
    let mut offset = 0usize;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let end = rest.iter().position(|b| *b == b'\n');
        let parsed = end
            .ok_or_else(|| "no end of line".to_string())
            .and_then(|end| parse_record(&rest[..end]));
        match parsed {
            Ok(record) => {
                apply(record, store, path, offset);
                offset += end.map_or(rest.len(), |e| e + 1);
            }
            Err(why) => {
                let is_last = end.is_none_or(|e| offset + e + 1 >= bytes.len());
                if !is_last {
                    return Err(PersistError::Corrupt {
                        file: path.display().to_string(),
                        offset: offset as u64,
                        why,
                    });
                }
                tracing::warn!(
                    log = %path.display(),
                    offset,
                    cut = bytes.len() - offset,
                    why,
                    "the store log's last record was cut short (a crash while writing it); it is cut off"
                );
                let file = OpenOptions::new().write(true).open(path).map_err(io(path, "opening"))?;
                file.set_len(offset as u64)
                    .map_err(io(path, "cutting off a torn record"))?;
                file.sync_all().map_err(io(path, "fsync"))?;
                break;
            }
        }
    }
    Ok(offset as u64)
}

fn parse_record(line: &[u8]) -> Result<Record, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
    let (crc, json) = text
        .split_once(' ')
        .ok_or_else(|| "no checksum before the record".to_string())?;
    let crc = u32::from_str_radix(crc, 16).map_err(|_| format!("{crc:?} is not a checksum"))?;
    let actual = crc32fast::hash(json.as_bytes());
    if crc != actual {
        return Err(format!("checksum {crc:08x}, the record's is {actual:08x}"));
    }
    serde_json::from_str(json).map_err(|e| format!("not a store record: {e}"))
}

/// Applies one logged write. One the store refuses now (it cannot be, the same writes having
/// been accepted in the same order) is skipped with a warning rather than losing the rest.
fn apply(record: Record, store: &mut Store, path: &Path, offset: usize) {
    let now = Instant::now();
    let outcome = match record {
        Record::Set {
            path: p,
            value,
            expires_ms,
        } => match expires_ms.map(time_left) {
            // Put there and since expired: gone, as it would be had the master run on.
            Some(None) => store.delete(&p, now).map(drop),
            Some(Some(left)) => store.set(&p, value, Some(left), now),
            None => store.set(&p, value, None, now),
        },
        Record::Delete { path: p } => store.delete(&p, now).map(drop),
    };
    if let Err(e) = outcome {
        tracing::warn!(log = %path.display(), offset, error = %e, "a logged store write could not be replayed");
    }
}

/// Removes what an interrupted compaction left: a temporary snapshot, logs of other generations.
fn remove_leftovers(dir: &Path, generation: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = name == SNAPSHOT_TMP
            || name
                .strip_prefix(LOG_PREFIX)
                .and_then(|g| g.parse::<u64>().ok())
                .is_some_and(|g| g != generation);
        if stale {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(file = %entry.path().display(), error = %e, "a leftover store file could not be removed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreLimits;
    use serde_json::json;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("drover-persist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn open(config: &PersistConfig) -> Result<(Store, Persistence), PersistError> {
        let mut store = Store::new(StoreLimits::default());
        let p = Persistence::open(config, &mut store)?;
        Ok((store, p))
    }

    #[test]
    fn writes_survive_reopening_and_deadlines_stay_absolute() {
        let dir = temp("reopen");
        let config = PersistConfig::new(&dir);
        {
            let (mut s, mut p) = open(&config).unwrap();
            let now = Instant::now();
            s.set("a.b", json!(1), None, now).unwrap();
            p.record_set("a.b", &json!(1), None, &s).unwrap();
            s.set("gone", json!(2), Some(Duration::from_millis(1)), now).unwrap();
            p.record_set("gone", &json!(2), Some(Duration::from_millis(1)), &s)
                .unwrap();
            s.set("later", json!(3), Some(Duration::from_secs(600)), now).unwrap();
            p.record_set("later", &json!(3), Some(Duration::from_secs(600)), &s)
                .unwrap();
            s.delete("a.b", now).unwrap();
            p.record_delete("a.b", &s).unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
        let (mut s, _p) = open(&config).unwrap();
        let now = Instant::now();
        assert_eq!(s.get("", now), Some(json!({"a": {}, "later": 3})));
        let (_, when) = s.expiring().next().expect("`later` still expires");
        assert!(when > now + Duration::from_secs(590));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compaction_writes_a_snapshot_and_starts_a_new_log() {
        let dir = temp("compact");
        let config = PersistConfig {
            compact_log_bytes: MIN_COMPACT_LOG_BYTES,
            ..PersistConfig::new(&dir)
        };
        {
            let (mut s, mut p) = open(&config).unwrap();
            for i in 0..500 {
                let now = Instant::now();
                let path = format!("k.{}", i % 50);
                s.set(&path, json!(i), Some(Duration::from_secs(600)), now).unwrap();
                p.record_set(&path, &json!(i), Some(Duration::from_secs(600)), &s)
                    .unwrap();
                assert!(p.log_bytes() <= MIN_COMPACT_LOG_BYTES + 200, "the log passed its bound");
            }
            assert!(p.generation > 1, "compacted");
        }
        let logs = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(LOG_PREFIX)
            })
            .count();
        assert_eq!(logs, 1, "old logs are removed");
        let (mut s, _p) = open(&config).unwrap();
        let now = Instant::now();
        assert_eq!(s.get("k.49", now), Some(json!(499)));
        assert_eq!(s.keys("k", now).len(), 50);
        assert_eq!(s.expiring().count(), 50, "deadlines are kept through the snapshot");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_opener_of_a_directory_is_refused() {
        let dir = temp("lock");
        let config = PersistConfig::new(&dir);
        let held = open(&config).unwrap();
        assert_eq!(
            open(&config).unwrap_err(),
            PersistError::Locked {
                dir: dir.display().to_string()
            }
        );
        drop(held);
        open(&config).expect("free again once the first is gone");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_a_damaged_middle_one_refused() {
        let dir = temp("torn");
        let config = PersistConfig::new(&dir);
        {
            let (mut s, mut p) = open(&config).unwrap();
            for i in 0..3 {
                let path = format!("k{i}");
                s.set(&path, json!(i), None, Instant::now()).unwrap();
                p.record_set(&path, &json!(i), None, &s).unwrap();
            }
        }
        let log = dir.join(format!("{LOG_PREFIX}0"));
        let whole = std::fs::read(&log).unwrap();
        // A crash halfway through a fourth record.
        let mut torn = whole.clone();
        torn.extend_from_slice(b"1234abcd {\"op\":\"set\",\"pa");
        std::fs::write(&log, &torn).unwrap();
        let (mut s, _p) = open(&config).unwrap();
        assert_eq!(s.keys("", Instant::now()), ["k0", "k1", "k2"]);
        drop(_p);
        assert_eq!(
            std::fs::read(&log).unwrap(),
            whole,
            "the torn record is cut off the file"
        );
        // A flipped byte in the second record, with a third after it.
        let mut damaged = whole.clone();
        let second = whole.iter().position(|b| *b == b'\n').unwrap() + 1;
        damaged[second + 20] ^= 0x01;
        std::fs::write(&log, &damaged).unwrap();
        match open(&config).unwrap_err() {
            PersistError::Corrupt { file, offset, .. } => {
                assert_eq!(file, log.display().to_string());
                assert_eq!(offset, second as u64);
            }
            other => panic!("{other}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
