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
//! - a message that follows a forwarded frame the actor has not yet reported handled waits in the
//!   channel, with everything after it. The actor reports each handled frame with
//!   [`ChannelHost::caught_up`] right after emitting that frame's events, and the host applies it,
//!   on its loop, *after* those events: what waited then goes on, in order. So the host sees a
//!   worker's STARTED before the message the worker sent after it, as it would if the actor read
//!   everything, and a burst that arrives while a heartbeat is being handled still goes direct.
//!
//! [`Master::set_channel_host`]: crate::Master::set_channel_host

use std::collections::VecDeque;
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
    frames: HostFrames,
    route: Route,
}

/// Where the frames of one channel go, and what waits.
#[derive(Debug)]
struct Route {
    id: WorkerId,
    pid: u32,
    to_actor: mpsc::UnboundedSender<Forwarded>,
    /// The number of the last frame forwarded to the actor, and of the last it handled.
    forwarded: u64,
    handled: u64,
    /// From the last [`CaughtUp`]: messages are allowed (before hello they are not).
    accepting: bool,
    /// Frames read behind a message that waits for the actor to catch up, in order: they go on
    /// (direct, or to the actor) when it has, so a burst that arrives while a heartbeat is being
    /// handled does not all take the slow way.
    held: VecDeque<Option<Frame>>,
    /// The channel was read to its end.
    ended: bool,
    /// The actor is gone: nothing more can be handled.
    actor_gone: bool,
}

impl Route {
    /// Where one frame read from the channel goes.
    fn take(&mut self, frame: Option<Frame>, message: &mut dyn FnMut(Event)) {
        if !self.held.is_empty() {
            self.held.push_back(frame);
            return;
        }
        match frame {
            Some(Ok(line)) if self.accepting => match protocol::decode_worker_frame(&line) {
                Ok(WorkerFrame::Message { data }) if self.forwarded == self.handled => message(Event::Message {
                    id: self.id,
                    pid: self.pid,
                    data,
                }),
                // Behind a frame the actor is handling: it waits its turn here.
                Ok(WorkerFrame::Message { .. }) => self.held.push_back(Some(Ok(line))),
                _ => self.forward(Some(Ok(line))),
            },
            other => self.forward(other),
        }
    }

    /// Gives on what waited, in order, as long as the actor has nothing pending.
    fn release(&mut self, message: &mut dyn FnMut(Event)) {
        while self.forwarded == self.handled {
            let Some(frame) = self.held.pop_front() else {
                return;
            };
            // What `take` would have done had it come now (it is first in line).
            match frame {
                Some(Ok(line)) if self.accepting => match protocol::decode_worker_frame(&line) {
                    Ok(WorkerFrame::Message { data }) => message(Event::Message {
                        id: self.id,
                        pid: self.pid,
                        data,
                    }),
                    _ => self.forward(Some(Ok(line))),
                },
                other => self.forward(other),
            }
        }
    }

    fn forward(&mut self, frame: Option<Frame>) {
        self.forwarded += 1;
        let forward = Forwarded {
            seq: self.forwarded,
            frame,
        };
        self.actor_gone |= self.to_actor.send(forward).is_err();
    }
}

impl WorkerChannel {
    pub(crate) fn new(
        id: WorkerId,
        pid: u32,
        frames: HostFrames,
        to_actor: mpsc::UnboundedSender<Forwarded>,
    ) -> WorkerChannel {
        let route = Route {
            id,
            pid,
            to_actor,
            forwarded: 0,
            handled: 0,
            accepting: false,
            held: VecDeque::new(),
            ended: false,
            actor_gone: false,
        };
        WorkerChannel { frames, route }
    }

    /// The worker's id.
    pub fn id(&self) -> WorkerId {
        self.route.id
    }

    /// The worker process's pid.
    pub fn pid(&self) -> u32 {
        self.route.pid
    }

    /// The socket to watch for readability.
    pub fn fd(&self) -> RawFd {
        self.frames.fd()
    }

    /// Reads what the channel holds now. Each user message that may go direct is given to
    /// `message` as an [`Event::Message`]; the others go to the worker's actor or wait for it to
    /// catch up. Returns whether to keep watching the fd: false once the channel was read to its
    /// end (keep the channel until [`WorkerChannel::is_finished`]: what waits still goes on).
    pub fn read_ready(&mut self, message: &mut dyn FnMut(Event)) -> bool {
        if self.route.ended || self.route.actor_gone {
            return false;
        }
        let route = &mut self.route;
        let state = self.frames.read_ready(&mut |frame| route.take(frame, message));
        self.route.ended = state == ReadState::Ended;
        !(self.route.ended || self.route.actor_gone)
    }

    /// Applies the actor's report, and gives on what waited for it (messages to `message`). Call
    /// it on the host's loop, in order with the events (see [`ChannelHost`]).
    pub fn caught_up(&mut self, mark: CaughtUp, message: &mut dyn FnMut(Event)) {
        if mark.id == self.route.id && mark.seq >= self.route.handled {
            self.route.handled = mark.seq;
            self.route.accepting = mark.accepting;
            self.route.release(message);
        }
    }

    /// Nothing more will come of this channel (read to its end and nothing waits, or its actor
    /// is gone): drop it.
    pub fn is_finished(&self) -> bool {
        (self.route.ended && self.route.held.is_empty()) || self.route.actor_gone
    }
}
