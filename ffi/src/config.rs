//! `drover_config`: a master's configuration, built field by field from C.
//!
//! Underneath it is core's `MasterOptions` (the same options Node and config files give), so every
//! check is core's: setters only store, `drover_master_new` validates, and its error names the
//! field (`startTimeout`, `count`, ...).

use std::ffi::c_char;
use std::sync::{Arc, Mutex, MutexGuard};

use drover_core::{MasterOptions, Millis, ReadySource, ReloadKind, RestartPolicy};
use serde_json::Value;

use crate::error::{drover_result, Failure};
use crate::ffi::{ffi_body, try_obj, try_out, try_str, Registry};

/// A master's configuration under construction. Underneath: drover's `MasterOptions`.
///
/// Create it with `drover_config_new()`, set fields, pass it to `drover_master_new()` (which
/// copies it: the config can be changed and used again), free it with `drover_config_free()`.
/// A config may be used from any thread; calls on one config are serialised.
#[derive(Default)]
pub struct drover_config {
    _private: u8,
}

/// What `drover_config_set_restart()` accepts: whether a worker that exited unasked is started
/// again (by the master, after the backoff delay).
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy)]
pub enum drover_restart_policy {
    /// Never (the default): the program decides in its event loop.
    Never = 1,
    /// After a crash: a non-zero exit code or a signal the master did not send. Not after exit(0).
    OnFailure = 2,
    /// After any exit the master did not ask for, exit(0) included.
    Always = 3,
}

/// What `drover_config_set_reload_strategy()` accepts: how a graceful reload replaces workers.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy)]
pub enum drover_reload_strategy {
    /// Start the whole new generation, then stop the old one (the default).
    AllAtOnce = 1,
    /// Replace `batch` workers at a time: start new ones, stop as many old ones once they are STARTED.
    Rolling = 2,
}

/// What `drover_config_set_ready()` accepts: how the master learns that a worker is ready
/// (STARTED), and how it asks a worker to stop.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy)]
pub enum drover_ready_source {
    /// The worker's MessageBus reports STARTED (`drover_bus_send_started()`); a graceful stop is
    /// STOP then QUIT. The default.
    Message = 1,
    /// systemd's notify protocol: the master sets `NOTIFY_SOCKET` and the worker sends `READY=1`
    /// (`sd_notify`); a graceful stop is SIGTERM, then SIGKILL after the stop timeout.
    Notify = 2,
    /// Node's IPC channel, as PM2 apps do: `process.send('ready')`; a graceful stop sends the
    /// message `'shutdown'`.
    NodeIpc = 3,
    /// STARTED as soon as the program is executed, for programs that speak nothing; a graceful
    /// stop is SIGTERM, then SIGKILL after the stop timeout.
    Spawn = 4,
}

pub(crate) type Config = Mutex<MasterOptions>;

pub(crate) static CONFIGS: Registry<drover_config, Config> = Registry::new("drover_config");

fn lock(config: &Arc<Config>) -> MutexGuard<'_, MasterOptions> {
    config.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `change` on the options of `config`.
fn edit(config: *mut drover_config, change: impl FnOnce(&mut MasterOptions)) -> Result<(), Failure> {
    let config = try_obj!(CONFIGS, config);
    change(&mut lock(&config));
    Ok(())
}

fn parse_json(text: &str, what: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| {
        Failure::new(
            drover_result::InvalidArgument,
            format!("`{what}` is not valid JSON: {e}"),
        )
    })
}

/// Creates an empty configuration: no program yet, every other field at drover's default (one
/// worker per CPU, start timeout 30 s, stop 10 s, quit 5 s, kill 5 s, restart never,
/// reload all-at-once).
///
/// On success `*out_config` receives a new config, freed with `drover_config_free()`.
#[no_mangle]
pub extern "C" fn drover_config_new(out_config: *mut *mut drover_config) -> drover_result {
    ffi_body!({
        let out = try_out!(out_config);
        out.write(CONFIGS.insert(Mutex::new(MasterOptions::default())));
        Ok(())
    })
}

/// Frees a config. NULL is a no-op. Masters created from it are not affected.
/// Returns DROVER_RESULT_INVALID_OBJECT if `config` was freed already.
#[no_mangle]
pub extern "C" fn drover_config_free(config: *mut drover_config) -> drover_result {
    ffi_body!({
        CONFIGS.remove(config, "config")?;
        Ok(())
    })
}

/// Sets the program every worker runs: a path, or a name looked up on PATH when the master is
/// created. The string is copied.
#[no_mangle]
pub extern "C" fn drover_config_set_program(config: *mut drover_config, program: *const c_char) -> drover_result {
    ffi_body!({
        let program = try_str!(program).to_owned();
        edit(config, |o| o.program = Some(program))
    })
}

