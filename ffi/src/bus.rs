//! `drover_bus`: a C worker's connection to its master (core's `MessageBus`).
//!
//! The bus owns a small tokio runtime (one thread, `drover-bus`) that reads commands, writes
//! frames and sends heartbeats when the master asks for them. Commands and messages from the
//! master go into a mailbox that `drover_bus_next_event` pops on the caller's thread; its eventfd
//! is the pollable fd.

use std::ffi::{c_char, c_int};
use std::os::fd::IntoRawFd;
use std::sync::Arc;

use drover_core::protocol::WorkerMeta;
use drover_core::{BusEvent, BusSender, ListenAddr, MessageBus, WorkerStatus};
use tokio::runtime::Runtime;

use crate::error::{drover_result, Failure};
use crate::ffi::{
    clear_event, ffi_body, new_runtime, owned_c_string, timeout_from_ms, try_obj, try_out, try_str, Registry, SizedOut,
    SizedStruct,
};
use crate::mailbox::Mailbox;

/// A worker's connection to its master, over the channel the master gave this process. Underneath:
/// drover's `MessageBus`, with one runtime thread.
///
/// Open it with `drover_bus_open()` (once per process), close it with `drover_bus_free()`. Every
/// function on a bus may be called from any thread; only `drover_bus_free()` must not race with
/// other calls on the same bus.
#[derive(Default)]
pub struct drover_bus {
    _private: u8,
}

/// What a `drover_bus_event` is.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum drover_bus_event_kind {
    /// Not an event (a zeroed or cleared `drover_bus_event`).
    None = 0,
    /// Stop taking new work, finish in-flight work, then `drover_bus_send_stopped()`.
    Stop = 1,
    /// Release everything, `drover_bus_send_shutted_down()`, and exit.
    Quit = 2,
    /// A message from the master: `data` is its JSON.
    Message = 3,
    /// The channel is closed: the master is gone (or broke the protocol; `text` then says how).
    /// Nothing follows; a worker usually exits.
    Closed = 4,
    /// A request for a handler this worker declared with `drover_bus_set_handlers()`:
    /// `request_id` names it, `name` is the handler, `from` the asking worker (0: the master),
    /// `data` the arguments as JSON. Answer it with `drover_bus_respond()`; one left unanswered
    /// fails at its asker with a timeout.
    Request = 5,
    /// A message another worker sent to this one (`drover_bus_send_to()`), routed by the
    /// master: `from` is the sender's id, `data` the message as JSON.
    WorkerMessage = 6,
    /// A change in the master's store under one of this worker's watches
    /// (`drover_bus_store_watch()`), told in the order the changes were made: `watch` is the
    /// watch, `path` the path that changed, `data` its new value as JSON ("null": deleted or
    /// expired).
    StoreChanged = 7,
    /// A connection the master accepted on a balanced socket (the master's `balance` is
    /// `round-robin` or `sticky`, or `reuseport` while a slot is without its worker) that this
    /// worker asked for with `drover_bus_listen()`, handed to
    /// this worker to serve: `fd` is the connected socket, the program's from here (close it when
    /// done; `drover_bus_event_clear()` does not); `data` the socket's bound address (the
    /// `out_local` of `drover_bus_listen()`); `text` the client's address (NULL for a Unix
    /// socket). (Added in 0.3 with `fd`: a program compiled with an older header gets none; such
    /// connections are closed.)
    Connection = 8,
    /// Who leads a leadership this worker joined (`drover_bus_leader_join()`), on joining and at
    /// each change (PROTOCOL.md §5.11): `name` is the key, `from` the leading worker's id (0:
    /// nobody leads for now), `request_id` the leadership's term (an event whose term is not
    /// above the last one seen for that key is stale), `data` the frame as JSON
    /// (`{"key","leader","term","you"}`: `you` true when this worker leads). A deposed leader
    /// (`from` no longer its id) releases what only the leader holds, then calls
    /// `drover_bus_leader_resign()`.
    Leader = 9,
    /// A new user config from the master (PROTOCOL.md §5.11): `data` is it as JSON,
    /// `request_id` its version. Apply it, then answer with `drover_bus_ack_reconfigure()`; one
    /// left unanswered is a timeout at the master.
    Reconfigure = 10,
}

