//! A libuv poll handle on Node's own loop: read a socket on the JS thread.
//!
//! Reading on a tokio thread and handing each message to JavaScript through a thread-safe
//! function costs a thread hop per message (a queue, a `uv_async_send` wake-up of the JS thread,
//! ~10-15 µs). Watching the fd with a `uv_poll_t` on the loop Node already runs removes the hop:
//! libuv tells the JS thread directly that the fd is readable, and the closure reads it there.
//!
//! libuv's functions are resolved at run time with `dlsym` rather than linked: Node exports them
//! from its executable, but the cdylib (and the test harness cargo links from the same crate)
//! must stay linkable where no libuv exists. Nothing about libuv's struct layouts is assumed:
//! the handle's size comes from `uv_handle_size`, its data pointer goes through
//! `uv_handle_set_data`/`uv_handle_get_data`.

use napi::sys;
use std::alloc::Layout;
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::io::Write;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::rc::Rc;
use std::sync::OnceLock;

/// `UV_POLL` in libuv's `uv_handle_type` (stable since libuv 1.0).
const UV_POLL: c_int = 8;
/// `UV_READABLE` in libuv's `uv_poll_event`.
const UV_READABLE: c_int = 1;
/// Alignment of the handle's memory: at least what `malloc` gives, which is all libuv expects.
const HANDLE_ALIGN: usize = 16;

type PollCb = unsafe extern "C" fn(handle: *mut c_void, status: c_int, events: c_int);
type CloseCb = unsafe extern "C" fn(handle: *mut c_void);
type HandleSizeFn = unsafe extern "C" fn(kind: c_int) -> usize;
type PollInitFn = unsafe extern "C" fn(event_loop: *mut c_void, handle: *mut c_void, fd: c_int) -> c_int;
type PollStartFn = unsafe extern "C" fn(handle: *mut c_void, events: c_int, cb: Option<PollCb>) -> c_int;
type PollStopFn = unsafe extern "C" fn(handle: *mut c_void) -> c_int;
type CloseFn = unsafe extern "C" fn(handle: *mut c_void, cb: Option<CloseCb>);
type HandleFn = unsafe extern "C" fn(handle: *mut c_void);
type SetDataFn = unsafe extern "C" fn(handle: *mut c_void, data: *mut c_void);
type GetDataFn = unsafe extern "C" fn(handle: *const c_void) -> *mut c_void;
type StrErrorFn = unsafe extern "C" fn(err: c_int) -> *const c_char;

/// The libuv functions this module calls, resolved once from the process (Node's executable).
struct Uv {
    handle_size: HandleSizeFn,
    poll_init: PollInitFn,
    poll_start: PollStartFn,
    poll_stop: PollStopFn,
    close: CloseFn,
    ref_: HandleFn,
    unref: HandleFn,
    handle_set_data: SetDataFn,
    handle_get_data: GetDataFn,
    strerror: StrErrorFn,
}

static UV: OnceLock<Result<Uv, String>> = OnceLock::new();

