//! # The C ABI of drover
//!
//! `libdrover.so` / `libdrover.a` and `include/drover.h` (generated from this crate by cbindgen;
//! the doc comments here are the header's comments, which are the C user's manual). It wraps the
//! `drover` core crate and re-implements nothing: every decision about processes, states,
//! timeouts and the protocol is core's.
//!
//! ## Layout
//! - [`error`]: the one result enum `drover_result`, the thread-local last error.
//! - [`ffi`]: the panic boundary, argument checks, the registry of live objects, runtimes.
//! - [`mailbox`]: the event queue with its pollable eventfd, shared by masters and buses.
//! - [`config`]: `drover_config`, a master's options (core's `MasterOptions`) built from C.
//! - [`master`]: `drover_master`, its events and worker snapshots.
//! - [`bus`]: `drover_bus`, a C worker's MessageBus.
//! - [`request`]: requests, handlers and worker-to-worker messages, for masters and buses.
//! - [`store`]: the master's shared store and single-flight cache, for buses and masters.
//! - [`status`]: application status, status functions, their gathering, the recycle predicate.
//!
//! ## Conventions (the header repeats them)
//! Every fallible function returns a `drover_result`; on failure `drover_last_error()` says what
//! was wrong. The object comes first, then inputs, then out-parameters, which are written only on
//! success. Objects are opaque, created by `drover_<noun>_new`/`_open` and freed by
//! `drover_<noun>_free`; a freed or foreign object pointer is reported, not dereferenced. Strings
//! passed in are copied; strings handed out say who frees them. No panic crosses into C.
//!
//! ## Threads
//! drover calls C code only where a C program gives it a callback: a cache loader (run on the
//! calling thread), a status function (on a bus thread) and a recycle predicate (on a master
//! thread); each callback's type says where it runs and what it may not do. Each master runs
//! two runtime threads (`drover-master`), each bus one (`drover-bus`), plus one process-wide
//! `drover-spawner` thread that forks every worker. Events wait in a queue until the program takes them on its own thread
//! with `drover_master_next_event()` / `drover_bus_next_event()`, or learns of them by polling
//! the fd from `drover_master_event_fd()` / `drover_bus_event_fd()`.

// No unwrap/expect outside tests: what a user or a worker controls is an error, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![allow(non_camel_case_types)]
// Every exported function takes raw pointers from C, whose validity is the contract stated in the
// header; making each one `unsafe fn` would change nothing for C callers (as in rustls-ffi).
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod bus;
pub mod config;
pub mod error;
mod ffi;
mod mailbox;
pub mod master;
pub mod reconfigure;
pub mod request;
pub mod status;
pub mod store;

use std::ffi::c_char;

pub use bus::{drover_bus, drover_bus_event, drover_bus_event_kind};
pub use config::{drover_config, drover_ready_source, drover_reload_strategy, drover_restart_policy};
pub use error::drover_result;
pub use master::{
    drover_event, drover_event_kind, drover_exit, drover_exit_kind, drover_listener, drover_master,
    drover_master_status, drover_signal_action, drover_worker_info, drover_worker_status,
};

/// The version of the C ABI this header declares: bumped on every incompatible change (a struct
/// reshaped, a function's parameters changed), together with the library's SONAME
/// (`libdrover.so.<DROVER_ABI_VERSION>`). Compare it with `drover_abi_version()` at start-up to
/// catch a program running against a library other than the one it was built for.
pub const DROVER_ABI_VERSION: u32 = 0;

/// The ABI version of the loaded library; a program built with this header expects
/// DROVER_ABI_VERSION: `if (drover_abi_version() != DROVER_ABI_VERSION) { ... }`.
#[no_mangle]
pub extern "C" fn drover_abi_version() -> u32 {
    DROVER_ABI_VERSION
}

/// The version of the library, e.g. "0.1.0" (compare with DROVER_VERSION from the header).
/// A static string: do not free it.
#[no_mangle]
pub extern "C" fn drover_version() -> *const c_char {
    const VERSION: &std::ffi::CStr =
        match std::ffi::CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// The name of a result code, e.g. "DROVER_RESULT_TIMEOUT" for DROVER_RESULT_TIMEOUT;
/// "DROVER_RESULT_UNKNOWN" for a number that is no code. A static string: do not free it.
#[no_mangle]
pub extern "C" fn drover_result_name(result: u32) -> *const c_char {
    error::drover_result::ALL
        .into_iter()
        .find(|code| *code as u32 == result)
        .map_or(c"DROVER_RESULT_UNKNOWN", |code| code.name())
        .as_ptr()
}

/// The message of the last failed drover call on this thread, naming what was wrong; "" if the
/// last call succeeded. Never NULL. Owned by drover: valid until the next drover call on this
/// thread (copy it to keep it); do not free it.
#[no_mangle]
pub extern "C" fn drover_last_error() -> *const c_char {
    error::last_error_ptr()
}

/// Frees a string drover handed to the caller as owned (e.g. from `drover_bus_meta_json()`).
/// NULL is a no-op. Never use it on strings documented as owned by drover or by an event.
///
/// # Safety
/// `s` is NULL or a string drover handed out as owned by the caller, not freed before.
#[no_mangle]
pub unsafe extern "C" fn drover_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: per the contract, `s` came from `CString::into_raw` and is freed once.
        drop(unsafe { std::ffi::CString::from_raw(s) });
    });
}

