//! A master's configuration, validated before anything is spawned.
//!
//! Two ways in, one validation: build a [`MasterConfig`] in Rust, or deserialize [`MasterOptions`]
//! (what the Node and C faces and config files hand over, with millisecond timeouts that may be
//! negative on the way in) and call [`MasterOptions::into_config`]. Every error names the field.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::listen::{Balance, ListenSpec};
use crate::policy::{Backoff, Intensity, ReloadStrategy, RestartPolicy};
use crate::protocol::DEFAULT_MAX_FRAME_BYTES;
use crate::store::persist::{FsyncPolicy, PersistConfig, PersistError, MAX_COMPACT_LOG_BYTES, MIN_COMPACT_LOG_BYTES};
use crate::store::redis::RedisConfig;

mod units;
pub use units::{Bytes, Millis};

/// The most workers one master runs. Each worker costs a few fds and a task; a count past this is a
/// mistake (or an attack through `rescale`), refused before any allocation sized by it.
pub const MAX_WORKERS: usize = 10_000;

/// The longest timeout, interval or age any option takes: 10^12 ms (about 31.7 years). Far enough to
/// mean "never" in practice, near enough that `Instant::now() + d` cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(1_000_000_000);

/// The largest `max_frame_bytes`: one frame of this size may be buffered per worker and direction.
pub const MAX_FRAME_BYTES_LIMIT: usize = 64 * 1024 * 1024;

/// The largest `max_restarts` (the restart log keeps one timestamp per restart in the window).
pub const MAX_RESTARTS_LIMIT: u32 = 100_000;

/// What the master does when a worker breaks the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnProtocolError {
    /// Report the error, mark the worker FAILED and terminate it (default).
    #[default]
    Fail,
    /// Report the error, drop the frame and keep the worker.
    Ignore,
}

/// How the master learns that a worker is ready (STARTED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadySource {
    /// The worker's MessageBus reports STARTED (default).
    #[default]
    Message,
    /// systemd's notify protocol: the worker sends `READY=1` to `NOTIFY_SOCKET`.
    Notify,
    /// Node's IPC channel (`NODE_CHANNEL_FD`), as PM2 apps do: `process.send('ready')`; a graceful
    /// stop sends the message `'shutdown'`.
    NodeIpc,
    /// STARTED as soon as the program is executed, for programs that speak nothing.
    Spawn,
}

/// Which [`ReloadStrategy`] the `reloadStrategy` option names (its batch is `reloadBatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReloadKind {
    /// [`ReloadStrategy::AllAtOnce`].
    AllAtOnce,
    /// [`ReloadStrategy::Rolling`].
    Rolling,
}

/// The validated configuration of one master (one group of identical workers).
#[derive(Debug, Clone, PartialEq)]
pub struct MasterConfig {
    /// The master's name: its group name in logs, events and worker metadata.
    pub name: String,
    /// Names of the workers by instance index (clusterfy's named workers): the worker filling
    /// place `i` is called `names[i]`, the others `<group>-<id>`. A request or message may address
    /// a worker by name (`name:email`). Each 1–64 bytes of letters, digits, `-`, `_`, `.`; unique.
    pub names: Vec<String>,
    /// The program to run, resolved to a path at validation.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// How many workers.
    pub count: usize,
    /// Variables set for the workers, over the master's own environment.
    pub env: BTreeMap<String, String>,
    /// The workers' working directory (default: the master's).
    pub cwd: Option<PathBuf>,
    /// Arbitrary JSON handed to each worker in its welcome.
    pub user_config: Value,
    /// Timeouts and escalation.
    pub timeouts: Timeouts,
    /// The largest frame accepted from (and sent to) a worker.
    pub max_frame_bytes: usize,
    /// What a protocol error does to a worker.
    pub on_protocol_error: OnProtocolError,
    /// Whether and how crashed workers are restarted.
    pub restart: RestartPolicy,
    /// Delay between restarts of one worker.
    pub backoff: Backoff,
    /// The restart budget before the master gives up.
    pub intensity: Intensity,
    /// How a graceful reload replaces workers.
    pub reload: ReloadStrategy,
    /// Heartbeat interval asked of workers, and how long one may be missed before the worker is hung.
    pub heartbeat: Option<Heartbeat>,
    /// Recycling limits.
    pub recycle: Recycle,
    /// Sockets bound before the workers start and passed to each (systemd-style, fds 3...).
    pub listen: Vec<ListenSpec>,
    /// Who takes the connections of a socket whose spec does not say, and of the sockets workers
    /// ask for (`listen` frame, Node's `server.listen`): [`Balance::Shared`] by default (see there
    /// why).
    pub balance: Balance,
    /// How readiness is reported.
    pub ready: ReadySource,
    /// Pipe the workers' stdout and stderr to the master, to be read line by line from
    /// [`crate::Master::output`]. Off by default: the workers inherit the master's.
    pub capture_output: bool,
    /// Have each worker show itself as `drover: GROUP #INSTANCE` in `ps` (the welcome's `title`,
    /// which drover's worker libraries apply: Node's `process.title`, the comm of a Rust or C
    /// worker; PROTOCOL.md §5.11). Off by default: a library's user may match workers by their
    /// command line.
    pub process_title: bool,
    /// Have each worker warm itself up before it takes the shared sockets and reports STARTED
    /// (the welcome's `warmup`; PROTOCOL.md §5.11). None by default.
    pub warmup: Option<Warmup>,
    /// How long the workers (and a master whose runtime has [`crate::busy_poll::park_hook`] and
    /// reads its channels itself, with no [`crate::Master::set_channel_host`]) spin after IPC traffic before their event loop sleeps, to answer the next frame without a thread
    /// wake-up; zero (the default) never spins. Passed to workers in `DROVER_BUSY_POLL_US`; at most
    /// [`crate::busy_poll::MAX_WINDOW`]. Costs up to this much CPU per burst of traffic, none when idle.
    pub busy_poll: Duration,
    /// The shared store's options (PROTOCOL.md §5.6): by default in memory only.
    pub store: StoreConfig,
}