impl Uv {
    /// The functions, or why they are not there.
    fn get() -> napi::Result<&'static Uv> {
        match UV.get_or_init(Uv::resolve) {
            Ok(uv) => Ok(uv),
            Err(message) => Err(napi::Error::from_reason(message.clone())),
        }
    }

    /// The functions, in a callback: there they were resolved already (a handle exists).
    fn resolved() -> Option<&'static Uv> {
        UV.get().and_then(|uv| uv.as_ref().ok())
    }

    fn resolve() -> Result<Uv, String> {
        macro_rules! sym {
            ($name:literal, $ty:ty) => {{
                // SAFETY: `dlsym` with RTLD_DEFAULT and a NUL-terminated name only looks the name up
                // in the process's global symbols.
                let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, $name.as_ptr()) };
                if found.is_null() {
                    return Err(format!(
                        "drover: this Node does not export libuv's {}; the addon needs a Node that exports its libuv symbols (official builds do)",
                        $name.to_string_lossy()
                    ));
                }
                // SAFETY: the symbol is libuv's function of that name, and `$ty` is its C signature
                // (uv.h, unchanged across libuv 1.x); handle and loop pointers are passed as `void *`.
                unsafe { std::mem::transmute::<*mut c_void, $ty>(found) }
            }};
        }
        Ok(Uv {
            handle_size: sym!(c"uv_handle_size", HandleSizeFn),
            poll_init: sym!(c"uv_poll_init", PollInitFn),
            poll_start: sym!(c"uv_poll_start", PollStartFn),
            poll_stop: sym!(c"uv_poll_stop", PollStopFn),
            close: sym!(c"uv_close", CloseFn),
            ref_: sym!(c"uv_ref", HandleFn),
            unref: sym!(c"uv_unref", HandleFn),
            handle_set_data: sym!(c"uv_handle_set_data", SetDataFn),
            handle_get_data: sym!(c"uv_handle_get_data", GetDataFn),
            strerror: sym!(c"uv_strerror", StrErrorFn),
        })
    }

    /// A JS error for libuv error code `err` returned by `what`.
    fn error(&self, what: &str, err: c_int) -> napi::Error {
        // SAFETY: `uv_strerror` accepts any code and returns a static NUL-terminated string (or,
        // for an unknown code, a leaked one).
        let text = unsafe { (self.strerror)(err) };
        let text = if text.is_null() {
            format!("error {err}")
        } else {
            // SAFETY: not null, NUL-terminated, and never freed (see above).
            unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
        };
        napi::Error::from_reason(format!("drover: {what} failed: {text}"))
    }
}

/// Writes one line to stderr, never panicking (unlike `eprintln!`): callers run under libuv.
fn warn(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "drover: {message}");
}

/// What one watch shares between its `ReadWatch` values, the handle (its data pointer owns one
/// strong count, given back in the close callback) and the environment's cleanup hook.
struct Watch {
    env: sys::napi_env,
    /// The `uv_poll_t`'s memory; null once freed (in the close callback).
    handle: Cell<*mut c_void>,
    layout: Layout,
    /// Set when `uv_close` is called: from then on no uv function may touch the handle.
    closed: Cell<bool>,
    /// Whether the environment cleanup hook is registered (and has not run).
    hooked: Cell<bool>,
    on_readable: RefCell<Option<Box<dyn FnMut() -> bool>>>,
}

impl Watch {
    /// Stops and closes the handle, once; the close callback finishes the job.
    fn close(&self, uv: &Uv) {
        if self.closed.replace(true) {
            return;
        }
        let handle = self.handle.get();
        // SAFETY: on the loop's thread; the handle was initialized by `uv_poll_init` and `uv_close`
        // was not called on it yet (`closed` was false).
        unsafe {
            (uv.poll_stop)(handle);
            (uv.close)(handle, Some(on_close));
        }
    }

    /// Runs the closure; whether to keep watching. A panic is reported and ends the watch.
    fn run(&self) -> bool {
        // Never re-entered (libuv does not nest callbacks), but a failed borrow must not panic.
        let Ok(mut slot) = self.on_readable.try_borrow_mut() else {
            return true;
        };
        let Some(on_readable) = slot.as_mut() else {
            return false;
        };
        match catch_unwind(AssertUnwindSafe(on_readable)) {
            Ok(keep) => keep,
            Err(panic) => {
                warn(format_args!(
                    "a socket watch's callback panicked ({}); closing the watch",
                    crate::panic_message(&*panic)
                ));
                false
            }
        }
    }

    /// Drops the closure (and what it holds: JS references among them) now, unless it is running.
    fn drop_callback(&self) {
        let taken = match self.on_readable.try_borrow_mut() {
            Ok(mut slot) => slot.take(),
            Err(_) => None,
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(taken))) {
            warn(format_args!(
                "dropping a socket watch's callback panicked ({})",
                crate::panic_message(&*panic)
            ));
        }
    }
}

