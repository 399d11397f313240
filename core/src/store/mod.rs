//! Shared storage held by the master (clusterfy's storage, cluster2's TTL namespaces): one JSON
//! tree addressed by dot paths (`"users.42.name"`), values with an optional time to live, and
//! compare-and-set. Workers reach it with requests to the master's built-in `drover.store.*`
//! handlers (PROTOCOL.md §5.6); the master's user with [`crate::Master::store`].
//!
//! This module is the data structure alone, synchronous and bounded ([`StoreLimits`]): every
//! write that would take it past a bound is refused whole with a [`StoreError`] naming the bound.
//!
//! ```
//! use drover::store::{Store, StoreLimits};
//! use serde_json::json;
//! use std::time::{Duration, Instant};
//!
//! let mut store = Store::new(StoreLimits::default());
//! let now = Instant::now();
//! store.set("users.42", json!({"name": "ada"}), None, now)?;
//! assert_eq!(store.get("users.42.name", now), Some(json!("ada")));
//! assert!(store.compare_and_set("users.42.name", &json!("ada"), json!("grace"), None, now)?);
//! store.set("sessions.x", json!(1), Some(Duration::from_secs(60)), now)?;
//! assert_eq!(store.get("sessions.x", now + Duration::from_secs(61)), None);
//! # Ok::<(), drover::store::StoreError>(())
//! ```

use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

pub mod backend;
pub mod persist;
pub mod redis;

/// The bounds of one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// The most bytes of JSON the whole tree may take (as serialized). Default 64 MiB.
    pub max_bytes: usize,
    /// The most segments in a path. Default 32.
    pub max_depth: usize,
    /// The longest segment, in bytes. Default 256.
    pub max_segment: usize,
    /// The most paths with a time to live at once. Default 100,000.
    pub max_expiring: usize,
}

impl Default for StoreLimits {
    fn default() -> StoreLimits {
        StoreLimits {
            max_bytes: 64 * 1024 * 1024,
            max_depth: 32,
            max_segment: 256,
            max_expiring: 100_000,
        }
    }
}

/// Why a store operation was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The path is empty where a key is needed, too deep, or has an empty or too long segment.
    #[error("{path:?} is not a store path: {why}")]
    BadPath {
        /// The path given.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// A segment of the path is a value that is not an object, so nothing can be put below it.
    #[error("{path:?}: {at:?} holds a value that is not an object")]
    NotAnObject {
        /// The path given.
        path: String,
        /// The prefix that holds a non-object.
        at: String,
    },
    /// The write would take the store past a bound.
    #[error("the store would hold {would} bytes, past its bound of {max} bytes")]
    Full {
        /// What it would hold.
        would: usize,
        /// The bound.
        max: usize,
    },
    /// Too many paths with a time to live.
    #[error("{max} paths already have a time to live, the most a store keeps")]
    TooManyExpiring {
        /// The bound.
        max: usize,
    },
}

/// The master's shared storage: a JSON tree with optional expiry per path.
#[derive(Debug)]
pub struct Store {
    root: Map<String, Value>,
    /// The bytes the tree takes as JSON, kept current by every write.
    bytes: usize,
    /// Paths with a time to live, and when each expires.
    expiries: HashMap<String, Instant>,
    /// The same, by time, for expiring in order.
    by_time: BTreeSet<(Instant, String)>,
    limits: StoreLimits,
}

fn size(value: &Value) -> usize {
    serde_json::to_vec(value).map(|v| v.len()).unwrap_or(0)
}

/// Whether `path` is `prefix` or below it, segment-wise.
pub fn is_within(path: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'.'))
}

impl Store {
    /// An empty store with these bounds.
    pub fn new(limits: StoreLimits) -> Store {
        Store {
            root: Map::new(),
            bytes: 2,
            expiries: HashMap::new(),
            by_time: BTreeSet::new(),
            limits,
        }
    }

    /// The bytes the store holds, as JSON.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Checks `path` against this store's bounds, as a write (`need_key`) or a read (`""` allowed)
    /// would.
    pub fn check_path(&self, path: &str, need_key: bool) -> Result<(), StoreError> {
        self.segments(path, need_key).map(drop)
    }

    /// The whole tree, as it is (values past their time included until the next [`Store::expire`]).
    pub fn tree(&self) -> &Map<String, Value> {
        &self.root
    }

    /// The paths with a time to live, and when each expires, soonest first.
    pub fn expiring(&self) -> impl Iterator<Item = (&str, Instant)> {
        self.by_time.iter().map(|(when, path)| (path.as_str(), *when))
    }