/// How the master keeps its shared store ([`MasterConfig::store`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreConfig {
    /// Persist it in a directory (snapshot and append-only log), so that a restarted master
    /// finds it again; `None` (the default): memory only.
    pub persist: Option<PersistConfig>,
    /// Keep it in Redis instead (PROTOCOL.md §5.6, "Redis backend"): the masters with the same
    /// server and prefix share one store and one cache. Not with `persist` (Redis keeps it).
    pub redis: Option<RedisConfig>,
}

/// Every deadline of a worker's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From spawn to STARTED.
    pub start: Duration,
    /// From `stop` to STOPPED.
    pub stop: Duration,
    /// From `quit` to the process's exit.
    pub quit: Duration,
    /// From SIGTERM to SIGKILL.
    pub kill: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            start: Duration::from_secs(30),
            stop: Duration::from_secs(10),
            quit: Duration::from_secs(5),
            kill: Duration::from_secs(5),
        }
    }
}

/// Liveness checking: the worker sends a heartbeat every `interval`; silence for longer than
/// `interval + tolerance` marks it hung and it is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// How often the worker's MessageBus sends a heartbeat.
    pub interval: Duration,
    /// Extra silence allowed before the worker counts as hung.
    pub tolerance: Duration,
}

/// Replace a worker (one at a time, successor first) when it gets too old or too big.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recycle {
    /// Replace a worker this long after it reported STARTED.
    pub max_age: Option<Duration>,
    /// Replace a worker whose resident memory exceeds this many bytes.
    pub max_rss_bytes: Option<u64>,
    /// How often resident memory is sampled (from `/proc`) when `max_rss_bytes` is set.
    pub check_interval: Duration,
}

