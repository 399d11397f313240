//! Leader election among a master's workers (PROTOCOL.md §5.10): for each *leadership* (a key,
//! e.g. the name of a client whose upstream connection only one process may hold), the master
//! designates one live STARTED worker of those that joined it, and tells every participant who
//! it is with a `leader` frame.
//!
//! Never two leaders at once: a leader that dies is reaped before another is elected; a leader
//! that leaves service (the master stops it, or it reports a status other than STARTED) is first
//! *deposed* — told it no longer leads — and the next is elected only once it says it let go
//! (`drover.leader.resign` or `leave`) or its process is gone. In between, the leadership has no
//! leader, and every participant is told so.
//!
//! This module is the state alone (who joined what, who leads, at which term); the router
//! (`master::router`) feeds it the workers' requests and status changes and writes the frames.

use std::collections::{BTreeMap, BTreeSet};

use crate::request::{check_handler_name, RequestError, RequestErrorCode};
use crate::WorkerId;

/// The names of the master's built-in election handlers start with this: `join`, `leave`,
/// `resign` (PROTOCOL.md §5.10).
pub const LEADER_PREFIX: &str = "drover.leader.";
/// Leaderships one master holds at once (a leadership goes when its last participant leaves).
pub const MAX_LEADERSHIPS: usize = 64;

/// One frame to write: worker `to` is told that `key`'s leader is `leader` (none: nobody, for
/// now) as of `term`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    pub to: WorkerId,
    pub key: String,
    pub leader: Option<WorkerId>,
    pub term: u64,
}

/// A leadership as [`crate::Master::leaderships`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Leadership {
    /// Its key.
    pub key: String,
    /// The worker that leads it, if one does now.
    pub leader: Option<WorkerId>,
    /// Its term: grows by one at each change of leader.
    pub term: u64,
    /// How many workers joined it.
    pub participants: usize,
}

/// One leadership's state.
#[derive(Debug, Default)]
struct LeadershipState {
    participants: BTreeSet<WorkerId>,
    leader: Option<WorkerId>,
    /// Grows by one at each change of `leader` (to someone or to nobody).
    term: u64,
    /// A deposed leader that has not yet said it let go: nobody else is elected meanwhile.
    releasing: Option<WorkerId>,
    /// Participants that resigned while serving: elected only when nobody else can be.
    passed_over: BTreeSet<WorkerId>,
}

/// Every leadership of one master, and what it knows of the workers' states.
#[derive(Debug, Default)]
pub(crate) struct Elections {
    keys: BTreeMap<String, LeadershipState>,
    /// Workers that are STARTED and not being retired: the eligible ones.
    serving: BTreeSet<WorkerId>,
}

fn refused(code: RequestErrorCode, message: String) -> RequestError {
    RequestError::new(code, message)
}

impl Elections {
    /// Worker `id` joins `key` (creating it); whether serving decides if it may be elected.
    /// Joining twice is joining once.
    pub fn join(&mut self, id: WorkerId, key: &str) -> Result<Vec<Notice>, RequestError> {
        check_handler_name(key).map_err(|_| {
            refused(
                RequestErrorCode::BadRequest,
                format!("{key:?} is not a leadership key (1 to 128 bytes, no control characters)"),
            )
        })?;
        if !self.keys.contains_key(key) && self.keys.len() >= MAX_LEADERSHIPS {
            return Err(refused(
                RequestErrorCode::Overloaded,
                format!("the master holds {MAX_LEADERSHIPS} leaderships, the most it may"),
            ));
        }
        let leadership = self.keys.entry(key.to_string()).or_default();
        leadership.participants.insert(id);
        let mut notices = self.settle(key);
        // The joiner learns the state even when nothing changed.
        if !notices.iter().any(|n| n.to == id) {
            if let Some(l) = self.keys.get(key) {
                notices.push(Notice {
                    to: id,
                    key: key.to_string(),
                    leader: l.leader,
                    term: l.term,
                });
            }
        }
        Ok(notices)
    }

