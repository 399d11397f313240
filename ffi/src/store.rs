//! The master's shared store and single-flight cache from C (core's `store` and the built-in
//! `drover.store.*` / `drover.cache.*` handlers, PROTOCOL.md §5.6–5.7): typed calls for a worker's
//! bus and for the master's own program, over core's `BusSender::store_*`,
//! `BusSender::cache_get_or_load` and `Master::store`.
//!
//! Values cross as JSON text. Watches deliver their changes as DROVER_BUS_EVENT_KIND_STORE_CHANGED
//! events through the bus's event queue, as messages do. A cache loader is a C callback run on
//! the calling thread, outside drover's runtime, so it may itself call drover (read the store,
//! make requests) and take as long as its load timeout allows.

use std::ffi::{c_char, c_void, CString};
use std::sync::mpsc;
use std::time::Duration;

use drover_core::request::{RequestError, RequestErrorCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::bus::{drover_bus, BUSES};
use crate::error::{drover_result, Failure};
use crate::ffi::{ffi_body, owned_c_string, take_malloced, try_obj, try_out, try_str, UserData};
use crate::master::{drover_master, MASTERS};
use crate::request::json_or_null;

/// A value from C that must be there: JSON text, copied; NULL or text that is not JSON is an error
/// naming the parameter.
fn json_value(json: *const c_char, parameter: &str) -> Result<Value, Failure> {
    if json.is_null() {
        return Err(Failure::new(
            drover_result::NullArgument,
            format!("`{parameter}` is NULL"),
        ));
    }
    json_or_null(json, parameter)
}

/// C's time to live: 0 or negative is none (kept until deleted or overwritten).
fn ttl_from_ms(ttl_ms: i64) -> Option<Duration> {
    u64::try_from(ttl_ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

fn write_bool(out: *mut bool, value: bool) -> Result<(), Failure> {
    if !out.is_null() {
        try_out!(out).write(value);
    }
    Ok(())
}

/// The value at `path` (a dot path, e.g. "users.42.name"; "" is the whole tree) in the master's
/// store. On success `*out_value_json` receives it as JSON text ("null" when there is none),
/// owned by the caller and freed with `drover_string_free()`. DROVER_RESULT_INVALID_ARGUMENT for
/// a bad path (more than 32 segments, an empty one, one over 256 bytes); DROVER_RESULT_MASTER_GONE.
#[no_mangle]
pub extern "C" fn drover_bus_store_get(
    bus: *const drover_bus,
    path: *const c_char,
    out_value_json: *mut *mut c_char,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let path = try_str!(path);
        let out = try_out!(out_value_json);
        let value = state.runtime.block_on(state.sender.store_get(path))?;
        out.write(owned_c_string(&value.to_string()));
        Ok(())
    })
}

/// Puts `value_json` (JSON text, copied) at `path` in the master's store, creating the objects
/// above it, for `ttl_ms` milliseconds (0 or negative: until deleted or overwritten; a write
/// without a time to live clears the expiry of that path and of everything below it). Watchers of
/// the path, of a path below it or of one above it are told, in the order of the writes.
/// Returns once the master stored it. DROVER_RESULT_INVALID_ARGUMENT for a bad path, for text
/// that is not JSON, or for writing below a value that is not an object;
/// DROVER_RESULT_OVERLOADED past the store's bounds (64 MiB of JSON, 100,000 expiring paths);
/// DROVER_RESULT_MASTER_GONE.
#[no_mangle]
pub extern "C" fn drover_bus_store_set(
    bus: *const drover_bus,
    path: *const c_char,
    value_json: *const c_char,
    ttl_ms: i64,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let path = try_str!(path);
        let value = json_value(value_json, "value_json")?;
        Ok(state
            .runtime
            .block_on(state.sender.store_set(path, &value, ttl_from_ms(ttl_ms)))?)
    })
}

/// Removes the value at `path` (and everything below it). On success `*out_removed` (may be
/// NULL) says whether there was one. Errors as `drover_bus_store_get()`.
#[no_mangle]
pub extern "C" fn drover_bus_store_delete(
    bus: *const drover_bus,
    path: *const c_char,
    out_removed: *mut bool,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let path = try_str!(path);
        let removed = state.runtime.block_on(state.sender.store_delete(path))?;
        write_bool(out_removed, removed)
    })
}