/// A configuration that cannot be used, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Neither `program` nor `script`.
    #[error("`program` (or `script`) is required")]
    MissingProgram,
    /// Both `program` and `script`.
    #[error("give either `program` or `script`, not both")]
    ProgramAndScript,
    /// The program is not on PATH or not at the given path.
    #[error("`{field}`: {path} not found{}", if *.searched_path { " on PATH" } else { "" })]
    NotFound {
        /// `program`, `script` or `node`.
        field: &'static str,
        /// What was given.
        path: String,
        /// Whether PATH was searched.
        searched_path: bool,
    },
    /// The program exists but cannot be executed.
    #[error("`program`: {path} is not an executable file")]
    NotExecutable {
        /// The resolved path.
        path: String,
    },
    /// `count` is 0 (or negative from a face).
    #[error("`count` must be at least 1, got {value}")]
    InvalidCount {
        /// What was given.
        value: i64,
    },
    /// A timeout or interval that is negative, zero where not allowed, or too large.
    #[error("`{field}` must be a positive number of milliseconds, got {value}")]
    InvalidDuration {
        /// The field's name, e.g. `startTimeout`.
        field: &'static str,
        /// What was given.
        value: String,
    },
    /// `cwd` is not a directory.
    #[error("`cwd`: {path} is not a directory")]
    BadCwd {
        /// What was given.
        path: String,
    },
    /// A count, size or duration past its upper bound ([`MAX_WORKERS`], [`MAX_DURATION`]...).
    #[error("`{field}` must be at most {max}, got {value}")]
    TooLarge {
        /// The field's name, e.g. `count` or `stopTimeout`.
        field: &'static str,
        /// What was given.
        value: String,
        /// The bound.
        max: String,
    },
    /// Any other field with a value out of its range.
    #[error("`{field}`: {message}")]
    Invalid {
        /// The field's name.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The store's directory cannot be used: another master holds it, it cannot be read or
    /// written, or a file in it is damaged (named, with the offset).
    #[error("`store.persistDir`: {0}")]
    StorePersistence(#[from] PersistError),
}

impl MasterConfig {
    /// A config that runs `program` (a path, or a name looked up on PATH at validation).
    pub fn program(program: impl Into<PathBuf>) -> MasterConfig {
        MasterConfig {
            name: String::new(),
            names: Vec::new(),
            program: program.into(),
            args: Vec::new(),
            count: default_count(),
            env: BTreeMap::new(),
            cwd: None,
            user_config: Value::Null,
            timeouts: Timeouts::default(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            on_protocol_error: OnProtocolError::default(),
            restart: RestartPolicy::default(),
            backoff: Backoff::default(),
            intensity: Intensity::default(),
            reload: ReloadStrategy::default(),
            heartbeat: None,
            listen: Vec::new(),
            balance: Balance::Shared,
            ready: ReadySource::Message,
            recycle: Recycle {
                check_interval: Duration::from_secs(5),
                ..Recycle::default()
            },
            capture_output: false,
            process_title: false,
            warmup: None,
            busy_poll: Duration::ZERO,
            store: StoreConfig::default(),
        }
    }

    /// drover's `script` shorthand: run the JavaScript file `script` with `node` (from PATH).
    pub fn script(script: impl Into<PathBuf>) -> MasterConfig {
        let script = script.into();
        let mut config = MasterConfig::program("node");
        config.args.push(script.into_os_string());
        config
    }

    /// Whether the program is Node.js: its file name is `node` or `nodejs` (or `node` and a
    /// version, `node20`, `node-20.1`), as `script` runs. Such workers also get
    /// `NODE_APP_INSTANCE` (PROTOCOL.md §2.2); the `drover` command adds its preload to them.
    ///
    /// ```
    /// use drover::MasterConfig;
    /// assert!(MasterConfig::script("app.js").runs_node());
    /// assert!(MasterConfig::program("/usr/bin/nodejs").runs_node());
    /// assert!(!MasterConfig::program("nodemon").runs_node());
    /// ```
    pub fn runs_node(&self) -> bool {
        let Some(name) = self.program.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        match name.strip_prefix("node") {
            Some("js") => true,
            Some(version) => version.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-'),
            None => false,
        }
    }

    /// Appends an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> MasterConfig {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> MasterConfig {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets the number of workers.
    pub fn count(mut self, count: usize) -> MasterConfig {
        self.count = count;
        self
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> MasterConfig {
        self.name = name.into();
        self
    }

    /// Sets one environment variable for the workers.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> MasterConfig {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the workers' working directory.
    pub fn cwd(mut self, cwd: impl Into<PathBuf>) -> MasterConfig {
        self.cwd = Some(cwd.into());
        self
    }

    /// Sets the timeouts.
    pub fn timeouts(mut self, timeouts: Timeouts) -> MasterConfig {
        self.timeouts = timeouts;
        self
    }

    /// Adds a socket to listen on, e.g. `"0.0.0.0:8080"` or `"web=unix:/run/web.sock"`.
    pub fn listen(mut self, spec: ListenSpec) -> MasterConfig {
        self.listen.push(spec);
        self
    }

    /// Who takes the connections of sockets whose spec does not say and of those workers ask
    /// for: see [`Balance`].
    pub fn balance(mut self, balance: Balance) -> MasterConfig {
        self.balance = balance;
        self
    }

    /// Sets the readiness source.
    pub fn ready(mut self, ready: ReadySource) -> MasterConfig {
        self.ready = ready;
        self
    }

    /// Sets the busy-poll window (see [`MasterConfig::busy_poll`]).
    pub fn busy_poll(mut self, window: Duration) -> MasterConfig {
        self.busy_poll = window;
        self
    }

    /// Persists the shared store in `persist.dir` (see [`StoreConfig::persist`]).
    pub fn persist_store(mut self, persist: PersistConfig) -> MasterConfig {
        self.store.persist = Some(persist);
        self
    }

    /// Sets the restart policy.
    pub fn restart(mut self, restart: RestartPolicy) -> MasterConfig {
        self.restart = restart;
        self
    }

    /// Checks every field and resolves `program` to a path. Nothing is spawned.
    pub fn validate(mut self) -> Result<MasterConfig, ConfigError> {
        check_count("count", self.count)?;
        if self.program.as_os_str().is_empty() {
            return Err(ConfigError::MissingProgram);
        }
        let base = self.cwd.clone().unwrap_or_else(|| PathBuf::from("."));
        if let Some(cwd) = &self.cwd {
            if !cwd.is_dir() {
                return Err(ConfigError::BadCwd {
                    path: cwd.display().to_string(),
                });
            }
        }
        self.program = resolve_program(&self.program, &base)?;
        let t = self.timeouts;
        for (field, value) in [
            ("startTimeout", t.start),
            ("stopTimeout", t.stop),
            ("quitTimeout", t.quit),
            ("killTimeout", t.kill),
        ] {
            if value.is_zero() {
                return Err(ConfigError::InvalidDuration {
                    field,
                    value: "0".into(),
                });
            }
        }
        self.check_durations()?;
        if let Some(redis) = &mut self.store.redis {
            if self.store.persist.is_some() {
                return Err(ConfigError::Invalid {
                    field: "store.persistDir",
                    message: "is for the embedded store; the redis backend is kept by Redis".into(),
                });
            }
            if let Err(e) = ::redis::Client::open(redis.url.as_str()) {
                return Err(ConfigError::Invalid {
                    field: "store.url",
                    message: format!("{:?}: {e}", redis.url),
                });
            }
            if redis.prefix.is_empty() {
                redis.prefix = format!("drover:{}:", self.name);
            }
        }
        if let Some(persist) = &self.store.persist {
            if persist.dir.as_os_str().is_empty() {
                return Err(ConfigError::Invalid {
                    field: "store.persistDir",
                    message: "must name a directory".into(),
                });
            }
            if !(MIN_COMPACT_LOG_BYTES..=MAX_COMPACT_LOG_BYTES).contains(&persist.compact_log_bytes) {
                return Err(ConfigError::Invalid {
                    field: "store.compactLogBytes",
                    message: format!(
                        "must be {MIN_COMPACT_LOG_BYTES} to {MAX_COMPACT_LOG_BYTES}, got {}",
                        persist.compact_log_bytes
                    ),
                });
            }
        }
        if self.max_frame_bytes > MAX_FRAME_BYTES_LIMIT {
            return Err(ConfigError::TooLarge {
                field: "maxFrameBytes",
                value: self.max_frame_bytes.to_string(),
                max: MAX_FRAME_BYTES_LIMIT.to_string(),
            });
        }
        if self.max_frame_bytes < 1024 {
            return Err(ConfigError::Invalid {
                field: "maxFrameBytes",
                message: format!("must be at least 1024, got {}", self.max_frame_bytes),
            });
        }
        if self.busy_poll > crate::busy_poll::MAX_WINDOW {
            return Err(ConfigError::Invalid {
                field: "busyPollUs",
                message: format!(
                    "must be at most {} µs (a longer spin is a polling loop), got {} µs",
                    crate::busy_poll::MAX_WINDOW.as_micros(),
                    self.busy_poll.as_micros()
                ),
            });
        }
        // The user config travels in the welcome frame, which must fit in one frame.
        let config_bytes = serde_json::to_vec(&self.user_config)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if config_bytes.saturating_add(WELCOME_OVERHEAD) > self.max_frame_bytes {
            return Err(ConfigError::Invalid {
                field: "config",
                message: format!(
                    "{config_bytes} bytes of JSON do not fit in a frame of maxFrameBytes {} (with {WELCOME_OVERHEAD} bytes for the welcome)",
                    self.max_frame_bytes
                ),
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in &self.names {
            let valid = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid {
                return Err(ConfigError::Invalid {
                    field: "names",
                    message: format!("{name:?}: 1 to 64 letters, digits, '-', '_' or '.'"),
                });
            }
            if !seen.insert(name) {
                return Err(ConfigError::Invalid {
                    field: "names",
                    message: format!("{name:?} is given twice"),
                });
            }
        }
        if self.names.len() > MAX_WORKERS {
            return Err(ConfigError::TooLarge {
                field: "names",
                value: self.names.len().to_string(),
                max: MAX_WORKERS.to_string(),
            });
        }
        if self.name.len() > 200 {
            return Err(ConfigError::Invalid {
                field: "name",
                message: "at most 200 bytes".into(),
            });
        }
        if self.name.is_empty() {
            self.name = self
                .args
                .first()
                .filter(|_| self.program.file_name().is_some_and(|n| n == "node"))
                .map(|script| {
                    Path::new(script)
                        .file_stem()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                })
                .unwrap_or_else(|| {
                    self.program
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                });
        }
        self.backoff.validate()?;
        self.intensity.validate()?;
        self.reload.validate()?;
        if let Some(hb) = self.heartbeat {
            if hb.interval.is_zero() {
                return Err(ConfigError::InvalidDuration {
                    field: "heartbeatInterval",
                    value: "0".into(),
                });
            }
        }
        if self.recycle.max_rss_bytes.is_some() && self.recycle.check_interval.is_zero() {
            return Err(ConfigError::InvalidDuration {
                field: "memoryCheckInterval",
                value: "0".into(),
            });
        }
        Ok(self)
    }

    /// Every duration at most [`MAX_DURATION`]: a Rust caller may hand `Duration::MAX`, which would
    /// overflow the first `Instant + d`.
    fn check_durations(&self) -> Result<(), ConfigError> {
        let t = self.timeouts;
        let b = self.backoff;
        let mut all = vec![
            ("startTimeout", t.start),
            ("stopTimeout", t.stop),
            ("quitTimeout", t.quit),
            ("killTimeout", t.kill),
            ("restartDelay", b.initial),
            ("restartMaxDelay", b.max),
            ("restartResetAfter", b.reset_after),
            ("maxRestartsWindow", self.intensity.window),
            ("memoryCheckInterval", self.recycle.check_interval),
        ];
        if let Some(age) = self.recycle.max_age {
            all.push(("maxAge", age));
        }
        if let Some(hb) = self.heartbeat {
            all.push(("heartbeatInterval", hb.interval));
            all.push(("heartbeatTolerance", hb.tolerance));
        }
        match all.into_iter().find(|(_, d)| *d > MAX_DURATION) {
            Some((field, d)) => Err(ConfigError::TooLarge {
                field,
                value: format!("{} ms", d.as_millis()),
                max: format!("{} ms", MAX_DURATION.as_millis()),
            }),
            None => Ok(()),
        }
    }
}

/// A worker count in `1..=MAX_WORKERS`, for the config and for every operation that takes one.
pub fn check_count(field: &'static str, count: usize) -> Result<(), ConfigError> {
    if count == 0 {
        return Err(ConfigError::InvalidCount { value: 0 });
    }
    if count > MAX_WORKERS {
        return Err(ConfigError::TooLarge {
            field,
            value: count.to_string(),
            max: MAX_WORKERS.to_string(),
        });
    }
    Ok(())
}

/// Room kept in the welcome frame for everything but the user config (names are bounded above).
const WELCOME_OVERHEAD: usize = 1024;

fn default_count() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Resolves `program` as `execvp` would: a name without `/` is looked up on PATH; a relative path is
/// taken from `base` (the workers' cwd).
fn resolve_program(program: &Path, base: &Path) -> Result<PathBuf, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let is_executable = |p: &Path| p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let shown = program.display().to_string();
    if program.components().count() > 1 || program.is_absolute() {
        // Absolute, so the exec finds it whatever the worker's cwd (the child changes to it first).
        let joined = if program.is_absolute() {
            program.to_path_buf()
        } else {
            base.join(program)
        };
        let candidate = std::path::absolute(&joined).unwrap_or(joined);
        return match is_executable(&candidate) {
            Ok(true) => Ok(candidate),
            Ok(false) => Err(ConfigError::NotExecutable {
                path: candidate.display().to_string(),
            }),
            Err(_) => Err(ConfigError::NotFound {
                field: "program",
                path: shown,
                searched_path: false,
            }),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| matches!(is_executable(candidate), Ok(true)))
        .ok_or(ConfigError::NotFound {
            field: "program",
            path: shown,
            searched_path: true,
        })
}

/// A master's options as the Node and C faces and config files give them: every field optional,
/// camelCase, durations as [`Millis`] and sizes as [`Bytes`] (numbers in ms and bytes, or strings with
/// units), kept as given until [`MasterOptions::into_config`] checks them and names the field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MasterOptions {
    /// A JavaScript file run with `node` (drover's option).
    pub script: Option<String>,
    /// The node binary for `script` (default: `node` on PATH).
    pub node: Option<String>,
    /// A program to run (instead of `script`).
    pub program: Option<String>,
    /// Arguments of `program` (or extra arguments after `script`).
    #[serde(default)]
    pub args: Vec<String>,
    /// Number of workers (default: number of CPUs).
    pub count: Option<i64>,
    /// Environment over the master's. Numbers and booleans are accepted and stringified.
    #[serde(default)]
    pub env: BTreeMap<String, Value>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Name of the master.
    pub name: Option<String>,
    /// User config handed to each worker.
    #[serde(default)]
    pub config: Value,
    /// From spawn to STARTED (a [`Millis`]: milliseconds, or `"30s"`).
    pub start_timeout: Option<Millis>,
    /// From `stop` to STOPPED ([`Millis`]).
    pub stop_timeout: Option<Millis>,
    /// From `quit` to exit ([`Millis`]).
    pub quit_timeout: Option<Millis>,
    /// From SIGTERM to SIGKILL ([`Millis`]).
    pub kill_timeout: Option<Millis>,
    /// Largest frame in bytes.
    pub max_frame_bytes: Option<i64>,
    /// Busy-poll window after IPC traffic, in microseconds (0, the default: never spin).
    pub busy_poll_us: Option<f64>,
    /// `fail` (default) or `ignore`.
    pub on_protocol_error: Option<OnProtocolError>,
    /// `never` (default), `on-failure` or `always`.
    pub restart: Option<RestartPolicy>,
    /// First restart delay ([`Millis`]).
    pub restart_delay: Option<Millis>,
    /// Backoff factor.
    pub restart_backoff_factor: Option<f64>,
    /// Largest restart delay ([`Millis`]).
    pub restart_max_delay: Option<Millis>,
    /// Uptime after which the backoff resets ([`Millis`]).
    pub restart_reset_after: Option<Millis>,
    /// At most this many restarts ...
    pub max_restarts: Option<i64>,
    /// ... within this window ([`Millis`]).
    pub max_restarts_window: Option<Millis>,
    /// `all-at-once` (default) or `rolling`.
    pub reload_strategy: Option<ReloadKind>,
    /// Workers replaced at a time by a rolling reload.
    pub reload_batch: Option<i64>,
    /// Heartbeat interval ([`Millis`]).
    pub heartbeat_interval: Option<Millis>,
    /// Missed-heartbeat tolerance ([`Millis`]).
    pub heartbeat_tolerance: Option<Millis>,
    /// Recycle a worker this long after STARTED ([`Millis`]).
    pub max_age: Option<Millis>,
    /// Recycle a worker above this resident memory (a [`Bytes`]: bytes, or `"150MiB"`).
    pub max_memory_bytes: Option<Bytes>,
    /// Memory sampling interval ([`Millis`]).
    pub memory_check_interval: Option<Millis>,
    /// Addresses to listen on, passed to every worker (`ADDR` or `NAME=ADDR`, optionally
    /// followed by `,balance=MODE`).
    #[serde(default)]
    pub listen: Vec<String>,
    /// `shared` (default), `round-robin`, `sticky` or `reuseport`: who takes the connections of sockets whose
    /// spec does not say and of those workers ask for ([`MasterConfig::balance`]).
    pub balance: Option<Balance>,
    /// Worker names by instance index ([`MasterConfig::names`]).
    #[serde(default)]
    pub names: Vec<String>,
    /// `message` (default), `notify`, `node-ipc` or `spawn`.
    pub ready: Option<ReadySource>,
    /// Workers show themselves as `drover: GROUP #INSTANCE` ([`MasterConfig::process_title`]).
    pub process_title: Option<bool>,
    /// A warm-up before a worker takes traffic ([`MasterConfig::warmup`]).
    pub warmup: Option<WarmupOptions>,
    /// The shared store's options ([`StoreOptions`]).
    pub store: Option<StoreOptions>,
}

/// The `store` option ([`MasterConfig::store`]): `{"persistDir": "/var/lib/app/store", "fsync":
/// "always"}` (in drover.toml, a `[groups.NAME.store]` table).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreOptions {
    /// `embedded` (default: in the master) or `redis`.
    pub backend: Option<StoreBackendKind>,
    /// With `backend: "redis"`: the server, `redis://host:port/db`.
    pub url: Option<String>,
    /// With `backend: "redis"`: put before every key and channel (default `drover:NAME:`).
    pub prefix: Option<String>,
    /// Persist the store in this directory (relative: to the master's working directory).
    pub persist_dir: Option<String>,
    /// `always` (default), `everysec` or `never` ([`FsyncPolicy`]).
    pub fsync: Option<FsyncPolicy>,
    /// Compact the log into a new snapshot past this many bytes (a [`Bytes`]; default 16 MiB).
    pub compact_log_bytes: Option<Bytes>,
}

/// Where the store is kept ([`StoreOptions::backend`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreBackendKind {
    /// In the master (default), optionally persisted.
    Embedded,
    /// In a Redis server several masters share.
    Redis,
}

impl StoreOptions {
    fn into_config(self) -> Result<StoreConfig, ConfigError> {
        if self.backend == Some(StoreBackendKind::Redis) {
            let Some(url) = self.url else {
                return Err(ConfigError::Invalid {
                    field: "store.url",
                    message: "the redis backend needs a `url`".into(),
                });
            };
            if self.persist_dir.is_some() || self.fsync.is_some() || self.compact_log_bytes.is_some() {
                return Err(ConfigError::Invalid {
                    field: "store",
                    message: "`persistDir`, `fsync` and `compactLogBytes` are for the embedded backend".into(),
                });
            }
            return Ok(StoreConfig {
                persist: None,
                redis: Some(RedisConfig {
                    url,
                    prefix: self.prefix.unwrap_or_default(),
                }),
            });
        }
        if self.url.is_some() || self.prefix.is_some() {
            return Err(ConfigError::Invalid {
                field: "store",
                message: "`url` and `prefix` need `backend: \"redis\"`".into(),
            });
        }
        let Some(dir) = self.persist_dir else {
            if self.fsync.is_some() || self.compact_log_bytes.is_some() {
                return Err(ConfigError::Invalid {
                    field: "store",
                    message: "`fsync` and `compactLogBytes` need `persistDir`".into(),
                });
            }
            return Ok(StoreConfig::default());
        };
        let mut persist = PersistConfig::new(dir);
        if let Some(fsync) = self.fsync {
            persist.fsync = fsync;
        }
        if let Some(Bytes(v)) = self.compact_log_bytes {
            persist.compact_log_bytes = u64::try_from(v).unwrap_or(0);
        }
        Ok(StoreConfig {
            persist: Some(persist),
            redis: None,
        })
    }
}

/// `warmup` in [`MasterOptions`]: `{ requests, path, timeout }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WarmupOptions {
    /// How many requests (1 to [`MAX_WARMUP_REQUESTS`]; default 1).
    pub requests: Option<i64>,
    /// The path requested (default `/`).
    pub path: Option<String>,
    /// How long the whole warm-up may take ([`Millis`]; default 10 s). The start timeout still
    /// bounds the worker's start.
    pub timeout: Option<Millis>,
}

/// The most warm-up requests a worker may be asked for.
pub const MAX_WARMUP_REQUESTS: u32 = 10_000;
/// The longest warm-up path, in bytes.
pub const MAX_WARMUP_PATH: usize = 2048;

/// A worker's warm-up (cluster2's): before it takes the master's shared sockets, the worker's
/// own HTTP server answers `requests` GETs of `path` on a private loopback listener, so that no
/// client request reaches a cold worker (PROTOCOL.md §5.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warmup {
    /// How many requests, one after the other.
    pub requests: u32,
    /// The path requested, starting with `/`.
    pub path: String,
    /// How long the whole warm-up may take; past it the worker goes on to listen.
    pub timeout: Duration,
}

impl WarmupOptions {
    fn into_warmup(self) -> Result<Warmup, ConfigError> {
        let requests = self.requests.unwrap_or(1);
        let requests = u32::try_from(requests)
            .ok()
            .filter(|n| (1..=MAX_WARMUP_REQUESTS).contains(n))
            .ok_or_else(|| ConfigError::Invalid {
                field: "warmup.requests",
                message: format!("must be 1 to {MAX_WARMUP_REQUESTS}, got {requests}"),
            })?;
        let path = self.path.unwrap_or_else(|| "/".to_string());
        if !path.starts_with('/') || path.len() > MAX_WARMUP_PATH || path.chars().any(char::is_control) {
            return Err(ConfigError::Invalid {
                field: "warmup.path",
                message: format!(
                    "must start with / and be at most {MAX_WARMUP_PATH} bytes without control characters, got {path:?}"
                ),
            });
        }
        let timeout = match self.timeout {
            Some(t) => millis("warmup.timeout", t)?,
            None => Duration::from_secs(10),
        };
        Ok(Warmup {
            requests,
            path,
            timeout,
        })
    }
}

/// Converts a millisecond option to a duration, naming the field when it is not a positive finite
/// number or is past [`MAX_DURATION`]. The bound is checked here too, not only by
/// [`MasterConfig::validate`]: a value past what a `Duration` holds must be reported as given.
pub fn millis(field: &'static str, value: Millis) -> Result<Duration, ConfigError> {
    let value = value.0;
    if !value.is_finite() || value <= 0.0 {
        return Err(ConfigError::InvalidDuration {
            field,
            value: value.to_string(),
        });
    }
    if value > MAX_DURATION.as_millis() as f64 {
        return Err(ConfigError::TooLarge {
            field,
            // Debug: 1e300 stays short (Display would print all 301 digits).
            value: format!("{value:?} ms"),
            max: format!("{} ms", MAX_DURATION.as_millis()),
        });
    }
    Ok(Duration::from_secs_f64(value / 1000.0))
}

/// The program a master runs: `program`, or `script` run with `node` (default: from PATH),
/// found from `cwd`.
fn program_config(
    script: Option<String>,
    program: Option<String>,
    node: Option<&str>,
    cwd: Option<&str>,
) -> Result<MasterConfig, ConfigError> {
    match (script, program) {
        (Some(_), Some(_)) => Err(ConfigError::ProgramAndScript),
        (None, None) => Err(ConfigError::MissingProgram),
        (Some(script), None) => {
            let path = Path::new(cwd.unwrap_or(".")).join(&script);
            if !path.is_file() {
                return Err(ConfigError::NotFound {
                    field: "script",
                    path: script,
                    searched_path: false,
                });
            }
            let mut c = MasterConfig::program(node.unwrap_or("node"));
            // An absolute script path keeps working whatever the workers' cwd.
            c.args.push(std::path::absolute(&path).unwrap_or(path).into_os_string());
            Ok(c)
        }
        (None, Some(program)) => Ok(MasterConfig::program(program)),
    }
}

/// The `env` option: strings, or numbers and booleans stringified; names a variable may have.
fn env_vars(env: BTreeMap<String, Value>) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut vars = BTreeMap::new();
    for (key, value) in env {
        let value = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(ConfigError::Invalid {
                    field: "env",
                    message: format!("`{key}` must be a string, number or boolean, got {other}"),
                })
            }
        };
        if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
            return Err(ConfigError::Invalid {
                field: "env",
                message: format!("`{key}` is not a valid variable"),
            });
        }
        vars.insert(key, value);
    }
    Ok(vars)
}