/// Watches an fd for readability on Node's loop, calling a closure on the JS thread.
///
/// The watch is tied to the JS thread (it is `!Send`). Dropping a `ReadWatch` does **not** end
/// the watch: it lives until its closure returns false or [`ReadWatch::close`] is called (or the
/// Node environment is torn down, which closes it and drops the closure while JS references can
/// still be released). So a `ReadWatch` is only a remote control, and may outlive the watch.
///
/// The fd must stay open while the watch is; once `close()` returned (or the closure returned
/// false) it may be closed at once: `uv_close` takes it out of the loop's poller synchronously.
/// `uv_poll_init` makes the fd non-blocking, and a loop can watch an fd only once (`EEXIST`).
pub struct ReadWatch {
    watch: Rc<Watch>,
}

impl ReadWatch {
    /// Watches `fd` on `env`'s loop. `on_readable` runs on the JS thread whenever the fd is
    /// readable (also on hang-up or error: it reads and finds EOF or the error itself) and returns
    /// whether to keep watching; after it returns false the watch is stopped and closed. On an
    /// error status libuv has already stopped the handle, so the watch is closed whatever the
    /// closure returns. A panic in the closure is printed to stderr and closes the watch.
    /// `referenced`: whether the watch keeps Node's loop alive.
    ///
    /// `env` is the calling environment's opaque N-API handle (napi-rs's `Env::raw()`) that only
    /// N-API reads: a safe function, like napi-rs's own.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn start(
        env: sys::napi_env,
        fd: RawFd,
        referenced: bool,
        on_readable: Box<dyn FnMut() -> bool>,
    ) -> napi::Result<ReadWatch> {
        let uv = Uv::get()?;
        let mut event_loop: *mut sys::uv_loop_s = ptr::null_mut();
        // SAFETY: `env` is the calling environment (we are on its JS thread); the out pointer is valid.
        let status = unsafe { sys::napi_get_uv_event_loop(env, &mut event_loop) };
        if status != sys::Status::napi_ok || event_loop.is_null() {
            return Err(napi::Error::new(
                napi::Status::from(status),
                "drover: cannot get Node's event loop (napi_get_uv_event_loop)",
            ));
        }
        // SAFETY: `uv_handle_size` only reads a table, for any handle type.
        let size = unsafe { (uv.handle_size)(UV_POLL) };
        let layout = Layout::from_size_align(size, HANDLE_ALIGN)
            .ok()
            .filter(|layout| layout.size() > 0)
            .ok_or_else(|| napi::Error::from_reason(format!("drover: libuv reports a poll handle of {size} bytes")))?;
        // SAFETY: the layout has a non-zero size.
        let handle = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<c_void>();
        if handle.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: `handle` is zeroed memory of the size libuv asked for, `event_loop` is Node's loop
        // and we are on its thread.
        let err = unsafe { (uv.poll_init)(event_loop.cast(), handle, fd) };
        if err != 0 {
            // SAFETY: a failed `uv_poll_init` leaves the handle unregistered, so the memory is ours
            // again; it was allocated above with this layout.
            unsafe { std::alloc::dealloc(handle.cast(), layout) };
            return Err(uv.error("uv_poll_init", err));
        }
        let watch = Rc::new(Watch {
            env,
            handle: Cell::new(handle),
            layout,
            closed: Cell::new(false),
            hooked: Cell::new(false),
            on_readable: RefCell::new(Some(on_readable)),
        });
        // From here the handle is initialized: every failure path goes through `close`.
        // SAFETY: an initialized handle, on the loop's thread; the data pointer owns one strong
        // count, given back in `on_close`.
        unsafe { (uv.handle_set_data)(handle, Rc::into_raw(Rc::clone(&watch)).cast_mut().cast()) };
        // SAFETY: `env` is valid on this thread; the argument stays valid until `on_close` removes
        // the hook (the handle's strong count keeps the `Watch` alive until then).
        let status =
            unsafe { sys::napi_add_env_cleanup_hook(env, Some(on_env_teardown), Rc::as_ptr(&watch).cast_mut().cast()) };
        if status != sys::Status::napi_ok {
            watch.close(uv);
            return Err(napi::Error::new(
                napi::Status::from(status),
                "drover: cannot register a socket watch's cleanup hook",
            ));
        }
        watch.hooked.set(true);
        if !referenced {
            // SAFETY: an initialized handle that is not closing, on the loop's thread.
            unsafe { (uv.unref)(handle) };
        }
        // SAFETY: as above; `on_poll` is the callback for this handle's data.
        let err = unsafe { (uv.poll_start)(handle, UV_READABLE, Some(on_poll)) };
        if err != 0 {
            watch.close(uv);
            return Err(uv.error("uv_poll_start", err));
        }
        Ok(ReadWatch { watch })
    }

    /// Whether the watch keeps Node's loop alive. Does nothing once the watch is closed.
    pub fn set_ref(&self, referenced: bool) {
        let Some(uv) = Uv::resolved() else { return };
        if self.watch.closed.get() {
            return;
        }
        let handle = self.watch.handle.get();
        // SAFETY: an initialized handle that is not closing (`closed` is false), on the loop's
        // thread (`ReadWatch` is `!Send`).
        unsafe {
            if referenced {
                (uv.ref_)(handle);
            } else {
                (uv.unref)(handle);
            }
        }
    }

    /// Whether the watch was closed (by its closure returning false, `close`, a panic, an error
    /// or the environment's teardown).
    pub fn is_closed(&self) -> bool {
        self.watch.closed.get()
    }

    /// Stops and closes the watch; idempotent. The closure is dropped later, in libuv's close
    /// callback (it may be running now: `close` may be called from inside it).
    pub fn close(&self) {
        if let Some(uv) = Uv::resolved() {
            self.watch.close(uv);
        }
    }
}