/// One command or message from the master, filled in by `drover_bus_next_event()`. The strings
/// are owned by the event: release them with `drover_bus_event_clear()`.
///
/// Set `size` before the first `drover_bus_next_event()`:
/// `drover_bus_event event = { .size = sizeof(drover_bus_event) };`. Later versions of drover add
/// fields at the end, and `size` says which ones your program has; drover keeps it.
#[repr(C)]
#[derive(Debug)]
pub struct drover_bus_event {
    /// `sizeof(drover_bus_event)` as the program was compiled: set by the caller, kept by drover.
    pub size: usize,
    /// What it is.
    pub kind: drover_bus_event_kind,
    /// MESSAGE: the message as JSON text; NULL otherwise. Owned by the event.
    pub data: *mut c_char,
    /// CLOSED: the protocol error that closed the channel, NULL if the master just went away.
    /// NULL for other kinds. Owned by the event.
    pub text: *mut c_char,
    /// REQUEST: the number to answer it under, with `drover_bus_respond()`. (Added in 0.2, as
    /// `from` and `name`: a program compiled with an older header declares no handlers.)
    pub request_id: u64,
    /// REQUEST, WORKER_MESSAGE: the asking or sending worker's id (0: the master).
    pub from: u64,
    /// REQUEST: the handler's name. NULL for other kinds. Owned by the event.
    pub name: *mut c_char,
    /// STORE_CHANGED: the watch (from `drover_bus_store_watch()`). (Added in 0.3, as `path`: a
    /// program compiled with an older header watches nothing.)
    pub watch: u64,
    /// STORE_CHANGED: the path that changed. NULL for other kinds. Owned by the event.
    pub path: *mut c_char,
    /// CONNECTION: the connected socket, owned by the program; -1 for other kinds.
    pub fd: c_int,
}

pub(crate) struct BusState {
    pub(crate) sender: BusSender,
    meta: WorkerMeta,
    events: Arc<Mailbox<BusEvent>>,
    /// Requests handed to the program, waiting for `drover_bus_respond()`.
    pub(crate) unanswered: crate::request::Unanswered,
    /// The handlers declared to the master: the program's and its status functions.
    pub(crate) declared: Arc<crate::status::Declared>,
    /// Declared last: the reader and writer tasks end with it, closing the channel.
    pub(crate) runtime: Runtime,
}

impl Drop for BusState {
    fn drop(&mut self) {
        self.events.close();
    }
}

pub(crate) static BUSES: Registry<drover_bus, BusState> = Registry::new("drover_bus");

/// Opens the bus of this process: finds the channel the master gave it (`DROVER_IPC_FD`), makes
/// it close-on-exec, and does the hello/welcome handshake. Call it once, early; then report
/// STARTED with `drover_bus_send_started()` when ready to serve.
///
/// On success `*out_bus` receives the bus, closed and freed with `drover_bus_free()`.
/// DROVER_RESULT_NOT_A_WORKER when the process was not started by a drover master;
/// DROVER_RESULT_ALREADY_CONNECTED when the bus was opened already; DROVER_RESULT_PROTOCOL when
/// the master refuses us (e.g. another protocol version).
#[no_mangle]
pub extern "C" fn drover_bus_open(out_bus: *mut *mut drover_bus) -> drover_result {
    ffi_body!({
        let out = try_out!(out_bus);
        let runtime = new_runtime("drover-bus", 1)?;
        let events = Mailbox::for_c()?;
        let bus = runtime.block_on(MessageBus::connect())?;
        let sender = bus.sender();
        let meta = bus.meta().clone();
        let declared = Arc::new(crate::status::Declared::default());
        events.feed(
            &runtime,
            crate::status::BusSource {
                bus,
                declared: declared.clone(),
            },
        );
        out.write(BUSES.insert(BusState {
            sender,
            meta,
            events,
            unanswered: crate::request::Unanswered::default(),
            declared,
            runtime,
        }));
        Ok(())
    })
}

/// Closes the channel and frees the bus. NULL is a no-op; a bus freed already is
/// DROVER_RESULT_INVALID_OBJECT. A worker normally sends SHUTTED_DOWN first.
#[no_mangle]
pub extern "C" fn drover_bus_free(bus: *mut drover_bus) -> drover_result {
    ffi_body!({
        if let Some(state) = BUSES.remove(bus, "bus")? {
            state.events.close();
        }
        Ok(())
    })
}

fn send_status(bus: *const drover_bus, status: WorkerStatus) -> Result<(), Failure> {
    let state = try_obj!(BUSES, bus);
    Ok(state.runtime.block_on(state.sender.send_status(status))?)
}