/// Appends one argument to the program's arguments. The string is copied.
#[no_mangle]
pub extern "C" fn drover_config_add_arg(config: *mut drover_config, arg: *const c_char) -> drover_result {
    ffi_body!({
        let arg = try_str!(arg).to_owned();
        edit(config, |o| o.args.push(arg))
    })
}

/// Sets the number of workers (validated when the master is created: at least 1).
#[no_mangle]
pub extern "C" fn drover_config_set_count(config: *mut drover_config, count: i64) -> drover_result {
    ffi_body!({ edit(config, |o| o.count = Some(count)) })
}

/// Sets one environment variable for the workers, over the master's own environment. Both
/// strings are copied. Setting a key again replaces its value.
#[no_mangle]
pub extern "C" fn drover_config_set_env(
    config: *mut drover_config,
    key: *const c_char,
    value: *const c_char,
) -> drover_result {
    ffi_body!({
        let key = try_str!(key).to_owned();
        let value = try_str!(value).to_owned();
        edit(config, |o| {
            o.env.insert(key, Value::String(value));
        })
    })
}

/// Sets the workers' working directory (default: the master's). The string is copied.
#[no_mangle]
pub extern "C" fn drover_config_set_cwd(config: *mut drover_config, cwd: *const c_char) -> drover_result {
    ffi_body!({
        let cwd = try_str!(cwd).to_owned();
        edit(config, |o| o.cwd = Some(cwd))
    })
}

/// Sets the master's name (its group name in events and in each worker's metadata).
#[no_mangle]
pub extern "C" fn drover_config_set_name(config: *mut drover_config, name: *const c_char) -> drover_result {
    ffi_body!({
        let name = try_str!(name).to_owned();
        edit(config, |o| o.name = Some(name))
    })
}

/// Sets the user configuration handed to every worker in its welcome (any JSON text; a worker
/// reads it with `drover_bus_meta_json()`). DROVER_RESULT_INVALID_ARGUMENT if it is not JSON.
#[no_mangle]
pub extern "C" fn drover_config_set_user_config_json(config: *mut drover_config, json: *const c_char) -> drover_result {
    ffi_body!({
        let value = parse_json(try_str!(json), "json")?;
        edit(config, |o| o.config = value)
    })
}

/// Sets the milliseconds a worker has from spawn to report STARTED (default 30000).
/// Validated when the master is created: must be positive.
#[no_mangle]
pub extern "C" fn drover_config_set_start_timeout_ms(config: *mut drover_config, ms: i64) -> drover_result {
    ffi_body!({ edit(config, |o| o.start_timeout = Some(Millis::from(ms))) })
}

/// Sets the milliseconds a worker has from `stop` to report STOPPED (default 10000).
#[no_mangle]
pub extern "C" fn drover_config_set_stop_timeout_ms(config: *mut drover_config, ms: i64) -> drover_result {
    ffi_body!({ edit(config, |o| o.stop_timeout = Some(Millis::from(ms))) })
}

/// Sets the milliseconds a worker has from `quit` to exit (default 5000).
#[no_mangle]
pub extern "C" fn drover_config_set_quit_timeout_ms(config: *mut drover_config, ms: i64) -> drover_result {
    ffi_body!({ edit(config, |o| o.quit_timeout = Some(Millis::from(ms))) })
}

/// Sets the milliseconds from SIGTERM to SIGKILL (default 5000).
#[no_mangle]
pub extern "C" fn drover_config_set_kill_timeout_ms(config: *mut drover_config, ms: i64) -> drover_result {
    ffi_body!({ edit(config, |o| o.kill_timeout = Some(Millis::from(ms))) })
}

/// Sets the restart policy: one of `drover_restart_policy`. DROVER_RESULT_INVALID_ARGUMENT for
/// any other value.
#[no_mangle]
pub extern "C" fn drover_config_set_restart(config: *mut drover_config, policy: u32) -> drover_result {
    ffi_body!({
        let policy = match policy {
            1 => RestartPolicy::Never,
            2 => RestartPolicy::OnFailure,
            3 => RestartPolicy::Always,
            other => {
                return Err(Failure::new(
                    drover_result::InvalidArgument,
                    format!("`policy` must be a drover_restart_policy (1, 2 or 3), got {other}"),
                ))
            }
        };
        edit(config, |o| o.restart = Some(policy))
    })
}

/// Sets the delay before restarting a worker: `initial_ms` for the first restart, multiplied by
/// `factor` (>= 1) for each further one, at most `max_ms`. Validated when the master is created.
#[no_mangle]
pub extern "C" fn drover_config_set_restart_backoff(
    config: *mut drover_config,
    initial_ms: i64,
    factor: f64,
    max_ms: i64,
) -> drover_result {
    ffi_body!({
        edit(config, |o| {
            o.restart_delay = Some(Millis::from(initial_ms));
            o.restart_backoff_factor = Some(factor);
            o.restart_max_delay = Some(Millis::from(max_ms));
        })
    })
}

