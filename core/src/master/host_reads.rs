//! Worker channels read on the host's own loop ([`Master::set_channel_host`]).
//!
//! A host whose code runs on its own event loop (Node's, in the addon) receives a worker's user
//! messages fastest if that loop reads the channel itself: no runtime thread wakes up to read the
//! frame and then wake the host's thread (see [`crate::protocol::host_read`]). With a
//! [`ChannelHost`] installed, each new worker's channel is handed to the host as a
//! [`WorkerChannel`] instead of being read by the worker's actor:
//!
//! - a user message goes straight to the host, from the host's loop, as a [`DirectMessage`]: its
//!   payload is the JSON text the worker wrote, checked but not decoded, for a host that parses
//!   JSON itself (decoding it into a `Value` only to encode it again cost more than the rest of
//!   the frame's way through the core);
//! - every other frame (statuses, heartbeats, `listen` requests, bad frames, the end of the channel)
//!   is forwarded to the actor, which handles it exactly as if it had read it;
//! - a message that follows a forwarded frame the actor has not yet reported handled waits in the
//!   channel, with everything after it. The actor reports each handled frame with
//!   [`ChannelHost::caught_up`] right after emitting that frame's events, and the host applies it,
//!   on its loop, *after* those events: what waited then goes on, in order. So the host sees a
//!   worker's STARTED before the message the worker sent after it, as it would if the actor read
//!   everything, and a burst that arrives while a heartbeat is being handled still goes direct.
//!
//! The frames between the host and the actor are bounded per worker ([`HOST_INBOUND_FRAMES`]):
//! once that many were forwarded and not yet reported handled, or wait behind one, the host stops
//! reading that worker's channel ([`WorkerChannel::read_ready`] returns at once, reading nothing)
//! until the actor catches up. The worker then waits on its full socket; no frame is dropped, and
//! the other workers' channels are read as before. (A worker whose channel its actor reads itself
//! needs no such bound: the actor reads a frame only once it handled the one before.)
//!
//! [`Master::set_channel_host`]: crate::Master::set_channel_host

use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::os::fd::RawFd;
use tokio::sync::mpsc;

use super::events::Event;
use crate::protocol;
use crate::protocol::codec::Frame;
use crate::protocol::host_read::{HostFrames, ReadState};
use crate::WorkerId;

/// The most frames of one worker that may be on their way to its actor (forwarded, not yet
/// reported handled) or waiting behind such a frame before the host stops reading its channel.
pub const HOST_INBOUND_FRAMES: usize = 1024;

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

/// A user message the host's loop read itself ([`WorkerChannel::read_ready`]).
#[derive(Debug, Clone, Copy)]
pub struct DirectMessage<'a> {
    /// The worker.
    pub id: WorkerId,
    /// Its process.
    pub pid: u32,
    /// The payload, as the worker wrote it: valid JSON, not decoded.
    pub data: &'a RawValue,
}