/// Reports STARTED: the worker is ready to serve. Returns once written to the channel.
#[no_mangle]
pub extern "C" fn drover_bus_send_started(bus: *const drover_bus) -> drover_result {
    ffi_body!({ send_status(bus, WorkerStatus::Started) })
}

/// Reports STOPPED: no new work taken, in-flight work finished (the answer to a STOP).
#[no_mangle]
pub extern "C" fn drover_bus_send_stopped(bus: *const drover_bus) -> drover_result {
    ffi_body!({ send_status(bus, WorkerStatus::Stopped) })
}

/// Reports SHUTTED_DOWN: everything released (the answer to a QUIT); exit after this.
#[no_mangle]
pub extern "C" fn drover_bus_send_shutted_down(bus: *const drover_bus) -> drover_result {
    ffi_body!({ send_status(bus, WorkerStatus::ShuttedDown) })
}

/// Reports any status (a `drover_worker_status`: e.g. STARTING while bootstrapping, FAILED when
/// the worker cannot go on). The master checks it against the protocol's state machine.
/// DROVER_RESULT_INVALID_ARGUMENT for a number that is no status.
#[no_mangle]
pub extern "C" fn drover_bus_send_status(bus: *const drover_bus, status: u32) -> drover_result {
    ffi_body!({
        let status = u8::try_from(status)
            .ok()
            .and_then(WorkerStatus::from_code)
            .ok_or_else(|| {
                Failure::new(
                    drover_result::InvalidArgument,
                    format!("`status` must be a drover_worker_status (1..=8), got {status}"),
                )
            })?;
        send_status(bus, status)
    })
}

/// Sends a message (JSON text, copied) to the master, which reports it as a
/// DROVER_EVENT_KIND_MESSAGE event. DROVER_RESULT_INVALID_ARGUMENT if it is not JSON;
/// DROVER_RESULT_MESSAGE_REJECTED if it exceeds the frame limit; DROVER_RESULT_MASTER_GONE.
#[no_mangle]
pub extern "C" fn drover_bus_send_message(bus: *const drover_bus, json: *const c_char) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let data = crate::master::parse_message(try_str!(json))?;
        Ok(state.runtime.block_on(state.sender.send_message(&*data))?)
    })
}

/// Asks the master for a listening socket on `address` and waits for it, at most `timeout_ms`
/// milliseconds (negative: no limit). This is how a worker shares a port with the other workers
/// of its master, as Node's cluster workers do: the master binds the address once (or reuses the
/// socket it already holds for it, declared or asked for by another worker) and passes a copy of
/// it over the channel; every worker asking for the same address gets the same socket, and the
/// kernel hands each connection to one of them. The master keeps the socket open through
/// restarts and reloads, so no client is refused while workers come and go.
///
/// `address` is `host:port`, `[v6]:port`, a bare `port` or `:port` (all interfaces), `unix:/path`,
/// or a path starting with `/` or `./`; port 0 binds a free port, shared by every worker asking
/// for port 0 on that host.
///
/// On success `*out_fd` receives the socket, bound and listening, close-on-exec; it is the
/// caller's, to accept on and to close (closing it closes this worker's copy only). Its
/// O_NONBLOCK flag is shared with the master and the other workers that hold the socket: set it
/// if you accept after poll(), since another worker may take the connection first.
/// `*out_local` (may be NULL) receives the bound address, e.g. "127.0.0.1:41234", owned by the
/// caller and freed with `drover_string_free()`.
///
/// When the master balances the socket's connections itself (its config's `balance` is
/// `round-robin` or `sticky`, or the declared `listen` spec says so), do not accept on `*out_fd`
/// (close it): the connections this worker is to serve come as DROVER_BUS_EVENT_KIND_CONNECTION
/// events. With `reuseport`, `*out_fd` is this worker's own slot: accept on it, and serve the
/// DROVER_BUS_EVENT_KIND_CONNECTION events too (connections of a slot whose worker is away).
/// DROVER_RESULT_INVALID_ARGUMENT if `address` is no address; DROVER_RESULT_LISTEN_FAILED if
/// the master cannot bind it, with a message naming the address and the errno (e.g.
/// "cannot listen on 127.0.0.1:8080: Address already in use (os error 98) (EADDRINUSE)"); the
/// bus stays usable. DROVER_RESULT_TIMEOUT if no answer came in time (a socket arriving later is
/// closed); DROVER_RESULT_MASTER_GONE.
#[no_mangle]
pub extern "C" fn drover_bus_listen(
    bus: *const drover_bus,
    address: *const c_char,
    timeout_ms: i64,
    out_fd: *mut c_int,
    out_local: *mut *mut c_char,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let address = try_str!(address);
        let out_fd = try_out!(out_fd);
        // The master parses it too; checking here tells a malformed argument from a bind error.
        address
            .parse::<ListenAddr>()
            .map_err(|e| Failure::new(drover_result::InvalidArgument, format!("`address` is invalid: {e}")))?;
        let request = state.sender.listen(address);
        let answer = state.runtime.block_on(async {
            match timeout_from_ms(timeout_ms) {
                Some(limit) => tokio::time::timeout(limit, request).await.ok(),
                None => Some(request.await),
            }
        });
        let listening = answer.ok_or_else(|| {
            Failure::new(
                drover_result::Timeout,
                format!("the master did not answer the request to listen on {address} within {timeout_ms} ms"),
            )
        })??;
        let local = (!out_local.is_null()).then(|| owned_c_string(&listening.local));
        out_fd.write(listening.fd.into_raw_fd());
        if let Some(local) = local {
            try_out!(out_local).write(local);
        }
        Ok(())
    })
}

