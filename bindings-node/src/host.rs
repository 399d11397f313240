//! The master's worker channels, read on the JS thread (core's [`ChannelHost`]).
//!
//! Without this, a worker's message wakes the addon's runtime thread, which reads it and hands it
//! to the JS thread through the thread-safe function: two wake-ups, a third of a round trip. Here
//! core hands each new worker's channel over ([`ChannelHost::adopt`]), and a libuv poll handle on
//! Node's own loop reads it ([`crate::uv::ReadWatch`]): a user message is decoded and given to the
//! master's JS callback on the same turn of the loop that saw the socket readable.
//!
//! Everything else a worker writes still goes to its actor in core, on the runtime. To keep the
//! order of what JavaScript sees, the hand-overs themselves ride the thread-safe function, in line
//! with the events: [`ToJs::Adopt`] and [`ToJs::CaughtUp`] are applied on the JS thread when their
//! turn in that queue comes, *after* the events emitted before them (see core's `host_reads`).

use drover::{CaughtUp, ChannelHost, DirectMessage, WorkerChannel, WorkerId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::js_call::JsCallback;
use crate::uv::ReadWatch;

/// What the master's thread-safe function carries to the JS thread, in order.
pub enum ToJs {
    /// An event, as the JSON text the JS layer parses.
    Event(String),
    /// A new worker's channel, to read from now on.
    Adopt(WorkerChannel),
    /// A worker's actor handled what was forwarded to it.
    CaughtUp(CaughtUp),
}

/// The host core calls on the runtime thread: it only queues, for the JS thread.
pub struct QueueToJs<F: Fn(ToJs) + Send + Sync + 'static>(pub F);

impl<F: Fn(ToJs) + Send + Sync + 'static> ChannelHost for QueueToJs<F> {
    fn adopt(&self, channel: WorkerChannel) {
        (self.0)(ToJs::Adopt(channel))
    }

    fn caught_up(&self, mark: CaughtUp) {
        (self.0)(ToJs::CaughtUp(mark))
    }
}

/// The channels being read, on the JS thread.
struct Reading {
    channel: RefCell<WorkerChannel>,
    watch: RefCell<Option<ReadWatch>>,
}

/// The JS-thread half: the channels of one master, and its JS event callback.
pub struct JsThreadReader {
    env: napi::sys::napi_env,
    callback: Rc<JsCallback>,
    channels: Rc<RefCell<HashMap<WorkerId, Rc<Reading>>>>,
}

impl JsThreadReader {
    /// On the JS thread: `callback` is the master's JS event function (given JSON text).
    pub fn new(env: napi::sys::napi_env, callback: JsCallback) -> JsThreadReader {
        JsThreadReader {
            env,
            callback: Rc::new(callback),
            channels: Rc::default(),
        }
    }

    /// Applies an adopt or caught-up mark, on the JS thread, in its turn. Returns the event text of
    /// an event, for the caller to hand to JavaScript.
    pub fn apply(&self, item: ToJs) -> Option<String> {
        match item {
            ToJs::Event(text) => Some(text),
            ToJs::Adopt(channel) => {
                self.adopt(channel);
                None
            }
            ToJs::CaughtUp(mark) => {
                let id = mark.id();
                let reading = self.channels.borrow().get(&id).cloned();
                if let Some(reading) = reading {
                    let mut channel = reading.channel.borrow_mut();
                    channel.caught_up(mark, &mut |message: DirectMessage<'_>| {
                        self.callback
                            .call_with_str(&crate::master::direct_message_text(&message));
                    });
                    if channel.is_finished() {
                        self.channels.borrow_mut().remove(&id);
                    }
                }
                None
            }
        }
    }

    fn adopt(&self, channel: WorkerChannel) {
        let id = channel.id();
        let fd = channel.fd();
        let reading = Rc::new(Reading {
            channel: RefCell::new(channel),
            watch: RefCell::new(None),
        });
        let on_readable = {
            let reading = Rc::downgrade(&reading);
            let channels = Rc::downgrade(&self.channels);
            let callback = self.callback.clone();
            Box::new(move || -> bool {
                let Some(reading) = reading.upgrade() else {
                    return false;
                };
                // The JS callback cannot reach this channel (only the loop's own turns do), so the
                // borrow is free; should it ever not be, the next readable turn reads instead.
                let Ok(mut channel) = reading.channel.try_borrow_mut() else {
                    return true;
                };
                let open = channel.read_ready(&mut |message: DirectMessage<'_>| {
                    callback.call_with_str(&crate::master::direct_message_text(&message));
                });
                // Read to its end, it may still hold frames that wait for the actor: it stays
                // in the table for the marks that give them on.
                if channel.is_finished() {
                    if let Some(channels) = channels.upgrade() {
                        channels.borrow_mut().remove(&id);
                    }
                }
                open
            })
        };
        // Unreferenced: whether the loop stays alive is the master's decision (its thread-safe
        // function's reference), not its channels'.
        match ReadWatch::start(self.env, fd, false, on_readable) {
            Ok(watch) => {
                *reading.watch.borrow_mut() = Some(watch);
                self.channels.borrow_mut().insert(id, reading);
            }
            Err(e) => {
                // Without a watch nobody reads this worker: it cannot report STARTED, and its start
                // timeout fails it with a clear reason. Say why here too.
                eprintln!("drover: cannot watch the channel of worker {id} on the JS thread: {e}");
            }
        }
    }
}

impl Drop for JsThreadReader {
    fn drop(&mut self) {
        for (_, reading) in self.channels.borrow_mut().drain() {
            if let Some(watch) = reading.watch.borrow_mut().take() {
                watch.close();
            }
        }
    }
}