/// The protocol name of a worker status, e.g. "STARTED" for DROVER_WORKER_STATUS_STARTED;
/// "UNKNOWN" for a number that is no status. A static string: do not free it.
#[no_mangle]
pub extern "C" fn drover_worker_status_name(status: u32) -> *const c_char {
    let name = u8::try_from(status)
        .ok()
        .and_then(drover_core::WorkerStatus::from_code)
        .map_or("UNKNOWN", |s| s.name());
    static_c_str(name)
}

/// The name of a master status, e.g. "SHUT_DOWN"; "UNKNOWN" for a number that is no status.
/// A static string: do not free it.
#[no_mangle]
pub extern "C" fn drover_master_status_name(status: u32) -> *const c_char {
    let name = u8::try_from(status)
        .ok()
        .and_then(drover_core::MasterStatus::from_code)
        .map_or("UNKNOWN", |s| s.name());
    static_c_str(name)
}

/// drover's name of an exit kind: "NormalExit", "AbnormalExit", "ExternalSignal"; "None" for
/// DROVER_EXIT_KIND_NONE; "Unknown" otherwise. A static string: do not free it.
#[no_mangle]
pub extern "C" fn drover_exit_kind_name(kind: u32) -> *const c_char {
    match kind {
        0 => c"None".as_ptr(),
        kind => usize::try_from(kind)
            .ok()
            .and_then(|k| drover_core::ExitReason::KIND_NAMES.get(k.wrapping_sub(1)))
            .map_or(c"Unknown".as_ptr(), |name| static_c_str(name)),
    }
}

/// Core's status and exit kind names as static C strings (core's are Rust strings, without a NUL): made once,
/// never freed.
fn static_c_str(name: &str) -> *const c_char {
    static NAMES: std::sync::OnceLock<Vec<std::ffi::CString>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| {
        let workers = drover_core::WorkerStatus::ALL.map(|s| s.name());
        let masters = drover_core::MasterStatus::ALL.map(|s| s.name());
        let exits = drover_core::ExitReason::KIND_NAMES;
        workers
            .into_iter()
            .chain(masters)
            .chain(exits)
            .filter_map(|n| std::ffi::CString::new(n).ok())
            .collect()
    });
    names
        .iter()
        .find(|n| n.to_bytes() == name.as_bytes())
        .map_or(c"UNKNOWN".as_ptr(), |n| n.as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_core::ExitReason;

    fn read(p: *const c_char) -> &'static str {
        // SAFETY: the name functions return static NUL-terminated strings.
        unsafe { std::ffi::CStr::from_ptr(p) }.to_str().unwrap_or("")
    }

    #[test]
    fn status_names_are_cores() {
        for s in drover_core::WorkerStatus::ALL {
            assert_eq!(read(drover_worker_status_name(u32::from(s.code()))), s.name());
        }
        for s in drover_core::MasterStatus::ALL {
            assert_eq!(read(drover_master_status_name(u32::from(s.code()))), s.name());
        }
        assert_eq!(read(drover_worker_status_name(0)), "UNKNOWN");
        assert_eq!(read(drover_master_status_name(9)), "UNKNOWN");
    }

    #[test]
    fn exit_kind_names_are_cores_and_match_the_c_enum() {
        let reasons = [
            (ExitReason::NormalExit { code: 0 }, drover_exit_kind::NormalExit),
            (ExitReason::AbnormalExit { code: 3 }, drover_exit_kind::AbnormalExit),
            (
                ExitReason::ExternalSignal {
                    signal: 9,
                    core_dumped: false,
                },
                drover_exit_kind::ExternalSignal,
            ),
        ];
        for (reason, kind) in reasons {
            assert_eq!(kind as u32, u32::from(reason.kind_code()), "{reason:?}");
            assert_eq!(read(drover_exit_kind_name(kind as u32)), reason.kind_name());
        }
        assert_eq!(read(drover_exit_kind_name(0)), "None");
        assert_eq!(read(drover_exit_kind_name(4)), "Unknown");
        assert_eq!(read(drover_exit_kind_name(u32::MAX)), "Unknown");
    }
}