/// Takes the next command or message from the master, waiting up to `timeout_ms` milliseconds
/// (0: do not wait; negative: wait for ever). On success `*out_event` is overwritten (clear it
/// first) with an event the caller releases with `drover_bus_event_clear()`.
/// DROVER_RESULT_TIMEOUT if none came in time; DROVER_RESULT_CLOSED after the CLOSED event was
/// read.
#[no_mangle]
pub extern "C" fn drover_bus_next_event(
    bus: *const drover_bus,
    timeout_ms: i64,
    out_event: *mut drover_bus_event,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let out = SizedOut::new(out_event, "out_event")?;
        let event = state.events.next_for_c(
            timeout_ms,
            "nothing from the master",
            "the channel to the master is closed",
        )?;
        let fd_field = (std::mem::offset_of!(drover_bus_event, fd), std::mem::size_of::<c_int>());
        let c_event = match event {
            BusEvent::Request(request) => state.unanswered.hand_to_c(&state.runtime, request),
            // A program built before connections were handed over has nowhere to take the fd:
            // the connection is closed (dropped here) and the program skips a NONE event.
            BusEvent::Connection(_) if !out.has(fd_field.0, fd_field.1) => empty_bus_event(drover_bus_event_kind::None),
            event => bus_event_to_c(event),
        };
        out.write_owning(c_event, |e| [&mut e.data, &mut e.text, &mut e.name, &mut e.path]);
        Ok(())
    })
}

/// An event of `kind` with every other field empty.
pub(crate) fn empty_bus_event(kind: drover_bus_event_kind) -> drover_bus_event {
    drover_bus_event {
        size: std::mem::size_of::<drover_bus_event>(),
        kind,
        data: std::ptr::null_mut(),
        text: std::ptr::null_mut(),
        request_id: 0,
        from: 0,
        name: std::ptr::null_mut(),
        watch: 0,
        path: std::ptr::null_mut(),
        fd: -1,
    }
}

fn bus_event_to_c(event: BusEvent) -> drover_bus_event {
    let mut c = empty_bus_event(drover_bus_event_kind::None);
    match event {
        BusEvent::Stop => c.kind = drover_bus_event_kind::Stop,
        BusEvent::Quit => c.kind = drover_bus_event_kind::Quit,
        BusEvent::Message(data) => {
            c.kind = drover_bus_event_kind::Message;
            c.data = owned_c_string(&data.to_string());
        }
        BusEvent::WorkerMessage { from, data } => {
            c.kind = drover_bus_event_kind::WorkerMessage;
            c.from = from;
            c.data = owned_c_string(&data.to_string());
        }
        BusEvent::StoreChanged { watch, path, value } => {
            c.kind = drover_bus_event_kind::StoreChanged;
            c.watch = watch;
            c.path = owned_c_string(&path);
            c.data = owned_c_string(&value.to_string());
        }
        BusEvent::Connection(conn) => {
            if let Some(fd) = conn.take_fd() {
                c.kind = drover_bus_event_kind::Connection;
                c.fd = fd.into_raw_fd();
                c.data = owned_c_string(&conn.listener);
                c.text = conn.remote.as_deref().map_or(std::ptr::null_mut(), owned_c_string);
            }
        }
        BusEvent::Leader { key, leader, term, you } => {
            c.kind = drover_bus_event_kind::Leader;
            c.from = leader.unwrap_or(0);
            c.request_id = term;
            let frame = serde_json::json!({ "key": key, "leader": leader, "term": term, "you": you });
            c.data = owned_c_string(&frame.to_string());
            c.name = owned_c_string(&key);
        }
        BusEvent::Reconfigure(incoming) => {
            c.kind = drover_bus_event_kind::Reconfigure;
            c.request_id = incoming.version;
            c.data = owned_c_string(&incoming.config.to_string());
        }
        BusEvent::Closed(error) => {
            c.kind = drover_bus_event_kind::Closed;
            if let Some(error) = error {
                c.text = owned_c_string(&error.to_string());
            }
        }
        // A kind newer than this mapping: DROVER_BUS_EVENT_KIND_NONE, which a program skips.
        _ => {}
    }
    c
}

