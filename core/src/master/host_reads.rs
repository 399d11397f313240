//! Worker channels read on the host's own loop ([`Master::set_channel_host`]).
//!
//! A host whose code runs on its own event loop (Node's, in the addon) receives a worker's user
//! messages fastest if that loop reads the channel itself: no runtime thread wakes up to read the
//! frame and then wake the host's thread (see [`crate::protocol::host_read`]). With a
//! [`ChannelHost`] installed, each new worker's channel is handed to the host as a
//! [`WorkerChannel`] instead of being read by the worker's actor:
//!
//! - a user message goes straight to the host, as an [`Event::Message`], from the host's loop;
//! - every other frame (statuses, heartbeats, `listen` requests, bad frames, the end of the channel)
//!   is forwarded to the actor, which handles it exactly as if it had read it;
//! - a message that follows a forwarded frame the host has not yet seen handled goes through the
//!   actor too. The actor reports each handled frame with [`ChannelHost::caught_up`] right after
//!   emitting that frame's events, and the host applies it, on its loop, *after* those events:
//!   so the host sees a worker's STARTED before the message the worker sent after it, as it would
//!   if the actor read everything. Messages only go direct while nothing is pending.
//!
//! [`Master::set_channel_host`]: crate::Master::set_channel_host

use std::os::fd::RawFd;
use tokio::sync::mpsc;

use super::events::Event;
use crate::protocol::codec::Frame;
use crate::protocol::host_read::{HostFrames, ReadState};
use crate::protocol::{self, WorkerFrame};
use crate::WorkerId;

/// A host that reads worker channels on its own loop. See the module documentation.
pub trait ChannelHost: Send + Sync + 'static {
    /// A new worker process's channel, for the host's loop to read from now on: call
    /// [`WorkerChannel::read_ready`] whenever [`WorkerChannel::fd`] is readable, until it returns
    /// false. Called on a runtime thread, right after the process is spawned.
    fn adopt(&self, channel: WorkerChannel);

    /// The worker's actor handled forwarded frames and emitted their events: called on the
    /// runtime thread right after those events. Give it to [`WorkerChannel::caught_up`] on the
    /// host's loop *after* the events emitted before this call have been delivered there.
    fn caught_up(&self, mark: CaughtUp);
}

/// A frame the host's loop handed to the worker's actor, numbered.
#[derive(Debug)]
pub(crate) struct Forwarded {
    pub seq: u64,
    /// `None`: the channel ended.
    pub frame: Option<Frame>,
}

/// What [`ChannelHost::caught_up`] reports: worker `id`'s actor has handled every frame forwarded
/// up to number `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaughtUp {
    id: WorkerId,
    seq: u64,
    /// Whether the worker may send messages now (it said hello, and not yet SHUTTED_DOWN).
    accepting: bool,
}

impl CaughtUp {
    pub(crate) fn new(id: WorkerId, seq: u64, accepting: bool) -> CaughtUp {
        CaughtUp { id, seq, accepting }
    }

    /// The worker it is about.
    pub fn id(&self) -> WorkerId {
        self.id
    }
}

/// One worker process's channel, read by the host. See the module documentation.
#[derive(Debug)]
pub struct WorkerChannel {
    id: WorkerId,
    pid: u32,
    frames: HostFrames,
    to_actor: mpsc::UnboundedSender<Forwarded>,
    /// The number of the last frame forwarded to the actor, and the last the actor handled.
    forwarded: u64,
    handled: u64,
    /// From the last [`CaughtUp`]: messages are allowed (before hello they are not).
    accepting: bool,
    ended: bool,
}

impl WorkerChannel {
    pub(crate) fn new(
        id: WorkerId,
        pid: u32,
        frames: HostFrames,
        to_actor: mpsc::UnboundedSender<Forwarded>,
    ) -> WorkerChannel {
        WorkerChannel {
            id,
            pid,
            frames,
            to_actor,
            forwarded: 0,
            handled: 0,
            accepting: false,
            ended: false,
        }
    }

    /// The worker's id.
    pub fn id(&self) -> WorkerId {
        self.id
    }

    /// The worker process's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The socket to watch for readability.
    pub fn fd(&self) -> RawFd {
        self.frames.fd()
    }

    /// Reads what the channel holds now. Each user message that may go direct is given to
    /// `message` as an [`Event::Message`]; everything else goes to the worker's actor. Returns
    /// false once the channel ended (or the actor is gone): stop watching, and drop this.
    pub fn read_ready(&mut self, message: &mut dyn FnMut(Event)) -> bool {
        if self.ended {
            return false;
        }
        let (id, pid) = (self.id, self.pid);
        let to_actor = &self.to_actor;
        let forwarded = &mut self.forwarded;
        let (handled, accepting) = (self.handled, self.accepting);
        let mut actor_gone = false;
        let state = self.frames.read_ready(&mut |frame| {
            if let Some(Ok(line)) = &frame {
                if *forwarded == handled && accepting {
                    if let Ok(WorkerFrame::Message { data }) = protocol::decode_worker_frame(line) {
                        message(Event::Message { id, pid, data });
                        return;
                    }
                }
            }
            *forwarded += 1;
            let forward = Forwarded { seq: *forwarded, frame };
            actor_gone |= to_actor.send(forward).is_err();
        });
        self.ended = state == ReadState::Ended || actor_gone;
        !self.ended
    }

    /// Applies the actor's report: messages go direct again once it has handled everything
    /// forwarded. Call it on the host's loop, in order with the events (see [`ChannelHost`]).
    pub fn caught_up(&mut self, mark: CaughtUp) {
        if mark.id == self.id && mark.seq >= self.handled {
            self.handled = mark.seq;
            self.accepting = mark.accepting;
        }
    }
}