    fn segments<'p>(&self, path: &'p str, need_key: bool) -> Result<Vec<&'p str>, StoreError> {
        let bad = |why: String| StoreError::BadPath {
            path: path.to_string(),
            why,
        };
        if path.is_empty() {
            return if need_key {
                Err(bad("a key is needed".into()))
            } else {
                Ok(Vec::new())
            };
        }
        let segments: Vec<&str> = path.split('.').collect();
        if segments.len() > self.limits.max_depth {
            return Err(bad(format!(
                "{} segments, at most {}",
                segments.len(),
                self.limits.max_depth
            )));
        }
        for s in &segments {
            if s.is_empty() {
                return Err(bad("an empty segment".into()));
            }
            if s.len() > self.limits.max_segment {
                return Err(bad(format!(
                    "a segment of {} bytes, at most {}",
                    s.len(),
                    self.limits.max_segment
                )));
            }
            if s.chars().any(char::is_control) {
                return Err(bad("a control character".into()));
            }
        }
        Ok(segments)
    }

    /// Removes what expired by `now`; the paths removed.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut removed = Vec::new();
        while let Some((when, path)) = self.by_time.first().cloned() {
            if when > now {
                break;
            }
            self.by_time.remove(&(when, path.clone()));
            self.expiries.remove(&path);
            if self.remove(&path) {
                removed.push(path);
            }
        }
        removed
    }

    /// The value at `path` (the whole tree for `""`), if there is one and it has not expired.
    pub fn get(&mut self, path: &str, now: Instant) -> Option<Value> {
        self.expire(now);
        let segments = self.segments(path, false).ok()?;
        if segments.is_empty() {
            return Some(Value::Object(self.root.clone()));
        }
        let mut node = self.root.get(segments[0])?;
        for s in &segments[1..] {
            node = node.as_object()?.get(*s)?;
        }
        Some(node.clone())
    }

    /// The keys directly below `path` (the top-level keys for `""`), sorted.
    pub fn keys(&mut self, path: &str, now: Instant) -> Vec<String> {
        match self.get(path, now) {
            Some(Value::Object(map)) => {
                let mut keys: Vec<String> = map.keys().cloned().collect();
                keys.sort();
                keys
            }
            _ => Vec::new(),
        }
    }

    /// Puts `value` at `path`, creating the objects on the way; with `ttl`, it is removed that
    /// long from `now` (a write without `ttl` keeps no expiry of the path or below it).
    pub fn set(&mut self, path: &str, value: Value, ttl: Option<Duration>, now: Instant) -> Result<(), StoreError> {
        self.expire(now);
        let segments = self.segments(path, true)?;
        if ttl.is_some() && !self.expiries.contains_key(path) && self.expiries.len() >= self.limits.max_expiring {
            return Err(StoreError::TooManyExpiring {
                max: self.limits.max_expiring,
            });
        }
        // What the write adds and takes away, before changing anything.
        let (last, parents) = segments.split_last().ok_or_else(|| StoreError::BadPath {
            path: path.into(),
            why: "a key is needed".into(),
        })?;
        let mut node = &self.root;
        let mut missing = 0usize; // bytes of the objects to create on the way
        let mut created = false;
        for (i, s) in parents.iter().enumerate() {
            match node.get(*s) {
                Some(Value::Object(map)) if !created => node = map,
                Some(_) if !created => {
                    return Err(StoreError::NotAnObject {
                        path: path.into(),
                        at: segments[..=i].join("."),
                    })
                }
                _ => {
                    created = true;
                    missing += s.len() + 6; // "s":{} and a comma
                }
            }
        }
        let old = if created { None } else { node.get(*last) };
        let old_bytes = old.map_or(0, |v| size(v) + last.len() + 4);
        let new_bytes = size(&value) + last.len() + 4 + missing;
        let would = (self.bytes + new_bytes).saturating_sub(old_bytes);
        if would > self.limits.max_bytes {
            return Err(StoreError::Full {
                would,
                max: self.limits.max_bytes,
            });
        }
        // Write.
        let mut node = &mut self.root;
        for s in parents {
            let entry = node.entry(s.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            let Value::Object(map) = entry else {
                unreachable!("made an object just above")
            };
            node = map;
        }
        node.insert(last.to_string(), value);
        self.bytes = would;
        self.clear_expiries_within(path);
        if let Some(ttl) = ttl {
            let when = now + ttl;
            self.expiries.insert(path.to_string(), when);
            self.by_time.insert((when, path.to_string()));
        }
        Ok(())
    }

    /// Removes the value at `path`; whether there was one.
    pub fn delete(&mut self, path: &str, now: Instant) -> Result<bool, StoreError> {
        self.expire(now);
        self.segments(path, true)?;
        let removed = self.remove(path);
        self.clear_expiries_within(path);
        Ok(removed)
    }

    /// Puts `new` at `path` only if the value there is `expected` (`null`: absent); whether it did.
    pub fn compare_and_set(
        &mut self,
        path: &str,
        expected: &Value,
        new: Value,
        ttl: Option<Duration>,
        now: Instant,
    ) -> Result<bool, StoreError> {
        let current = self.get(path, now).unwrap_or(Value::Null);
        if &current != expected {
            return Ok(false);
        }
        self.set(path, new, ttl, now).map(|()| true)
    }

    fn clear_expiries_within(&mut self, path: &str) {
        let within: Vec<(String, Instant)> = self
            .expiries
            .iter()
            .filter(|(p, _)| is_within(p, path))
            .map(|(p, w)| (p.clone(), *w))
            .collect();
        for (p, when) in within {
            self.expiries.remove(&p);
            self.by_time.remove(&(when, p));
        }
    }

    /// Removes the value at `path` and accounts for its bytes.
    fn remove(&mut self, path: &str) -> bool {
        let segments: Vec<&str> = path.split('.').collect();
        let Some((last, parents)) = segments.split_last() else {
            return false;
        };
        let mut node = &mut self.root;
        for s in parents {
            match node.get_mut(*s) {
                Some(Value::Object(map)) => node = map,
                _ => return false,
            }
        }
        match node.remove(*last) {
            Some(old) => {
                self.bytes = self.bytes.saturating_sub(size(&old) + last.len() + 4);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_read_and_write_a_tree() {
        let mut s = Store::new(StoreLimits::default());
        let now = Instant::now();
        s.set("a.b.c", json!(1), None, now).unwrap();
        s.set("a.d", json!([1, 2]), None, now).unwrap();
        assert_eq!(s.get("a", now), Some(json!({"b": {"c": 1}, "d": [1, 2]})));
        assert_eq!(s.keys("a", now), ["b", "d"]);
        assert_eq!(s.get("a.x", now), None);
        assert_eq!(s.get("a.d.0", now), None, "arrays are values, not paths");
        assert!(matches!(
            s.set("a.d.x", json!(1), None, now),
            Err(StoreError::NotAnObject { .. })
        ));
        assert!(s.delete("a.b", now).unwrap());
        assert!(!s.delete("a.b", now).unwrap());
        assert_eq!(s.get("", now), Some(json!({"a": {"d": [1, 2]}})));
        for bad in ["", "a..b", ".a", &"x.".repeat(40)] {
            assert!(
                matches!(s.set(bad, json!(1), None, now), Err(StoreError::BadPath { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn compare_and_set_takes_null_for_absent() {
        let mut s = Store::new(StoreLimits::default());
        let now = Instant::now();
        assert!(s.compare_and_set("lock", &Value::Null, json!("w1"), None, now).unwrap());
        assert!(!s.compare_and_set("lock", &Value::Null, json!("w2"), None, now).unwrap());
        assert!(s.compare_and_set("lock", &json!("w1"), json!("w2"), None, now).unwrap());
        assert_eq!(s.get("lock", now), Some(json!("w2")));
    }

    #[test]
    fn values_expire_and_a_later_write_without_ttl_keeps_them() {
        let mut s = Store::new(StoreLimits::default());
        let now = Instant::now();
        s.set("ns.a", json!(1), Some(Duration::from_secs(10)), now).unwrap();
        s.set("ns.b", json!(2), Some(Duration::from_secs(10)), now).unwrap();
        s.set("ns.b", json!(3), None, now).unwrap();
        let later = now + Duration::from_secs(11);
        assert_eq!(s.get("ns", later), Some(json!({"b": 3})));
        assert_eq!(s.expire(later), Vec::<String>::new());
    }

    #[test]
    fn the_byte_bound_refuses_a_write_whole_and_deletes_give_room_back() {
        let limits = StoreLimits {
            max_bytes: 1000,
            ..StoreLimits::default()
        };
        let mut s = Store::new(limits);
        let now = Instant::now();
        let big = json!("x".repeat(600));
        s.set("a", big.clone(), None, now).unwrap();
        let err = s.set("b", big.clone(), None, now).unwrap_err();
        assert!(matches!(err, StoreError::Full { max: 1000, .. }), "{err}");
        assert_eq!(s.get("b", now), None, "nothing was written");
        // Replacing a value counts its old size out.
        s.set("a", big.clone(), None, now).unwrap();
        s.delete("a", now).unwrap();
        s.set("b", big, None, now).unwrap();
        let tracked = s.bytes();
        let actual = serde_json::to_vec(&s.get("", now).unwrap()).unwrap().len();
        assert!(tracked >= actual && tracked <= actual + 16, "{tracked} vs {actual}");
    }

    #[test]
    fn expiring_paths_are_bounded() {
        let limits = StoreLimits {
            max_expiring: 2,
            ..StoreLimits::default()
        };
        let mut s = Store::new(limits);
        let now = Instant::now();
        let ttl = Some(Duration::from_secs(5));
        s.set("a", json!(1), ttl, now).unwrap();
        s.set("b", json!(1), ttl, now).unwrap();
        assert_eq!(
            s.set("c", json!(1), ttl, now),
            Err(StoreError::TooManyExpiring { max: 2 })
        );
        s.set("a", json!(2), ttl, now).unwrap();
    }
}
