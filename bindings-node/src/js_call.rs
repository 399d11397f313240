//! Calling a JS function from a libuv callback on the JS thread (see [`crate::uv`]).
//!
//! A libuv callback has no JS frame below it. A plain `napi_call_function` there would leave the
//! microtask queue (promise reactions, `process.nextTick`) unrun until something else happens to
//! run it, and an exception would have nowhere to go. `napi_make_callback` with an async context
//! is what Node's own streams do for a `'data'` event: it enters the callback scope, runs the
//! queues when the call returns, and ties the call to an async resource (async_hooks,
//! AsyncLocalStorage). A thrown exception goes to `napi_fatal_exception`, i.e. Node's
//! `'uncaughtException'` path, exactly like a throwing `'data'` listener.

use napi::sys;
use std::ffi::CStr;
use std::io::Write;
use std::ptr;

/// Writes one line to stderr, never panicking (unlike `eprintln!`): callers run under libuv.
fn warn(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "drover: {message}");
}

/// A JS function kept for calls from libuv callbacks.
///
/// It holds N-API handles of one environment, usable only on its JS thread: the type is `!Send`,
/// and must be dropped there too (`Drop` deletes the reference and destroys the async context).
pub struct JsCallback {
    env: sys::napi_env,
    func: sys::napi_ref,
    context: sys::napi_async_context,
    weak: bool,
}