/// Compare-and-set: puts `value_json` at `path` only if the value there equals `expected_json`
/// (NULL or "null": only if there is none), in one step no other writer can come between. On
/// success `*out_swapped` (may be NULL) says whether it was set. Errors as
/// `drover_bus_store_set()`.
#[no_mangle]
pub extern "C" fn drover_bus_store_cas(
    bus: *const drover_bus,
    path: *const c_char,
    expected_json: *const c_char,
    value_json: *const c_char,
    out_swapped: *mut bool,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let path = try_str!(path);
        let expected = json_or_null(expected_json, "expected_json")?;
        let value = json_value(value_json, "value_json")?;
        let swapped = state
            .runtime
            .block_on(state.sender.store_compare_and_set(path, &expected, &value))?;
        write_bool(out_swapped, swapped)
    })
}

/// The keys directly below `path` ("" for the top level), sorted: on success `*out_keys_json`
/// receives a JSON array of strings ("[]" for none), owned by the caller and freed with
/// `drover_string_free()`. Errors as `drover_bus_store_get()`.
#[no_mangle]
pub extern "C" fn drover_bus_store_keys(
    bus: *const drover_bus,
    path: *const c_char,
    out_keys_json: *mut *mut c_char,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let path = try_str!(path);
        let out = try_out!(out_keys_json);
        let keys = state.runtime.block_on(state.sender.store_keys(path))?;
        out.write(owned_c_string(&json!(keys).to_string()));
        Ok(())
    })
}

/// Watches `path`: from now on, each change at, below or above it (a write, a delete, an expiry)
/// comes as a DROVER_BUS_EVENT_KIND_STORE_CHANGED event, in the order the changes were made:
/// `watch` is the number written to `*out_watch`, `path` the path that changed, `data` its new
/// value as JSON ("null" when deleted or expired). At most 64 watches per worker and 4,096 per
/// master (DROVER_RESULT_OVERLOADED past them); they end with `drover_bus_store_unwatch()` or the
/// worker's process. DROVER_RESULT_INVALID_ARGUMENT for a bad path; DROVER_RESULT_MASTER_GONE.
#[no_mangle]
pub extern "C" fn drover_bus_store_watch(
    bus: *const drover_bus,
    path: *const c_char,
    out_watch: *mut u64,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let path = try_str!(path);
        let out = try_out!(out_watch);
        let watch = state.runtime.block_on(state.sender.store_watch(path))?;
        out.write(watch);
        Ok(())
    })
}

/// Ends the watch `watch` (from `drover_bus_store_watch()`): no change is told under it after
/// this returns. On success `*out_ended` (may be NULL) says whether it was one of this worker's
/// watches (false for an unknown or ended one). DROVER_RESULT_MASTER_GONE.
#[no_mangle]
pub extern "C" fn drover_bus_store_unwatch(bus: *const drover_bus, watch: u64, out_ended: *mut bool) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let ended = state.runtime.block_on(state.sender.store_unwatch(watch))?;
        write_bool(out_ended, ended)
    })
}

/// A cache loader: computes the value of `key` for `drover_bus_cache_get_or_load()`.
///
/// Returns the value as JSON text allocated with `malloc()` (drover frees it with `free()`), or
/// NULL when loading failed, then with `*out_error` set to a message allocated with `malloc()`
/// (or left NULL: "the loader failed"). Called on the thread that called
/// `drover_bus_cache_get_or_load()`, outside drover's runtime: it may call drover itself (read
/// the store, make requests), except to get the same key, which would wait for this very load
/// until its timeout. `user` is the pointer given with it; `key` is valid during the call.
pub type drover_cache_loader =
    Option<unsafe extern "C" fn(user: *mut c_void, key: *const c_char, out_error: *mut *mut c_char) -> *mut c_char>;

/// What the task asking the master tells the calling thread.
enum CacheStep {
    /// This caller must load the key now and answer through the sender.
    Load(oneshot::Sender<Result<Value, String>>),
    /// The call is over.
    Done(Result<Value, RequestError>),
}

/// How the C loader answered.
struct Loaded {
    outcome: Result<Value, String>,
    /// Whether it failed by returning text that is not JSON (the program's bug, told as such).
    not_json: bool,
}