/// Writes to `*out_fd` a file descriptor that is readable exactly while commands or messages
/// wait to be read by `drover_bus_next_event()` (or once the channel is closed). Never read,
/// write or close it: it is owned by the bus.
#[no_mangle]
pub extern "C" fn drover_bus_event_fd(bus: *const drover_bus, out_fd: *mut c_int) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        try_out!(out_fd).write(state.events.fd());
        Ok(())
    })
}

/// Writes this worker's id (unique within its master, stable across restarts) to `*out_id`.
#[no_mangle]
pub extern "C" fn drover_bus_worker_id(bus: *const drover_bus, out_id: *mut u64) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        try_out!(out_id).write(state.meta.id);
        Ok(())
    })
}

/// Writes this worker's name to `*out_name`: its configured name (by instance index), else
/// "<group>-<id>"; requests and messages may address it as "name:NAME". The string is owned by the
/// caller and freed with `drover_string_free()`.
#[no_mangle]
pub extern "C" fn drover_bus_worker_name(bus: *const drover_bus, out_name: *mut *mut c_char) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        try_out!(out_name).write(owned_c_string(&state.meta.name));
        Ok(())
    })
}

/// Writes this worker's instance index in its group (0..count, as `DROVER_INSTANCE`) to
/// `*out_instance`: the place it fills, kept by a restarted or recycled worker.
#[no_mangle]
pub extern "C" fn drover_bus_worker_instance(bus: *const drover_bus, out_instance: *mut u32) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        try_out!(out_instance).write(state.meta.instance);
        Ok(())
    })
}

/// Writes the name of this worker's group (its master's name) to `*out_group`, owned by the
/// caller and freed with `drover_string_free()`.
#[no_mangle]
pub extern "C" fn drover_bus_worker_group(bus: *const drover_bus, out_group: *mut *mut c_char) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        try_out!(out_group).write(owned_c_string(&state.meta.group));
        Ok(())
    })
}

/// Writes to `*out_json` what the master said about this worker, as a JSON object: `id`, `name`,
/// `instance`, `group`, `config` (the master's user config, `drover_config_set_user_config_json()`),
/// `max_frame_bytes`, and `heartbeat_ms` when heartbeats are asked for. The string is owned by the
/// caller and freed with `drover_string_free()`.
#[no_mangle]
pub extern "C" fn drover_bus_meta_json(bus: *const drover_bus, out_json: *mut *mut c_char) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let out = try_out!(out_json);
        let json = serde_json::to_string(&state.meta)
            .map_err(|e| Failure::new(drover_result::Io, format!("cannot encode the worker's metadata: {e}")))?;
        out.write(owned_c_string(&json));
        Ok(())
    })
}

/// What `drover_bus_warm_up()` did. Set `size` before the call:
/// `drover_warmup_report report = { .size = sizeof(drover_warmup_report) };`. Later versions of
/// drover add fields at the end, and `size` says which ones your program has; drover keeps it.
#[repr(C)]
#[derive(Debug)]
pub struct drover_warmup_report {
    /// `sizeof(drover_warmup_report)` as the program was compiled: set by the caller, kept.
    pub size: usize,
    /// Whether the master asked for a warm-up; when false, nothing was sent and the other fields
    /// are zero.
    pub asked: bool,
    /// Whether the warm-up's timeout ended it before every request was answered.
    pub timed_out: bool,
    /// The status of the last answer; 0 if none came.
    pub last_status: u16,
    /// Requests asked for (the welcome's `requests`).
    pub requests: u32,
    /// Requests answered, with any status.
    pub done: u32,
    /// Answers whose status was not 2xx or 3xx (they do not end the warm-up).
    pub bad_statuses: u32,
    /// Answers of 1 MiB or more, cut there unread (docs/LIMITS.md); counted in `done`.
    pub cut: u32,
    /// How long the warm-up took, in milliseconds.
    pub elapsed_ms: u64,
    /// What ended the warm-up early (a failed request, the timeout), NULL if nothing did. Owned
    /// by the caller, freed with `drover_string_free()`.
    pub error: *mut c_char,
}