impl DirectMessage<'_> {
    /// The [`Event::Message`] the master emits when its actor reads the same message. A message
    /// from [`WorkerChannel::read_ready`] was checked to decode (`protocol::message_text`), so this
    /// fails only for one built otherwise.
    pub fn to_event(&self) -> serde_json::Result<Event> {
        Ok(Event::Message {
            id: self.id,
            pid: self.pid,
            data: serde_json::from_str(self.data.get())?,
        })
    }
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
    /// Frames read and not yet through: at the actor, or waiting for it.
    fn backlog(&self) -> usize {
        (self.forwarded - self.handled) as usize + self.held.len()
    }

    /// Where one frame read from the channel goes.
    fn take(&mut self, frame: Option<Frame>, message: &mut dyn FnMut(DirectMessage<'_>)) {
        if !self.held.is_empty() {
            self.held.push_back(frame);
        } else if self.forwarded == self.handled {
            self.pass(frame, message);
        } else if matches!(&frame, Some(Ok(line)) if self.accepting && protocol::message_text(line).is_some()) {
            // Behind a frame the actor is handling: it waits its turn here.
            self.held.push_back(frame);
        } else {
            // The actor takes frames in order: this one queues behind the pending one there.
            self.forward(frame);
        }
    }

    /// Gives on what waited, in order, as long as the actor has nothing pending.
    fn release(&mut self, message: &mut dyn FnMut(DirectMessage<'_>)) {
        while self.forwarded == self.handled {
            let Some(frame) = self.held.pop_front() else {
                return;
            };
            // What `take` would have done had it come now (it is first in line).
            self.pass(frame, message);
        }
    }

    /// A frame first in line, with nothing pending at the actor: a user message goes direct, the
    /// rest to the actor. A message of unusual shape (which `message_text` leaves to the full
    /// decoder) goes to the actor too, and comes out as its event, in order.
    fn pass(&mut self, frame: Option<Frame>, message: &mut dyn FnMut(DirectMessage<'_>)) {
        if let Some(Ok(line)) = &frame {
            if self.accepting {
                if let Some(data) = protocol::message_text(line) {
                    message(DirectMessage {
                        id: self.id,
                        pid: self.pid,
                        data,
                    });
                    return;
                }
            }
        }
        self.forward(frame);
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
    /// `message`; the other frames go to the worker's actor or wait for it to catch up. Returns
    /// whether to keep watching the fd: false once the channel was read to its end (keep the
    /// channel until [`WorkerChannel::is_finished`]: what waits still goes on).
    ///
    /// While [`HOST_INBOUND_FRAMES`] frames are on their way to the actor or wait for it, this
    /// reads nothing ([`WorkerChannel::is_paused`]); [`WorkerChannel::caught_up`] ends the pause.
    pub fn read_ready(&mut self, message: &mut dyn FnMut(DirectMessage<'_>)) -> bool {
        if self.route.ended || self.route.actor_gone {
            return false;
        }
        if self.is_paused() {
            return true;
        }
        let route = &mut self.route;
        let state = self.frames.read_ready(&mut |frame| route.take(frame, message));
        self.route.ended = state == ReadState::Ended;
        !(self.route.ended || self.route.actor_gone)
    }

    /// Applies the actor's report, and gives on what waited for it (messages to `message`). Call
    /// it on the host's loop, in order with the events (see [`ChannelHost`]).
    pub fn caught_up(&mut self, mark: CaughtUp, message: &mut dyn FnMut(DirectMessage<'_>)) {
        if mark.id == self.route.id && mark.seq >= self.route.handled {
            self.route.handled = mark.seq;
            self.route.accepting = mark.accepting;
            self.route.release(message);
        }
    }

    /// Whether reading is paused until the actor catches up (see [`WorkerChannel::read_ready`]).
    pub fn is_paused(&self) -> bool {
        self.route.backlog() >= HOST_INBOUND_FRAMES
    }

    /// Nothing more will come of this channel (read to its end and nothing waits, or its actor
    /// is gone): drop it.
    pub fn is_finished(&self) -> bool {
        (self.route.ended && self.route.held.is_empty()) || self.route.actor_gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FrameCodec;
    use bytes::BytesMut;
    use std::io::Write;
    use std::sync::Arc;

    /// A channel on a socket pair: the host's side, the worker's end, and the actor's inbox.
    fn channel() -> (
        WorkerChannel,
        std::os::unix::net::UnixStream,
        mpsc::UnboundedReceiver<Forwarded>,
    ) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("non-blocking");
        let frames = HostFrames::new(Arc::new(ours), None, BytesMut::new(), FrameCodec::new(1024));
        let (to_actor, actor) = mpsc::unbounded_channel();
        (WorkerChannel::new(1, 2, frames, to_actor), theirs, actor)
    }

    /// What one read, or one report, let through: `direct <payload>` for a message the host took,
    /// `actor <seq> <frame>` for a frame forwarded to the actor, in the order they went.
    fn step(
        channel: &mut WorkerChannel,
        actor: &mut mpsc::UnboundedReceiver<Forwarded>,
        report: Option<CaughtUp>,
    ) -> Vec<String> {
        let mut went = Vec::new();
        let mut direct = |m: DirectMessage<'_>| went.push(format!("direct {}", m.data.get()));
        match report {
            Some(mark) => channel.caught_up(mark, &mut direct),
            None => {
                channel.read_ready(&mut direct);
            }
        }
        while let Ok(f) = actor.try_recv() {
            let frame = match f.frame {
                Some(Ok(line)) => line,
                Some(Err(error)) => format!("error {error}"),
                None => "end".into(),
            };
            went.push(format!("actor {} {frame}", f.seq));
        }
        went
    }

    const HEARTBEAT: &str = r#"{"type":"heartbeat"}"#;

    fn message(n: u32) -> String {
        format!(r#"{{"type":"message","data":{n}}}"#)
    }

    fn write_lines(theirs: &mut std::os::unix::net::UnixStream, lines: &[&str]) {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        theirs.write_all(text.as_bytes()).expect("write");
    }

    #[test]
    fn messages_before_hello_go_to_the_actor_in_order_with_the_other_frames() {
        let (mut channel, mut theirs, mut actor) = channel();
        write_lines(&mut theirs, &[&message(1), HEARTBEAT]);
        let m1 = message(1);
        assert_eq!(
            step(&mut channel, &mut actor, None),
            vec![format!("actor 1 {m1}"), format!("actor 2 {HEARTBEAT}")]
        );
    }

    #[test]
    fn a_message_with_nothing_pending_at_the_actor_goes_direct() {
        let (mut channel, mut theirs, mut actor) = channel();
        // The actor handled the hello (seq 1) and opened the channel to messages.
        write_lines(&mut theirs, &[r#"{"type":"hello","version":1}"#]);
        assert_eq!(step(&mut channel, &mut actor, None).len(), 1);
        assert!(step(&mut channel, &mut actor, Some(CaughtUp::new(1, 1, true))).is_empty());
        write_lines(&mut theirs, &[&message(1), &message(2)]);
        assert_eq!(step(&mut channel, &mut actor, None), vec!["direct 1", "direct 2"]);
    }

    #[test]
    fn a_message_behind_a_pending_frame_waits_for_the_report_and_what_follows_keeps_its_order() {
        let (mut channel, mut theirs, mut actor) = channel();
        assert!(step(&mut channel, &mut actor, Some(CaughtUp::new(1, 0, true))).is_empty());
        write_lines(&mut theirs, &[HEARTBEAT, &message(1), HEARTBEAT, &message(2)]);
        // The heartbeat goes to the actor; everything after it waits, the second heartbeat too.
        assert_eq!(
            step(&mut channel, &mut actor, None),
            vec![format!("actor 1 {HEARTBEAT}")]
        );
        assert_eq!(channel.route.held.len(), 3);
        // Handled: the message goes on, then the heartbeat to the actor, and the rest waits again.
        assert_eq!(
            step(&mut channel, &mut actor, Some(CaughtUp::new(1, 1, true))),
            vec!["direct 1".to_string(), format!("actor 2 {HEARTBEAT}")]
        );
        assert_eq!(
            step(&mut channel, &mut actor, Some(CaughtUp::new(1, 2, true))),
            vec!["direct 2"]
        );
        assert!(channel.route.held.is_empty());
    }

    #[test]
    fn a_stale_report_or_another_workers_report_changes_nothing() {
        let (mut channel, mut theirs, mut actor) = channel();
        write_lines(&mut theirs, &[HEARTBEAT, &message(1)]);
        assert_eq!(
            step(&mut channel, &mut actor, None).len(),
            2,
            "not accepting: both forwarded"
        );
        assert!(step(&mut channel, &mut actor, Some(CaughtUp::new(1, 2, true))).is_empty());
        // An older report would close the channel to messages again: it is ignored.
        assert!(step(&mut channel, &mut actor, Some(CaughtUp::new(1, 1, false))).is_empty());
        assert!(step(&mut channel, &mut actor, Some(CaughtUp::new(7, 9, false))).is_empty());
        assert_eq!(channel.route.handled, 2);
        write_lines(&mut theirs, &[&message(2)]);
        assert_eq!(step(&mut channel, &mut actor, None), vec!["direct 2"]);
    }

    #[test]
    fn the_end_of_the_channel_goes_to_the_actor_after_what_waits() {
        let (mut channel, mut theirs, mut actor) = channel();
        assert!(step(&mut channel, &mut actor, Some(CaughtUp::new(1, 0, true))).is_empty());
        write_lines(&mut theirs, &[HEARTBEAT, &message(1)]);
        drop(theirs);
        assert_eq!(
            step(&mut channel, &mut actor, None),
            vec![format!("actor 1 {HEARTBEAT}")]
        );
        assert!(!channel.read_ready(&mut |_| panic!("nothing more is read")));
        assert!(!channel.is_finished(), "a message and the end still wait");
        assert_eq!(
            step(&mut channel, &mut actor, Some(CaughtUp::new(1, 1, true))),
            vec!["direct 1", "actor 2 end"]
        );
        assert!(channel.is_finished());
    }

    #[test]
    fn the_host_stops_reading_a_worker_whose_actor_is_behind_and_resumes_when_it_catches_up() {
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("non-blocking");
        let frames = HostFrames::new(Arc::new(ours), None, BytesMut::new(), FrameCodec::new(1024));
        let (to_actor, mut actor) = mpsc::unbounded_channel();
        let mut channel = WorkerChannel::new(1, 2, frames, to_actor);
        // Heartbeats (forwarded to the actor), three times the bound, from a blocking writer.
        let written = 3 * HOST_INBOUND_FRAMES;
        let writer = std::thread::spawn(move || {
            theirs
                .write_all(&b"{\"type\":\"heartbeat\"}\n".repeat(written))
                .expect("write");
            theirs
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let before = |what: &str| assert!(std::time::Instant::now() < deadline, "{what} within 30 s");
        let mut no_message = |_: DirectMessage<'_>| panic!("no message was sent");
        while channel.read_ready(&mut no_message) && !channel.is_paused() {
            before("the pause");
        }
        assert!(channel.is_paused());
        let forwarded = channel.route.forwarded;
        assert!(forwarded as usize >= HOST_INBOUND_FRAMES);
        // Paused: a readable socket is not read.
        assert!(channel.read_ready(&mut no_message));
        assert_eq!(channel.route.forwarded, forwarded);
        // The actor handled them: reading goes on, and every frame arrives, none dropped.
        let mut got = 0;
        while let Ok(f) = actor.try_recv() {
            assert!(matches!(f.frame, Some(Ok(_))));
            got += 1;
        }
        channel.caught_up(CaughtUp::new(1, forwarded, true), &mut no_message);
        assert!(!channel.is_paused());
        loop {
            channel.read_ready(&mut no_message);
            while let Ok(f) = actor.try_recv() {
                assert!(matches!(f.frame, Some(Ok(_))));
                got += 1;
            }
            let seq = channel.route.forwarded;
            channel.caught_up(CaughtUp::new(1, seq, true), &mut no_message);
            if got >= written {
                break;
            }
            before("every frame");
        }
        assert_eq!(got, written, "every frame reached the actor");
        drop(writer.join().expect("the writer does not panic"));
    }
}