    /// Worker `id` leaves `key` (if it leads, it lets go as it leaves).
    pub fn leave(&mut self, id: WorkerId, key: &str) -> Vec<Notice> {
        let Some(l) = self.keys.get_mut(key) else {
            return Vec::new();
        };
        l.participants.remove(&id);
        l.passed_over.remove(&id);
        let notices = self.let_go(id, key);
        if self.keys.get(key).is_some_and(|l| l.participants.is_empty()) {
            self.keys.remove(key);
        }
        notices
    }

    /// Worker `id` gives up leading `key` (it closed what only the leader may hold) but stays a
    /// participant; another is elected if one can be.
    pub fn resign(&mut self, id: WorkerId, key: &str) -> Vec<Notice> {
        let Some(l) = self.keys.get_mut(key) else {
            return Vec::new();
        };
        if l.leader == Some(id) || l.releasing == Some(id) {
            l.passed_over.insert(id);
        }
        self.let_go(id, key)
    }

    /// Worker `id` is STARTED (and not being retired): it may be elected.
    pub fn serving(&mut self, id: WorkerId) -> Vec<Notice> {
        if !self.serving.insert(id) {
            return Vec::new();
        }
        self.settle_all()
    }

    /// Worker `id` leaves service (stopping, failed, retired): it may not be elected, and where
    /// it leads it is deposed; its successor waits for it to let go.
    pub fn not_serving(&mut self, id: WorkerId) -> Vec<Notice> {
        self.serving.remove(&id);
        let mut notices = Vec::new();
        for (key, l) in &mut self.keys {
            if l.leader == Some(id) {
                l.leader = None;
                l.releasing = Some(id);
                l.term += 1;
                notices.extend(tell_all(key, l));
            }
        }
        notices
    }

    /// Worker `id`'s process is gone: it leads nothing and takes part in nothing.
    pub fn gone(&mut self, id: WorkerId) -> Vec<Notice> {
        self.serving.remove(&id);
        let keys: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, l)| l.participants.contains(&id) || l.releasing == Some(id))
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter().flat_map(|key| self.leave(id, key)).collect()
    }

    /// Every leadership: (key, leader, term, participants), by key.
    pub fn all(&self) -> Vec<Leadership> {
        self.keys
            .iter()
            .map(|(key, l)| Leadership {
                key: key.clone(),
                leader: l.leader,
                term: l.term,
                participants: l.participants.len(),
            })
            .collect()
    }

    /// Who leads `key` and at which term (none: no such leadership).
    pub fn leader(&self, key: &str) -> Option<(Option<WorkerId>, u64)> {
        self.keys.get(key).map(|l| (l.leader, l.term))
    }

    /// `id` let go of `key` (resigned, left, or died): if it led, nobody leads now; then elect.
    fn let_go(&mut self, id: WorkerId, key: &str) -> Vec<Notice> {
        let Some(l) = self.keys.get_mut(key) else {
            return Vec::new();
        };
        let mut changed = false;
        if l.releasing == Some(id) {
            l.releasing = None;
        }
        if l.leader == Some(id) {
            l.leader = None;
            l.term += 1;
            changed = true;
        }
        let mut notices = self.settle(key);
        if changed && notices.is_empty() {
            if let Some(l) = self.keys.get(key) {
                notices = tell_all(key, l);
            }
        }
        notices
    }

    fn settle_all(&mut self) -> Vec<Notice> {
        let keys: Vec<String> = self.keys.keys().cloned().collect();
        keys.iter().flat_map(|k| self.settle(k)).collect()
    }

    /// Elects a leader for `key` if it has none and none is letting go; the notices if it did.
    fn settle(&mut self, key: &str) -> Vec<Notice> {
        let serving = &self.serving;
        let Some(l) = self.keys.get_mut(key) else {
            return Vec::new();
        };
        if l.leader.is_some() || l.releasing.is_some() {
            return Vec::new();
        }
        let eligible = |id: &&WorkerId| serving.contains(id);
        let chosen = l
            .participants
            .iter()
            .filter(eligible)
            .find(|id| !l.passed_over.contains(id))
            .or_else(|| l.participants.iter().find(eligible))
            .copied();
        let Some(chosen) = chosen else {
            return Vec::new();
        };
        l.passed_over.remove(&chosen);
        l.leader = Some(chosen);
        l.term += 1;
        tell_all(key, l)
    }
}