// SAFETY: `#[repr(C)]`, starts with `size: usize`, valid all-zero, no drop glue.
unsafe impl SizedStruct for drover_warmup_report {
    const C_NAME: &'static str = "drover_warmup_report";
    const MIN_SIZE: usize = std::mem::size_of::<drover_warmup_report>();
}

/// Does the warm-up the master asked for (PROTOCOL.md §5.11), if it did: `requests` GETs of
/// `path`, one after the other, each with the header `x-drover-warmup: N`, sent to `address`
/// ("127.0.0.1:PORT"), a private loopback listener the program's own HTTP server answers on
/// **from another thread** (this call blocks until the warm-up ends: at most its timeout, plus
/// one connect). Call it before taking the shared sockets and before
/// `drover_bus_send_started()`.
///
/// DROVER_RESULT_OK whether or not the warm-up was asked for (`out_report->asked`) or ended early
/// (`out_report->error`, also logged; the worker goes on). DROVER_RESULT_INVALID_ARGUMENT if
/// `address` is not an IP address with a port, or `out_report->size` is not set.
#[no_mangle]
pub extern "C" fn drover_bus_warm_up(
    bus: *const drover_bus,
    address: *const c_char,
    out_report: *mut drover_warmup_report,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let address = try_str!(address);
        let out = SizedOut::new(out_report, "out_report")?;
        let address: std::net::SocketAddr = address.parse().map_err(|e| {
            Failure::new(
                drover_result::InvalidArgument,
                format!("`address` must be IP:PORT (e.g. \"127.0.0.1:8081\"), got {address:?}: {e}"),
            )
        })?;
        let empty = drover_warmup_report {
            size: 0,
            asked: false,
            timed_out: false,
            last_status: 0,
            requests: 0,
            done: 0,
            bad_statuses: 0,
            cut: 0,
            elapsed_ms: 0,
            error: std::ptr::null_mut(),
        };
        let report = match drover_core::warmup::for_worker(&state.meta, address) {
            None => empty,
            Some(report) => drover_warmup_report {
                asked: true,
                timed_out: matches!(
                    report.ended_early,
                    Some(drover_core::warmup::WarmupError::TimedOut { .. })
                ),
                last_status: report.last_status.unwrap_or(0),
                requests: report.requests,
                done: report.done,
                bad_statuses: report.bad_statuses,
                cut: report.cut,
                elapsed_ms: u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
                error: report
                    .ended_early
                    .as_ref()
                    .map_or(std::ptr::null_mut(), |e| owned_c_string(&e.to_string())),
                ..empty
            },
        };
        out.write_owning(report, |r| [&mut r.error]);
        Ok(())
    })
}

/// Frees the strings of a bus event and zeroes it but for its `size`. NULL, zeroed and cleared
/// events are no-ops.
///
/// # Safety
/// `event` is NULL or points to a `drover_bus_event` that is zeroed or was filled by
/// `drover_bus_next_event()` and not cleared since.
#[no_mangle]
pub unsafe extern "C" fn drover_bus_event_clear(event: *mut drover_bus_event) {
    let strings = |e: *mut drover_bus_event| {
        // SAFETY: field addresses of the live event `clear_event` was given; nothing is read.
        unsafe {
            [
                std::ptr::addr_of_mut!((*e).data),
                std::ptr::addr_of_mut!((*e).text),
                std::ptr::addr_of_mut!((*e).name),
                std::ptr::addr_of_mut!((*e).path),
            ]
        }
    };
    // SAFETY: this function's contract is `clear_event`'s, and `data`, `text`, `name` and `path`
    // are the event's owned strings.
    unsafe { clear_event(event, strings) }
}

// SAFETY: `#[repr(C)]`, starts with `size: usize`, valid all-zero, no drop glue.
unsafe impl SizedStruct for drover_bus_event {
    const C_NAME: &'static str = "drover_bus_event";
    // Programs built before requests (0.1) end at `text`.
    const MIN_SIZE: usize = std::mem::offset_of!(drover_bus_event, request_id);
}