/// Sets the restart budget: more than `max_restarts` restarts within `window_ms`, and the master
/// stops restarting (a DROVER_EVENT_GAVE_UP event says so).
#[no_mangle]
pub extern "C" fn drover_config_set_max_restarts(
    config: *mut drover_config,
    max_restarts: i64,
    window_ms: i64,
) -> drover_result {
    ffi_body!({
        edit(config, |o| {
            o.max_restarts = Some(max_restarts);
            o.max_restarts_window = Some(Millis::from(window_ms));
        })
    })
}

/// Sets how a graceful reload replaces workers: one of `drover_reload_strategy`. `batch` is the
/// number of workers replaced at a time by DROVER_RELOAD_STRATEGY_ROLLING (0 means 1); it must
/// be 0 for DROVER_RELOAD_STRATEGY_ALL_AT_ONCE.
#[no_mangle]
pub extern "C" fn drover_config_set_reload_strategy(
    config: *mut drover_config,
    strategy: u32,
    batch: u32,
) -> drover_result {
    ffi_body!({
        let kind = match strategy {
            1 => ReloadKind::AllAtOnce,
            2 => ReloadKind::Rolling,
            other => {
                return Err(Failure::new(
                    drover_result::InvalidArgument,
                    format!("`strategy` must be a drover_reload_strategy (1 or 2), got {other}"),
                ))
            }
        };
        let batch = (batch > 0).then_some(i64::from(batch));
        edit(config, |o| {
            o.reload_strategy = Some(kind);
            o.reload_batch = batch;
        })
    })
}

/// Adds a listening socket the master binds before starting any worker and keeps open through
/// restarts and reloads: `ADDR` or `NAME=ADDR`, where ADDR is `host:port`, `[v6]:port`, a bare
/// `port` (all interfaces), `unix:/path` or a path starting with `/` or `./`. Port 0 picks a free
/// port; `drover_master_listeners()` tells which. Every worker inherits the sockets as systemd
/// passes them: fds 3, 4, ... in the order added, with `LISTEN_FDS`, `LISTEN_PID` (the worker's
/// own pid) and `LISTEN_FDNAMES` (NAME, or `listen<index>`). The string is copied; it is checked
/// when the master is created (DROVER_RESULT_INVALID_CONFIG naming `listen`), and a socket that
/// cannot be bound fails `drover_master_start()` with DROVER_RESULT_LISTEN_FAILED naming the
/// address and the errno.
#[no_mangle]
pub extern "C" fn drover_config_add_listen(config: *mut drover_config, spec: *const c_char) -> drover_result {
    ffi_body!({
        let spec = try_str!(spec).to_owned();
        edit(config, |o| o.listen.push(spec))
    })
}

/// Sets how the master learns that a worker is ready: one of `drover_ready_source` (default
/// DROVER_READY_SOURCE_MESSAGE). DROVER_RESULT_INVALID_ARGUMENT for any other value.
#[no_mangle]
pub extern "C" fn drover_config_set_ready(config: *mut drover_config, source: u32) -> drover_result {
    ffi_body!({
        let source = match source {
            1 => ReadySource::Message,
            2 => ReadySource::Notify,
            3 => ReadySource::NodeIpc,
            4 => ReadySource::Spawn,
            other => {
                return Err(Failure::new(
                    drover_result::InvalidArgument,
                    format!("`source` must be a drover_ready_source (1, 2, 3 or 4), got {other}"),
                ))
            }
        };
        edit(config, |o| o.ready = Some(source))
    })
}

/// Sets any options from a JSON object, by their drover names (camelCase, as in the Node API
/// and config files): e.g. `{"heartbeatInterval": 1000, "maxAge": 3600000, "onProtocolError":
/// "ignore"}`. Keys given replace earlier values; others are kept. An unknown key or a value of the
/// wrong type is DROVER_RESULT_INVALID_CONFIG naming it, and the config is left unchanged.
/// Ranges are checked when the master is created.
#[no_mangle]
pub extern "C" fn drover_config_set_json(config: *mut drover_config, json: *const c_char) -> drover_result {
    ffi_body!({
        let patch = parse_json(try_str!(json), "json")?;
        let Value::Object(patch) = patch else {
            return Err(Failure::new(
                drover_result::InvalidArgument,
                "`json` must be a JSON object of drover options",
            ));
        };
        let config = try_obj!(CONFIGS, config);
        let mut options = lock(&config);
        let mut merged = match serde_json::to_value(&*options) {
            Ok(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        merged.extend(patch);
        let next: MasterOptions = serde_json::from_value(Value::Object(merged))
            .map_err(|e| Failure::new(drover_result::InvalidConfig, format!("invalid configuration: {e}")))?;
        *options = next;
        Ok(())
    })
}

/// A copy of the options, for `drover_master_new`.
pub(crate) fn snapshot(config: *const drover_config, name: &str) -> Result<MasterOptions, Failure> {
    let config = CONFIGS.get(config, name)?;
    let options = lock(&config).clone();
    Ok(options)
}