fn tell_all(key: &str, l: &LeadershipState) -> Vec<Notice> {
    l.participants
        .iter()
        .map(|&to| Notice {
            to,
            key: key.to_string(),
            leader: l.leader,
            term: l.term,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader_told(notices: &[Notice], to: WorkerId) -> Option<Option<WorkerId>> {
        notices.iter().rev().find(|n| n.to == to).map(|n| n.leader)
    }

    #[test]
    fn one_leader_among_the_serving_and_the_next_when_it_dies() {
        let mut e = Elections::default();
        for id in 1..=3 {
            e.join(id, "db").unwrap();
        }
        assert_eq!(e.leader("db"), Some((None, 0)), "nobody serves yet");
        let n = e.serving(2);
        assert_eq!(leader_told(&n, 1), Some(Some(2)));
        e.serving(1);
        e.serving(3);
        assert_eq!(e.leader("db"), Some((Some(2), 1)), "a leader is kept while it serves");
        let n = e.gone(2);
        assert_eq!(
            e.leader("db"),
            Some((Some(1), 3)),
            "the term grows at each change, through nobody"
        );
        assert_eq!(leader_told(&n, 3), Some(Some(1)));
        assert_eq!(leader_told(&n, 2), None, "the dead are not told");
    }

    #[test]
    fn a_stopping_leader_is_deposed_and_its_successor_waits_for_it_to_let_go() {
        let mut e = Elections::default();
        for id in [1, 2] {
            e.join(id, "db").unwrap();
            e.serving(id);
        }
        assert_eq!(e.leader("db").unwrap().0, Some(1));
        let n = e.not_serving(1);
        assert_eq!(leader_told(&n, 1), Some(None), "the old leader is told first");
        assert_eq!(leader_told(&n, 2), Some(None));
        assert_eq!(e.leader("db").unwrap().0, None, "nobody leads until it lets go");
        assert!(e.serving(2).is_empty(), "still waiting for the old leader");
        let n = e.resign(1, "db");
        assert_eq!(leader_told(&n, 2), Some(Some(2)));
        assert_eq!(e.leader("db"), Some((Some(2), 3)));
    }

    #[test]
    fn a_resigning_leader_is_passed_over_while_another_can_lead() {
        let mut e = Elections::default();
        for id in [1, 2] {
            e.join(id, "db").unwrap();
            e.serving(id);
        }
        e.resign(1, "db");
        assert_eq!(e.leader("db").unwrap().0, Some(2));
        e.gone(2);
        assert_eq!(e.leader("db").unwrap().0, Some(1), "alone, it leads again");
        e.leave(1, "db");
        assert_eq!(
            e.leader("db"),
            None,
            "the last participant takes the leadership with it"
        );
    }

    #[test]
    fn past_the_bound_a_new_leadership_is_refused_by_name() {
        let mut e = Elections::default();
        for i in 0..MAX_LEADERSHIPS {
            e.join(1, &format!("k{i}")).unwrap();
        }
        let err = e.join(1, "one-more").unwrap_err();
        assert_eq!(err.code, RequestErrorCode::Overloaded);
        assert!(err.message.contains("64 leaderships"), "{}", err.message);
        e.join(1, "k0").expect("an existing leadership may still be joined");
        assert_eq!(e.join(1, "").unwrap_err().code, RequestErrorCode::BadRequest);
    }
}
