//! The C face of reconfigure (PROTOCOL.md §5.11) and of the pre-start hook: a C master pushes a
//! new user config to its workers (`drover_master_reconfigure()`) and sets a hook run before its
//! first worker spawns (`drover_master_set_pre_start()`); a C worker reads the config as a
//! DROVER_BUS_EVENT_KIND_RECONFIGURE event and answers it with `drover_bus_ack_reconfigure()`.

use std::ffi::{c_char, c_int, c_void};

use crate::bus::BUSES;
use crate::error::{drover_result, Failure};
use crate::ffi::{ffi_body, owned_c_string, try_obj, try_out, try_str};
use crate::master::MASTERS;

/// A C pre-start hook: called with the `user_data` given to `drover_master_set_pre_start()`,
/// on a thread of drover's (not the caller's), before each start's first worker spawns. Return 0
/// to let the start go on; anything else fails it (DROVER_RESULT_PRE_START_FAILED, the number in
/// the message).
pub type drover_pre_start_fn = Option<unsafe extern "C" fn(user_data: *mut c_void) -> c_int>;

/// The hook's `user_data`, handed to drover's thread: the program promised, by setting the hook,
/// that it may be used there.
struct UserData(*mut c_void);
// SAFETY: only passed back to the program's own hook, which the documentation says runs on a
// thread of drover's.
unsafe impl Send for UserData {}
// SAFETY: as above; drover never dereferences it.
unsafe impl Sync for UserData {}

/// Pushes `config_json` (any JSON, copied: the workers' new user config) to every worker of the
/// master without restarting them, and waits up to `timeout_ms` milliseconds (negative: 10 s; at
/// most 600 s) for each one's answer. Workers spawned later get it in their welcome.
///
/// On success `*out_acks_json` (may be NULL) receives a JSON array, one object per worker:
/// `{"id", "name", "instance", "pid", "outcome"}` with `outcome` "applied", "refused" (then
/// `"error"` is the worker's reason), "timeout" or "gone"; owned by the caller, freed with
/// `drover_string_free()`. DROVER_RESULT_INVALID_ARGUMENT if `config_json` is not JSON;
/// DROVER_RESULT_RECONFIGURE_REJECTED if it is too large for one frame.
#[no_mangle]
pub extern "C" fn drover_master_reconfigure(
    master: *mut crate::master::drover_master,
    config_json: *const c_char,
    timeout_ms: i64,
    out_acks_json: *mut *mut c_char,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let config: serde_json::Value = serde_json::from_str(try_str!(config_json)).map_err(|e| {
            Failure::new(
                drover_result::InvalidArgument,
                format!("`config_json` is not valid JSON: {e}"),
            )
        })?;
        let timeout = crate::ffi::timeout_from_ms(timeout_ms)
            .unwrap_or(drover_core::master::reconfigure::DEFAULT_RECONFIGURE_TIMEOUT);
        let acks = state.runtime.block_on(state.master.reconfigure(config, timeout))?;
        if !out_acks_json.is_null() {
            let json = serde_json::Value::Array(acks.iter().map(|a| a.to_json()).collect());
            try_out!(out_acks_json).write(owned_c_string(&json.to_string()));
        }
        Ok(())
    })
}

/// Sets the master's pre-start hook (replacing any set before; NULL `hook` removes it): `hook`
/// runs with `user_data` before each start's first worker spawns, on a thread of drover's. A
/// non-zero return, or a hook still running at the start timeout, fails the start with
/// DROVER_RESULT_PRE_START_FAILED and spawns nothing (a hook that overruns keeps its thread
/// until it returns).
#[no_mangle]
pub extern "C" fn drover_master_set_pre_start(
    master: *mut crate::master::drover_master,
    hook: drover_pre_start_fn,
    user_data: *mut c_void,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let Some(hook) = hook else {
            state.master.pre_start(|| async { Ok(()) });
            return Ok(());
        };
        let user_data = std::sync::Arc::new(UserData(user_data));
        state.master.pre_start(move || {
            let user_data = user_data.clone();
            async move {
                // On the blocking pool: the program's code may block; a panic cannot come from C.
                let code = tokio::task::spawn_blocking(move || {
                    // SAFETY: the program's hook, called as its type says, with its own user_data.
                    unsafe { hook(user_data.0) }
                })
                .await
                .map_err(|e| format!("the C hook did not return: {e}"))?;
                if code == 0 {
                    Ok(())
                } else {
                    Err(format!("the C hook returned {code}"))
                }
            }
        });
        Ok(())
    })
}

/// Answers config `version` (a DROVER_BUS_EVENT_KIND_RECONFIGURE event's `request_id`):
/// `error_message` NULL when the worker applied it, else its reason for refusing it (copied; the
/// master cuts it to 1,024 bytes). Returns once the answer is written to the channel.
/// DROVER_RESULT_INVALID_ARGUMENT for version 0; DROVER_RESULT_MASTER_GONE.
#[no_mangle]
pub extern "C" fn drover_bus_ack_reconfigure(
    bus: *const crate::bus::drover_bus,
    version: u64,
    error_message: *const c_char,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        if version == 0 {
            return Err(Failure::new(
                drover_result::InvalidArgument,
                "`version` 0 is no config's: give the RECONFIGURE event's request_id",
            ));
        }
        let outcome = if error_message.is_null() {
            Ok(())
        } else {
            Err(try_str!(error_message).to_string())
        };
        Ok(state.runtime.block_on(state.sender.ack_reconfigure(version, outcome))?)
    })
}