/// libuv's poll callback: the fd is readable (`status` 0) or in error (`status` < 0).
unsafe extern "C" fn on_poll(handle: *mut c_void, status: c_int, _events: c_int) {
    let Some(uv) = Uv::resolved() else { return };
    // SAFETY: `handle` is one of our poll handles, alive during its callback.
    let data = unsafe { (uv.handle_get_data)(handle) };
    if data.is_null() {
        return;
    }
    // SAFETY: the data pointer holds a strong count of the `Watch`, released only in `on_close`,
    // which cannot run during this callback.
    let watch = unsafe { &*data.cast::<Watch>() };
    if watch.closed.get() {
        return;
    }
    let keep = watch.run();
    if !keep || status < 0 {
        watch.close(uv);
    }
}

/// libuv's close callback: the handle is no longer libuv's. Frees it and drops the closure.
unsafe extern "C" fn on_close(handle: *mut c_void) {
    let Some(uv) = Uv::resolved() else { return };
    // SAFETY: `handle` is one of our poll handles, still valid during its close callback.
    let data = unsafe { (uv.handle_get_data)(handle) };
    if data.is_null() {
        return;
    }
    // SAFETY: takes back the strong count `start` gave the handle (`Rc::into_raw`), exactly once:
    // libuv calls the close callback once.
    let watch = unsafe { Rc::from_raw(data.cast::<Watch>().cast_const()) };
    if watch.hooked.replace(false) {
        // SAFETY: the hook was registered with these arguments on this environment, which is still
        // alive (its teardown would have run and unregistered the hook).
        let status = unsafe {
            sys::napi_remove_env_cleanup_hook(watch.env, Some(on_env_teardown), Rc::as_ptr(&watch).cast_mut().cast())
        };
        if status != sys::Status::napi_ok {
            warn(format_args!(
                "cannot remove a socket watch's cleanup hook (status {status})"
            ));
        }
    }
    watch.handle.set(ptr::null_mut());
    // SAFETY: libuv is done with the handle; it was allocated in `start` with this layout.
    unsafe { std::alloc::dealloc(handle.cast(), watch.layout) };
    watch.drop_callback();
}

/// The environment is being torn down (a worker thread ending, or Node exiting): close the watch,
/// so the loop has no open handle left (Node aborts a worker whose loop still has one), and drop
/// the closure now, while the JS references it may hold can still be released.
unsafe extern "C" fn on_env_teardown(arg: *mut c_void) {
    let Some(uv) = Uv::resolved() else { return };
    // SAFETY: `arg` is the `Watch` the handle holds a strong count of; `on_close` unregisters this
    // hook before giving that count back.
    let watch = unsafe { &*arg.cast::<Watch>().cast_const() };
    watch.hooked.set(false);
    watch.close(uv);
    watch.drop_callback();
}