fn call_loader(loader: drover_cache_loader, user: UserData, key: &CString) -> Loaded {
    let Some(loader) = loader else {
        return Loaded {
            outcome: Err("no loader".to_string()),
            not_json: false,
        };
    };
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: the loader is the program's function with the documented signature; `key` lives
    // for the call and `error` is a valid out-pointer.
    let text = unsafe { loader(user.0, key.as_ptr(), &mut error) };
    // SAFETY: per the callback's contract, both are NULL or `malloc`ed strings drover now owns.
    let (text, error) = unsafe { (take_malloced(text), take_malloced(error)) };
    match text {
        Some(text) => match serde_json::from_str(&text) {
            Ok(value) => Loaded {
                outcome: Ok(value),
                not_json: false,
            },
            Err(e) => Loaded {
                outcome: Err(format!("the loader's result for {key:?} is not valid JSON: {e}")),
                not_json: true,
            },
        },
        None => Loaded {
            outcome: Err(error.unwrap_or_else(|| "the loader failed".to_string())),
            not_json: false,
        },
    }
}

/// The value of `key` (1 to 1,024 bytes) in the cache every worker of the master shares, loaded
/// with `loader` when no one has loaded it: of all the callers that miss the key at once, in any
/// worker, exactly one runs its loader and the others wait for its value (single flight). With
/// `ttl_ms` > 0 the value is loaded again that long after it was filled.
///
/// On success `*out_value_json` receives the value as JSON text, owned by the caller and freed
/// with `drover_string_free()`. A loader that fails fails this call and every caller waiting for
/// it with DROVER_RESULT_HANDLER_FAILED and its message, and the key is forgotten: the next call
/// loads again; a loader that returns text that is not JSON fails them the same way, and this
/// call with DROVER_RESULT_INVALID_ARGUMENT. A loader must answer within 30 s (its waiters get
/// DROVER_RESULT_TIMEOUT otherwise). DROVER_RESULT_NULL_ARGUMENT for a NULL `loader`;
/// DROVER_RESULT_INVALID_ARGUMENT for a bad key; DROVER_RESULT_OVERLOADED past the cache's bounds
/// (100,000 keys, 64 MiB, 4,096 callers waiting on one key); DROVER_RESULT_MASTER_GONE.
#[no_mangle]
pub extern "C" fn drover_bus_cache_get_or_load(
    bus: *const drover_bus,
    key: *const c_char,
    ttl_ms: i64,
    loader: drover_cache_loader,
    user: *mut c_void,
    out_value_json: *mut *mut c_char,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let key_text = try_str!(key).to_string();
        if loader.is_none() {
            return Err(Failure::new(drover_result::NullArgument, "`loader` is NULL"));
        }
        let out = try_out!(out_value_json);
        let user = UserData(user);
        let key_c = crate::error::c_string_lossy(&key_text);
        // The core call runs on the bus's runtime; when it is this caller's turn to load, the
        // loader runs here, on the caller's thread, so it may call drover itself.
        let (steps, step) = mpsc::channel();
        let load_steps = steps.clone();
        let sender = state.sender.clone();
        let ttl = ttl_from_ms(ttl_ms);
        state.runtime.spawn(async move {
            let loader = move || async move {
                let (reply, answer) = oneshot::channel();
                if load_steps.send(CacheStep::Load(reply)).is_err() {
                    return Err("the caller stopped waiting".to_string());
                }
                answer
                    .await
                    .unwrap_or_else(|_| Err("the loader did not answer".to_string()))
            };
            let result = sender.cache_get_or_load(&key_text, ttl, loader).await;
            let _ = steps.send(CacheStep::Done(result));
        });
        let mut not_json = None;
        let result = loop {
            match step.recv() {
                Ok(CacheStep::Load(reply)) => {
                    let loaded = call_loader(loader, user, &key_c);
                    if loaded.not_json {
                        not_json = loaded.outcome.as_ref().err().cloned();
                    }
                    let _ = reply.send(loaded.outcome);
                }
                Ok(CacheStep::Done(result)) => break result,
                Err(_) => {
                    break Err(RequestError::new(
                        RequestErrorCode::MasterGone,
                        "the bus's runtime stopped before the cache answered",
                    ))
                }
            }
        };
        match (result, not_json) {
            (Err(_), Some(why)) => Err(Failure::new(drover_result::InvalidArgument, why)),
            (result, _) => {
                out.write(owned_c_string(&result?.to_string()));
                Ok(())
            }
        }
    })
}