impl MasterOptions {
    /// Validates the options into a [`MasterConfig`]: each option is converted to its type here
    /// (naming the option when it cannot be), and every range is checked by
    /// [`MasterConfig::validate`], as for a config built in Rust.
    pub fn into_config(self) -> Result<MasterConfig, ConfigError> {
        let mut config = program_config(self.script, self.program, self.node.as_deref(), self.cwd.as_deref())?;
        config.args.extend(self.args.into_iter().map(OsString::from));
        if let Some(count) = self.count {
            if count < 1 {
                return Err(ConfigError::InvalidCount { value: count });
            }
            config.count = usize::try_from(count).map_err(|_| ConfigError::TooLarge {
                field: "count",
                value: count.to_string(),
                max: MAX_WORKERS.to_string(),
            })?;
        }
        config.env = env_vars(self.env)?;
        for spec in &self.listen {
            let parsed = spec
                .parse()
                .map_err(|e: crate::listen::ListenError| ConfigError::Invalid {
                    field: "listen",
                    message: e.to_string(),
                })?;
            config.listen.push(parsed);
        }
        if let Some(balance) = self.balance {
            config.balance = balance;
        }
        if let Some(ready) = self.ready {
            config.ready = ready;
        }
        config.cwd = self.cwd.map(PathBuf::from);
        config.name = self.name.unwrap_or_default();
        config.user_config = self.config;
        config.names = self.names;
        config.process_title = self.process_title.unwrap_or(false);
        config.warmup = self.warmup.map(WarmupOptions::into_warmup).transpose()?;
        let t = &mut config.timeouts;
        for (field, value, slot) in [
            ("startTimeout", self.start_timeout, &mut t.start),
            ("stopTimeout", self.stop_timeout, &mut t.stop),
            ("quitTimeout", self.quit_timeout, &mut t.quit),
            ("killTimeout", self.kill_timeout, &mut t.kill),
        ] {
            if let Some(v) = value {
                *slot = millis(field, v)?;
            }
        }
        if let Some(max) = self.max_frame_bytes {
            config.max_frame_bytes = usize::try_from(max).map_err(|_| ConfigError::Invalid {
                field: "maxFrameBytes",
                message: format!("must be at least 1024, got {max}"),
            })?;
        }
        if let Some(us) = self.busy_poll_us {
            // What a Duration can hold here; the upper bound is `validate`'s, as for a Rust caller.
            if !(us.is_finite() && us >= 0.0) {
                return Err(ConfigError::Invalid {
                    field: "busyPollUs",
                    message: format!("must be a number of microseconds, at least 0, got {us}"),
                });
            }
            config.busy_poll = Duration::try_from_secs_f64(us / 1e6).unwrap_or(Duration::MAX);
        }
        if let Some(p) = self.on_protocol_error {
            config.on_protocol_error = p;
        }
        if let Some(r) = self.restart {
            config.restart = r;
        }
        let b = &mut config.backoff;
        if let Some(v) = self.restart_delay {
            b.initial = millis("restartDelay", v)?;
        }
        if let Some(v) = self.restart_max_delay {
            b.max = millis("restartMaxDelay", v)?;
        }
        if let Some(v) = self.restart_reset_after {
            b.reset_after = millis("restartResetAfter", v)?;
        }
        if let Some(v) = self.restart_backoff_factor {
            b.factor = v;
        }
        if let Some(v) = self.max_restarts {
            config.intensity.max_restarts = u32::try_from(v).map_err(|_| ConfigError::Invalid {
                field: "maxRestarts",
                message: format!("must be 0 or more, got {v}"),
            })?;
        }
        if let Some(v) = self.max_restarts_window {
            config.intensity.window = millis("maxRestartsWindow", v)?;
        }
        if let Some(kind) = self.reload_strategy {
            config.reload = match kind {
                ReloadKind::AllAtOnce => ReloadStrategy::AllAtOnce,
                ReloadKind::Rolling => ReloadStrategy::Rolling { batch: 1 },
            };
        }
        if let Some(n) = self.reload_batch {
            match &mut config.reload {
                ReloadStrategy::Rolling { batch } if n >= 1 => {
                    *batch = usize::try_from(n).unwrap_or(usize::MAX);
                }
                ReloadStrategy::Rolling { .. } => {
                    return Err(ConfigError::Invalid {
                        field: "reloadBatch",
                        message: format!("must be at least 1, got {n}"),
                    })
                }
                ReloadStrategy::AllAtOnce => {
                    return Err(ConfigError::Invalid {
                        field: "reloadBatch",
                        message: "only applies to reloadStrategy \"rolling\"".into(),
                    })
                }
            }
        }
        if let Some(v) = self.heartbeat_interval {
            let interval = millis("heartbeatInterval", v)?;
            let tolerance = match self.heartbeat_tolerance {
                Some(v) => millis("heartbeatTolerance", v)?,
                None => interval.saturating_mul(2),
            };
            config.heartbeat = Some(Heartbeat { interval, tolerance });
        } else if self.heartbeat_tolerance.is_some() {
            return Err(ConfigError::Invalid {
                field: "heartbeatTolerance",
                message: "needs heartbeatInterval".into(),
            });
        }
        if let Some(v) = self.max_age {
            config.recycle.max_age = Some(millis("maxAge", v)?);
        }
        if let Some(Bytes(v)) = self.max_memory_bytes {
            config.recycle.max_rss_bytes =
                Some(u64::try_from(v).ok().filter(|v| *v > 0).ok_or(ConfigError::Invalid {
                    field: "maxMemoryBytes",
                    message: format!("must be positive, got {v}"),
                })?);
        }
        if let Some(v) = self.memory_check_interval {
            config.recycle.check_interval = millis("memoryCheckInterval", v)?;
        }
        if let Some(store) = self.store {
            config.store = store.into_config()?;
        }
        config.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(v: Value) -> Result<MasterConfig, ConfigError> {
        serde_json::from_value::<MasterOptions>(v)
            .expect("options deserialize")
            .into_config()
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(options(json!({})), Err(ConfigError::MissingProgram));
        assert_eq!(
            options(json!({"program": "sh", "count": 0})),
            Err(ConfigError::InvalidCount { value: 0 })
        );
        assert_eq!(
            options(json!({"program": "sh", "stopTimeout": -5})),
            Err(ConfigError::InvalidDuration {
                field: "stopTimeout",
                value: "-5".into()
            })
        );
        assert!(matches!(
            options(json!({"program": "definitely-not-a-program-xyz"})),
            Err(ConfigError::NotFound {
                field: "program",
                searched_path: true,
                ..
            })
        ));
        assert!(matches!(
            options(json!({"script": "/nope/app.js"})),
            Err(ConfigError::NotFound { field: "script", .. })
        ));
        assert!(matches!(
            options(json!({"program": "/etc/passwd"})),
            Err(ConfigError::NotExecutable { .. })
        ));
        assert!(matches!(
            options(json!({"program": "sh", "cwd": "/nope"})),
            Err(ConfigError::BadCwd { .. })
        ));
        let msg = options(json!({"program": "sh", "killTimeout": 0}))
            .unwrap_err()
            .to_string();
        assert_eq!(msg, "`killTimeout` must be a positive number of milliseconds, got 0");
    }

    #[test]
    fn busy_poll_is_microseconds_within_the_limit_and_never_a_panic() {
        let c = options(json!({"program": "sh", "busyPollUs": 50})).unwrap();
        assert_eq!(c.busy_poll, Duration::from_micros(50));
        for bad in [json!(-1), json!(10001), json!(1e30)] {
            let err = options(json!({"program": "sh", "busyPollUs": bad})).unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::Invalid {
                        field: "busyPollUs",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_store_option_persists_in_a_directory_with_a_named_fsync_policy() {
        let c = options(
            json!({"program": "sh", "store": {"persistDir": "/tmp/s", "fsync": "everysec", "compactLogBytes": "1MiB"}}),
        )
        .unwrap();
        let persist = c.store.persist.expect("persisted");
        assert_eq!(persist.dir, PathBuf::from("/tmp/s"));
        assert_eq!(persist.fsync, FsyncPolicy::Everysec);
        assert_eq!(persist.compact_log_bytes, 1024 * 1024);
        let c = options(json!({"program": "sh", "store": {"persistDir": "/tmp/s"}})).unwrap();
        assert_eq!(
            c.store.persist.map(|p| p.fsync),
            Some(FsyncPolicy::Always),
            "always by default"
        );
        assert_eq!(options(json!({"program": "sh"})).unwrap().store, StoreConfig::default());
        for (bad, field) in [
            (json!({"fsync": "never"}), "store"),
            (json!({"persistDir": ""}), "store.persistDir"),
            (
                json!({"persistDir": "/tmp/s", "compactLogBytes": 10}),
                "store.compactLogBytes",
            ),
        ] {
            let err = options(json!({"program": "sh", "store": bad})).unwrap_err();
            assert!(
                matches!(err, ConfigError::Invalid { field: f, .. } if f == field),
                "{bad}: {err}"
            );
        }
        assert!(
            serde_json::from_value::<MasterOptions>(json!({"program": "sh", "store": {"fsync": "sometimes"}})).is_err()
        );
    }

    #[test]
    fn the_reload_strategy_is_a_typed_option() {
        let c = options(json!({"program": "sh", "reloadStrategy": "rolling", "reloadBatch": 2})).unwrap();
        assert_eq!(c.reload, ReloadStrategy::Rolling { batch: 2 });
        let c = options(json!({"program": "sh", "reloadStrategy": "all-at-once"})).unwrap();
        assert_eq!(c.reload, ReloadStrategy::AllAtOnce);
        let err = serde_json::from_value::<MasterOptions>(json!({"program": "sh", "reloadStrategy": "sideways"}))
            .expect_err("an unknown strategy does not deserialize");
        assert!(err.to_string().contains("all-at-once"), "{err}");
    }

    #[test]
    fn the_memory_check_interval_has_one_name() {
        let mut c = MasterConfig::program("sh");
        c.recycle.max_rss_bytes = Some(1 << 30);
        c.recycle.check_interval = Duration::ZERO;
        assert!(
            matches!(
                c.validate(),
                Err(ConfigError::InvalidDuration {
                    field: "memoryCheckInterval",
                    ..
                })
            ),
            "the option's name, as MasterOptions spells it"
        );
    }

    #[test]
    fn counts_and_durations_have_upper_bounds() {
        assert!(matches!(
            options(json!({"program": "sh", "count": 1_099_511_627_776i64})),
            Err(ConfigError::TooLarge { field: "count", .. })
        ));
        assert!(options(json!({"program": "sh", "count": MAX_WORKERS})).is_ok());
        assert!(matches!(
            options(json!({"program": "sh", "stopTimeout": 1e15})),
            Err(ConfigError::TooLarge {
                field: "stopTimeout",
                ..
            })
        ));
        // Past what a Duration holds: the bound's error, with the value as given, never a panic.
        let error = options(json!({"program": "sh", "maxAge": 1e300})).unwrap_err();
        assert!(
            matches!(error, ConfigError::TooLarge { field: "maxAge", .. }),
            "{error}"
        );
        assert!(error.to_string().contains("at most 1000000000000 ms"), "{error}");
        let error = options(json!({"program": "sh", "heartbeatInterval": 1e300})).unwrap_err();
        assert!(
            matches!(
                error,
                ConfigError::TooLarge {
                    field: "heartbeatInterval",
                    ..
                }
            ),
            "{error}"
        );
        assert!(matches!(
            options(json!({"program": "sh", "maxFrameBytes": 1i64 << 40})),
            Err(ConfigError::TooLarge {
                field: "maxFrameBytes",
                ..
            })
        ));
        assert!(matches!(
            options(json!({"program": "sh", "maxRestarts": 1i64 << 31})),
            Err(ConfigError::TooLarge {
                field: "maxRestarts",
                ..
            })
        ));
        // A Rust caller can hand Duration::MAX: a clear error, never an `Instant + d` overflow later.
        let mut c = MasterConfig::program("sh");
        c.timeouts.kill = Duration::MAX;
        let error = c.validate().unwrap_err();
        assert!(
            matches!(
                error,
                ConfigError::TooLarge {
                    field: "killTimeout",
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("at most"), "{error}");
        let mut c = MasterConfig::program("sh");
        c.heartbeat = Some(Heartbeat {
            interval: Duration::from_secs(1),
            tolerance: Duration::MAX,
        });
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TooLarge {
                field: "heartbeatTolerance",
                ..
            })
        ));
        let mut c = MasterConfig::program("sh");
        c.timeouts.start = MAX_DURATION;
        assert!(c.validate().is_ok(), "the bound itself is accepted");
    }

    #[test]
    fn balance_is_set_for_the_master_and_per_listener_and_a_bad_one_is_named() {
        let c = options(
            json!({"program": "sh", "balance": "sticky", "listen": ["127.0.0.1:0,balance=round-robin", "127.0.0.1:1"]}),
        )
        .unwrap();
        assert_eq!(c.balance, Balance::Sticky);
        assert_eq!(c.listen[0].balance, Some(Balance::RoundRobin));
        assert_eq!(c.listen[1].balance, None, "follows the master's");
        assert_eq!(MasterConfig::program("sh").balance, Balance::Shared, "the default");
        let err = serde_json::from_value::<MasterOptions>(json!({"program": "sh", "balance": "fastest"})).unwrap_err();
        assert!(err.to_string().contains("fastest"), "{err}");
        let err = options(json!({"program": "sh", "listen": ["127.0.0.1:0,balance=fastest"]})).unwrap_err();
        assert!(err.to_string().contains("not a balance"), "{err}");
        let err = options(json!({"program": "sh", "listen": ["unix:/tmp/x.sock,balance=sticky"]})).unwrap_err();
        assert!(err.to_string().contains("needs a TCP address"), "{err}");
        let c = options(json!({"program": "sh", "balance": "reuseport", "listen": ["web=:8080,balance=reuseport"]}))
            .unwrap();
        assert_eq!(c.balance, Balance::ReusePort);
        assert_eq!(c.listen[0].balance, Some(Balance::ReusePort));
        let err = options(json!({"program": "sh", "listen": ["unix:/tmp/x.sock,balance=reuseport"]})).unwrap_err();
        assert!(
            err.to_string().contains("reuseport balance needs a TCP address"),
            "{err}"
        );
    }

    #[test]
    fn unknown_options_are_refused() {
        let err = serde_json::from_value::<MasterOptions>(json!({"program": "sh", "cuont": 2})).unwrap_err();
        assert!(err.to_string().contains("cuont"), "{err}");
    }

    #[test]
    fn program_is_resolved_on_path_and_env_is_stringified() {
        let c = options(json!({"program": "sh", "count": 2, "env": {"PORT": 1934, "X": true}})).unwrap();
        assert!(c.program.is_absolute());
        assert_eq!(c.count, 2);
        assert_eq!(c.env["PORT"], "1934");
        assert_eq!(c.env["X"], "true");
        assert_eq!(c.name, "sh");
    }
}