impl JsCallback {
    /// On the JS thread: keeps `func`, strongly or `weak`ly (a collected function is then just
    /// skipped), with an async context named `resource_name` (e.g. `"drover.MessageBus"`).
    ///
    /// `env` and `func` are opaque N-API handles of the calling environment (napi-rs's `Env::raw()`
    /// and `JsValue::raw()`) that only N-API reads: a safe function, like napi-rs's own.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn new(env: sys::napi_env, func: sys::napi_value, resource_name: &str, weak: bool) -> napi::Result<JsCallback> {
        let mut kind = sys::ValueType::napi_undefined;
        // SAFETY: on `env`'s JS thread, with a value of that environment; the out pointer is valid.
        check(unsafe { sys::napi_typeof(env, func, &mut kind) }, "napi_typeof")?;
        if kind != sys::ValueType::napi_function {
            return Err(napi::Error::new(
                napi::Status::FunctionExpected,
                "drover: expected a function",
            ));
        }
        let mut name = ptr::null_mut();
        // SAFETY: as above; the pointer and length describe a valid UTF-8 string.
        let status = unsafe {
            sys::napi_create_string_utf8(
                env,
                resource_name.as_ptr().cast(),
                resource_name.len() as isize,
                &mut name,
            )
        };
        check(status, "napi_create_string_utf8")?;
        let mut context = ptr::null_mut();
        // SAFETY: as above; a null resource makes Node create an empty resource object.
        let status = unsafe { sys::napi_async_init(env, ptr::null_mut(), name, &mut context) };
        check(status, "napi_async_init")?;
        let mut func_ref = ptr::null_mut();
        // SAFETY: as above; a count of 0 makes the reference weak.
        let status = unsafe { sys::napi_create_reference(env, func, if weak { 0 } else { 1 }, &mut func_ref) };
        if let Err(e) = check(status, "napi_create_reference") {
            // SAFETY: the context was created just above and is destroyed once.
            unsafe { sys::napi_async_destroy(env, context) };
            return Err(e);
        }
        Ok(JsCallback {
            env,
            func: func_ref,
            context,
            weak,
        })
    }

    /// On the JS thread, from a libuv callback (outside any JS call): calls `func(text)` through
    /// `napi_make_callback`, inside a handle scope. An exception it throws is handed to Node's
    /// uncaught-exception path. Returns false if the function is gone (weak and collected).
    /// Failures are printed to stderr; this never panics.
    pub fn call_with_str(&self, text: &str) -> bool {
        let mut scope = ptr::null_mut();
        // SAFETY: on the environment's JS thread (`JsCallback` is `!Send`).
        let status = unsafe { sys::napi_open_handle_scope(self.env, &mut scope) };
        if status != sys::Status::napi_ok {
            self.warn_failed("napi_open_handle_scope", status);
            return true;
        }
        let alive = self.call_in_scope(text);
        // SAFETY: the scope opened above, closed once, after every value made in it is unused.
        let status = unsafe { sys::napi_close_handle_scope(self.env, scope) };
        if status != sys::Status::napi_ok {
            self.warn_failed("napi_close_handle_scope", status);
        }
        alive
    }

    fn call_in_scope(&self, text: &str) -> bool {
        let env = self.env;
        let mut func = ptr::null_mut();
        // SAFETY: on the JS thread, inside a handle scope; `self.func` is a live reference.
        let status = unsafe { sys::napi_get_reference_value(env, self.func, &mut func) };
        if status != sys::Status::napi_ok {
            self.warn_failed("napi_get_reference_value", status);
            return true;
        }
        if func.is_null() {
            if !self.weak {
                warn(format_args!("a strongly held callback has no value"));
            }
            return false;
        }
        let mut arg = ptr::null_mut();
        // SAFETY: as above; the pointer and length describe a valid UTF-8 string.
        let status = unsafe { sys::napi_create_string_utf8(env, text.as_ptr().cast(), text.len() as isize, &mut arg) };
        if status != sys::Status::napi_ok {
            self.warn_failed("napi_create_string_utf8", status);
            return true;
        }
        // `napi_make_callback` wants an object receiver (undefined is refused): the global, which
        // is what a sloppy-mode function sees for `this` when called plainly.
        let mut recv = ptr::null_mut();
        // SAFETY: as above.
        let status = unsafe { sys::napi_get_global(env, &mut recv) };
        if status != sys::Status::napi_ok {
            self.warn_failed("napi_get_global", status);
            return true;
        }
        let mut result = ptr::null_mut();
        // SAFETY: as above; `self.context` is live, `argv` points at `argc` values of this scope.
        let status = unsafe { sys::napi_make_callback(env, self.context, recv, func, 1, &arg, &mut result) };
        if status == sys::Status::napi_pending_exception {
            self.report_exception();
        } else if status != sys::Status::napi_ok {
            self.warn_failed("napi_make_callback", status);
        }
        true
    }

    /// Hands the pending exception to Node's uncaught-exception handling ('uncaughtException', or
    /// printing it and exiting), as a throwing listener of a Node stream would.
    fn report_exception(&self) {
        let mut pending = false;
        // SAFETY: on the JS thread; the out pointer is valid.
        let status = unsafe { sys::napi_is_exception_pending(self.env, &mut pending) };
        if status != sys::Status::napi_ok || !pending {
            // `napi_pending_exception` with no exception: JS can no longer run (the environment
            // is stopping); there is nothing to report.
            return;
        }
        let mut exception = ptr::null_mut();
        // SAFETY: as above, inside the caller's handle scope.
        let status = unsafe { sys::napi_get_and_clear_last_exception(self.env, &mut exception) };
        if status != sys::Status::napi_ok {
            self.warn_failed("napi_get_and_clear_last_exception", status);
            return;
        }
        // SAFETY: as above; `exception` is a value of this scope, and no exception is pending.
        let status = unsafe { sys::napi_fatal_exception(self.env, exception) };
        // `napi_pending_exception` here (none is pending: it was just cleared) means JS can no
        // longer run: a worker's `process.exit()` or `terminate()` ended the call. Nothing to say.
        if status != sys::Status::napi_ok && status != sys::Status::napi_pending_exception {
            self.warn_failed("napi_fatal_exception", status);
        }
    }

    /// Prints that `what` failed with `status`, with N-API's message for it.
    fn warn_failed(&self, what: &str, status: sys::napi_status) {
        let mut info: *const sys::napi_extended_error_info = ptr::null();
        // SAFETY: on the JS thread; right after the failing call, whose error this describes.
        let got = unsafe { sys::napi_get_last_error_info(self.env, &mut info) };
        let mut message = None;
        if got == sys::Status::napi_ok && !info.is_null() {
            // SAFETY: not null: the info is valid until the next N-API call.
            let text = unsafe { (*info).error_message };
            if !text.is_null() {
                // SAFETY: a NUL-terminated static string of Node's.
                message = Some(unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned());
            }
        }
        match message {
            Some(message) => warn(format_args!("{what} failed: {message} (status {status})")),
            None => warn(format_args!("{what} failed (status {status})")),
        }
    }
}

impl Drop for JsCallback {
    /// Valid only on the environment's JS thread, where `JsCallback` lives (it is `!Send`).
    fn drop(&mut self) {
        // SAFETY: on the JS thread; the reference and the context are live and released once.
        let status = unsafe { sys::napi_delete_reference(self.env, self.func) };
        if status != sys::Status::napi_ok {
            self.warn_failed("napi_delete_reference", status);
        }
        // SAFETY: as above.
        let status = unsafe { sys::napi_async_destroy(self.env, self.context) };
        if status != sys::Status::napi_ok {
            self.warn_failed("napi_async_destroy", status);
        }
    }
}

/// A JS error for a failed N-API `status` of `what`.
fn check(status: sys::napi_status, what: &str) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(
            napi::Status::from(status),
            format!("drover: {what} failed"),
        ))
    }
}