/// One of the master's `drover.store.*` operations for its own program; changes are told to the
/// workers watching, from the master's runtime (hence the `enter`).
fn master_store(master: *const drover_master, op: &str, args: Value) -> Result<Value, Failure> {
    let state = try_obj!(MASTERS, master);
    let _runtime = state.runtime.enter();
    Ok(state.master.store(op, args)?)
}

/// The master's own program reads its store: as `drover_bus_store_get()`, without a round trip.
#[no_mangle]
pub extern "C" fn drover_master_store_get(
    master: *const drover_master,
    path: *const c_char,
    out_value_json: *mut *mut c_char,
) -> drover_result {
    ffi_body!({
        let path = try_str!(path);
        let out = try_out!(out_value_json);
        let value = master_store(master, "get", json!({ "path": path }))?;
        out.write(owned_c_string(&value.to_string()));
        Ok(())
    })
}

/// The master's own program writes its store: as `drover_bus_store_set()` (the workers watching
/// are told).
#[no_mangle]
pub extern "C" fn drover_master_store_set(
    master: *const drover_master,
    path: *const c_char,
    value_json: *const c_char,
    ttl_ms: i64,
) -> drover_result {
    ffi_body!({
        let path = try_str!(path);
        let value = json_value(value_json, "value_json")?;
        let ttl = ttl_from_ms(ttl_ms).map(|t| t.as_millis() as u64);
        master_store(master, "set", json!({ "path": path, "value": value, "ttl_ms": ttl }))?;
        Ok(())
    })
}

/// As `drover_bus_store_delete()`, for the master's own program.
#[no_mangle]
pub extern "C" fn drover_master_store_delete(
    master: *const drover_master,
    path: *const c_char,
    out_removed: *mut bool,
) -> drover_result {
    ffi_body!({
        let path = try_str!(path);
        let removed = master_store(master, "delete", json!({ "path": path }))?;
        write_bool(out_removed, removed.as_bool().unwrap_or(false))
    })
}

/// As `drover_bus_store_cas()`, for the master's own program.
#[no_mangle]
pub extern "C" fn drover_master_store_cas(
    master: *const drover_master,
    path: *const c_char,
    expected_json: *const c_char,
    value_json: *const c_char,
    out_swapped: *mut bool,
) -> drover_result {
    ffi_body!({
        let path = try_str!(path);
        let expected = json_or_null(expected_json, "expected_json")?;
        let value = json_value(value_json, "value_json")?;
        let swapped = master_store(
            master,
            "cas",
            json!({ "path": path, "expected": expected, "value": value }),
        )?;
        write_bool(out_swapped, swapped.as_bool().unwrap_or(false))
    })
}

/// As `drover_bus_store_keys()`, for the master's own program.
#[no_mangle]
pub extern "C" fn drover_master_store_keys(
    master: *const drover_master,
    path: *const c_char,
    out_keys_json: *mut *mut c_char,
) -> drover_result {
    ffi_body!({
        let path = try_str!(path);
        let out = try_out!(out_keys_json);
        let keys = master_store(master, "keys", json!({ "path": path }))?;
        out.write(owned_c_string(&keys.to_string()));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_of_zero_or_less_is_none() {
        assert_eq!(ttl_from_ms(0), None);
        assert_eq!(ttl_from_ms(-5), None);
        assert_eq!(ttl_from_ms(250), Some(Duration::from_millis(250)));
    }

    #[test]
    fn a_required_json_value_names_its_parameter() {
        let err = json_value(std::ptr::null(), "value_json").unwrap_err();
        assert_eq!(err.code, drover_result::NullArgument);
        assert!(err.message.contains("`value_json` is NULL"));
        let err = json_value(c"{x".as_ptr(), "value_json").unwrap_err();
        assert_eq!(err.code, drover_result::InvalidArgument);
        assert_eq!(json_value(c"[1]".as_ptr(), "v").unwrap(), json!([1]));
    }
}
