//! What `drover run` runs: the groups from the command line or from a TOML file, each validated
//! by core ([`MasterOptions::into_config`]) before anything starts.
//!
//! ```toml
//! http = "127.0.0.1:9091"      # optional: socket, http, logFormat, monitor, monitorToken, monitorPublic
//!
//! [groups.web]                 # the table key is the group's name
//! program = "./server"         # or script = "app.js"
//! args = ["--port", "8080"]
//! count = 4
//! env = { RUST_LOG = "info" }
//! restart = "on-failure"
//! startTimeout = "5s"          # every key of core's MasterOptions, camelCase; durations in ms or
//! maxMemoryBytes = "150MiB"    # with a unit ("5s", "250ms"), sizes in bytes or with one
//! ```
//!
//! A group may also have `ecv = { url = "http://127.0.0.1:8080/health", validator = "^ok",
//! interval = "5s", timeout = "2s", failuresBeforeDown = 3 }` (the ECV monitor, `drover::ecv`:
//! the group goes out of rotation while the URL fails), `preStart = "COMMAND"` (run by `sh -c` in
//! the group's cwd and env before its first worker spawns, at each start; a failure fails the
//! start), `cronRestart = "0 3 * * *"` (a reload of the group at those times) and
//! `env_NAME = { ... }` tables, merged over `env` when drover runs with `--env NAME`. A PM2
//! ecosystem file (`-c ecosystem.config.js`) is read by `pm2.rs` into the same groups.
//!
//! A bad file is an error naming the file, the line and the field: a syntax error carries toml's
//! span; a key of the wrong type or a value core refuses (`count = 0`) is mapped back to the line of
//! that key in the group's table (or of the table itself when the key is missing).

use drover::{ConfigError, MasterConfig, MasterOptions, RestartPolicy};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::Spanned;

use crate::logs::LogFormat;
use crate::RunArgs;

/// The most groups a config file may have (each is a master with its own tasks and fds).
pub const MAX_GROUPS: usize = 1000;

/// One group, validated.
pub struct Group {
    pub name: String,
    /// The options as the file gave them (after `--env`), to say what a reload changes.
    pub options: MasterOptions,
    pub config: MasterConfig,
    /// When to reload the group (`cronRestart`), in local time.
    pub cron_restart: Option<croner::Cron>,
    /// The ECV monitor (`ecv`), started with the group; a reload that changes it replaces it.
    pub ecv: Option<drover::ecv::EcvMonitor>,
    /// The shell command run before the group's first worker spawns (`preStart`).
    pub pre_start: Option<String>,
}

/// Everything `drover run` needs, validated.
pub struct Plan {
    pub groups: Vec<Group>,
    pub socket: Option<PathBuf>,
    pub http: Option<String>,
    pub log_format: LogFormat,
    /// Keys of the file drover does not apply (PM2 ecosystem files), each as `apps[i].key`.
    pub ignored: Vec<String>,
    /// The file the groups came from, read again at each reload.
    pub source: Option<Source>,
    pub on_group_failure: OnGroupFailure,
    /// `nodePreload` / `--node-preload`: `auto` (unset), `off` or a path ([`crate::node_preload`]).
    pub node_preload: Option<String>,
    /// What drover could not set up but runs without (logged at start).
    pub warnings: Vec<String>,
    /// The monitor page (`--monitor`, `monitor = true`), off by default.
    pub monitor: MonitorPlan,
}

/// Whether and how the monitor page is served (see `http.rs`).
#[derive(Debug, Clone, Default)]
pub struct MonitorPlan {
    pub enabled: bool,
    /// `--monitor-token`, `$DROVER_MONITOR_TOKEN`, `monitorToken`; else one is generated.
    pub token: Option<String>,
    /// `--monitor-public`, `monitorPublic`: allowed on a non-loopback address.
    pub public: bool,
}

/// What `drover run` does when a group fails for good: it gave up restarting (FAILED), or every
/// worker exited and none is being restarted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnGroupFailure {
    /// Shut every group down and exit with status 3 (so that systemd's `Restart=on-failure`
    /// or a container's restart policy acts).
    #[default]
    Exit,
    /// Keep running the other groups; `status` and `/metrics` say the group is FAILED.
    Keep,
}

/// A config file and what the command line says over it: read again, the same way, at each reload.
#[derive(Clone, Debug)]
pub struct Source {
    pub path: PathBuf,
    /// `--env NAME`.
    pub env: Option<String>,
    /// `--node-preload`, over the file's `nodePreload`.
    pub node_preload: Option<String>,
}

/// One group as a file gives it, before validation: core's options as JSON, plus the keys that
/// are the command's own.
pub struct GroupSource {
    /// The table key (`[groups.KEY]`) or the PM2 app's name.
    pub key: String,
    pub options: serde_json::Map<String, serde_json::Value>,
    /// `env_NAME` sets, by NAME.
    pub env_sets: BTreeMap<String, serde_json::Value>,
    pub cron_restart: Option<String>,
    /// `ecv`, as the file gives it.
    pub ecv: Option<serde_json::Value>,
    /// `preStart`: a shell command.
    pub pre_start: Option<String>,
    pub place: Place,
}

/// Where a group is in its file, to point at it in errors.
#[derive(Clone, Copy, Debug)]
pub enum Place {
    /// A `[groups.KEY]` table of a drover.toml.
    Table,
    /// `apps[i]` of a PM2 ecosystem file.
    App(usize),
}

/// Why the configuration cannot be used. Nothing has been started.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{file}: {error}")]
    Read { file: String, error: std::io::Error },
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// `at` is `:LINE` in a drover.toml, empty in an ecosystem file; `group` is `[groups.web]` or
    /// `apps[0] (web)`; `field` is the key as the file writes it.
    #[error("{file}{at}: {group} `{field}`: {error}")]
    Invalid {
        file: String,
        at: String,
        group: String,
        field: String,
        error: String,
    },
    #[error("{file}{at}: {group} `name`: {name:?} is also the name of another group")]
    DuplicateName {
        file: String,
        at: String,
        group: String,
        name: String,
    },
    #[error("{file}: {message}")]
    Ecosystem { file: String, message: String },
    #[error("--env {env}: no group of {file} has an `env_{env}` set")]
    NoSuchEnv { file: String, env: String },
    #[error("{file}: no group: add a [groups.NAME] table with a `program` (or `script`)")]
    NoGroups { file: String },
    #[error("{file}: {count} groups: at most {max} (put workers of one program in one group, with `count`)", max = MAX_GROUPS)]
    TooManyGroups { file: String, count: usize },
    #[error("{0}")]
    CommandLine(String),
}

/// The file's own keys; each group is deserialized straight into core's options.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    socket: Option<String>,
    http: Option<String>,
    log_format: Option<LogFormat>,
    on_group_failure: Option<OnGroupFailure>,
    node_preload: Option<String>,
    #[serde(default)]
    monitor: bool,
    monitor_token: Option<String>,
    #[serde(default)]
    monitor_public: bool,
    #[serde(default)]
    groups: BTreeMap<String, toml::Table>,
}

/// The same document, keeping where each group and each of its keys is.
#[derive(Deserialize)]
struct Spans {
    #[serde(default)]
    groups: BTreeMap<String, Spanned<BTreeMap<Spanned<String>, serde::de::IgnoredAny>>>,
}

/// The plan for `drover run` from its arguments (and the file they name).
pub fn plan(args: &RunArgs) -> Result<Plan, PlanError> {
    let plan = match &args.config {
        Some(file) => {
            let mut plan = from_file(&Source {
                path: file.clone(),
                env: args.env.clone(),
                node_preload: args.node_preload.clone(),
            })?;
            if args.socket.socket.is_some() {
                plan.socket = args.socket.socket.clone();
            }
            if args.http.is_some() {
                plan.http = args.http.clone();
            }
            if let Some(format) = args.log_format {
                plan.log_format = format;
            }
            if let Some(action) = args.on_group_failure {
                plan.on_group_failure = action;
            }
            plan
        }
        None => {
            let mut plan = from_command_line(args)?;
            crate::node_preload::apply_to_plan(&mut plan)?;
            plan
        }
    };
    let mut plan = plan;
    plan.monitor.enabled |= args.monitor;
    plan.monitor.public |= args.monitor_public;
    if args.monitor_token.is_some() {
        plan.monitor.token = args.monitor_token.clone();
    }
    check_monitor(&plan)?;
    Ok(plan)
}

fn from_command_line(args: &RunArgs) -> Result<Plan, PlanError> {
    let Some((program, rest)) = args.program.split_first() else {
        return Err(PlanError::CommandLine(
            "nothing to run: give `-- PROGRAM ARGS...` or `-c drover.toml`".into(),
        ));
    };
    let restart = match args.restart.as_deref() {
        None => None,
        Some(policy) => Some(
            serde_json::from_value(serde_json::Value::String(policy.into())).map_err(|_| {
                PlanError::CommandLine(format!(
                    "--restart: expected never, on-failure or always, got {policy:?}"
                ))
            })?,
        ),
    };
    let ready = match args.ready.as_deref() {
        None => None,
        Some(source) => Some(
            serde_json::from_value(serde_json::Value::String(source.into())).map_err(|_| {
                PlanError::CommandLine(format!(
                    "--ready: expected message, notify, node-ipc or spawn, got {source:?}"
                ))
            })?,
        ),
    };
    let options = MasterOptions {
        program: Some(program.clone()),
        args: rest.to_vec(),
        count: args.count,
        name: args.name.clone(),
        restart,
        listen: args.listen.clone(),
        balance: args.balance,
        ready,
        // `drover: GROUP #INSTANCE` in ps.
        process_title: Some(true),
        ..MasterOptions::default()
    };
    let config = into_config(options.clone()).map_err(|error| {
        let flag = match field_of(&error).as_str() {
            "count" => "-n/--count: ",
            "name" => "--name: ",
            "program" => "PROGRAM: ",
            "listen" => "--listen: ",
            _ => "",
        };
        PlanError::CommandLine(format!("{flag}{error}"))
    })?;
    Ok(Plan {
        groups: vec![Group {
            name: config.name.clone(),
            options,
            config,
            cron_restart: None,
            ecv: None,
            pre_start: args.pre_start.clone(),
        }],
        socket: args.socket.socket.clone(),
        http: args.http.clone(),
        log_format: args.log_format.unwrap_or_default(),
        on_group_failure: args.on_group_failure.unwrap_or_default(),
        node_preload: args.node_preload.clone(),
        warnings: Vec::new(),
        ignored: Vec::new(),
        source: None,
        monitor: MonitorPlan::default(),
    })
}

/// The shortest monitor token accepted (a guessable token would open the workers' controls).
pub const MIN_TOKEN_CHARS: usize = 16;

/// The monitor's safety rules: it needs the HTTP endpoint, a token long enough, and a loopback
/// address unless `--monitor-public` says otherwise.
fn check_monitor(plan: &Plan) -> Result<(), PlanError> {
    let monitor = &plan.monitor;
    if let Some(token) = &monitor.token {
        // Characters that travel unescaped in a URL's query and in a cookie.
        let plain = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
        if token.chars().count() < MIN_TOKEN_CHARS || !token.chars().all(plain) {
            return Err(PlanError::CommandLine(format!(
                "monitor token: at least {MIN_TOKEN_CHARS} characters of A-Z a-z 0-9 - . _ ~ (or give none: one is generated)"
            )));
        }
    }
    if !monitor.enabled {
        return Ok(());
    }
    let Some(http) = &plan.http else {
        return Err(PlanError::CommandLine(
            "--monitor is served on the HTTP endpoint: give --http 127.0.0.1:PORT too".into(),
        ));
    };
    if !monitor.public && !is_loopback(http) {
        return Err(PlanError::CommandLine(format!(
            "--monitor on --http {http}: not a loopback address; the monitor controls the workers, so it is served on 127.0.0.1 or [::1] unless --monitor-public (monitorPublic = true) says otherwise"
        )));
    }
    Ok(())
}

/// Whether an `--http` address is loopback only (`127.0.0.1:9091`, `[::1]:9091`, `localhost:9091`).
pub fn is_loopback(addr: &str) -> bool {
    if let Ok(socket) = addr.parse::<std::net::SocketAddr>() {
        return socket.ip().is_loopback();
    }
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host == "localhost"
}

/// Core's validation, plus what the command needs of every group: captured output, and restarts
/// on failure unless the group says otherwise (a supervisor that leaves a crashed worker dead
/// hides the failure).
fn into_config(mut options: MasterOptions) -> Result<MasterConfig, ConfigError> {
    options.restart.get_or_insert(RestartPolicy::OnFailure);
    let mut config = options.into_config()?;
    config.capture_output = true;
    Ok(config)
}

/// Reads and validates a config file (a drover.toml, or a PM2 ecosystem file), with the Node
/// preload added to the groups that run Node: at start and at each reload alike.
pub fn from_file(source: &Source) -> Result<Plan, PlanError> {
    let path = &source.path;
    let file = path.display().to_string();
    let mut plan = if crate::pm2::is_ecosystem(path) {
        let (groups, ignored) = crate::pm2::groups(path)?;
        let mut plan = validate_groups(&file, groups, source.env.as_deref(), |_| String::new())?;
        plan.ignored = ignored;
        plan
    } else {
        let text = std::fs::read_to_string(path).map_err(|error| PlanError::Read {
            file: file.clone(),
            error,
        })?;
        from_toml(&file, &text, source.env.as_deref())?
    };
    if source.node_preload.is_some() {
        plan.node_preload = source.node_preload.clone();
    }
    crate::node_preload::apply_to_plan(&mut plan)?;
    plan.source = Some(source.clone());
    Ok(plan)
}

/// Validates the text of a drover.toml called `file`.
#[cfg(test)]
pub fn from_str(file: &str, text: &str) -> Result<Plan, PlanError> {
    from_toml(file, text, None)
}

/// Validates the text of a drover.toml called `file`, with the `env_NAME` sets of `env`.
fn from_toml(file: &str, text: &str, env: Option<&str>) -> Result<Plan, PlanError> {
    let syntax = |error: toml::de::Error| {
        let (line, column) = error.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        PlanError::Syntax {
            file: file.to_string(),
            line,
            column,
            message: error.message().trim_end().to_string(),
        }
    };
    let parsed: File = toml::from_str(text).map_err(syntax)?;
    let spans: Spans = toml::from_str(text).map_err(syntax)?;
    if parsed.groups.len() > MAX_GROUPS {
        return Err(PlanError::TooManyGroups {
            file: file.into(),
            count: parsed.groups.len(),
        });
    }
    let mut sources = Vec::new();
    for (key, table) in parsed.groups {
        let mut options = serde_json::Map::new();
        let mut env_sets = BTreeMap::new();
        let mut cron_restart = None;
        let mut ecv = None;
        let mut pre_start = None;
        for (k, v) in table {
            let value = serde_json::to_value(&v).unwrap_or(serde_json::Value::Null);
            if let Some(name) = k.strip_prefix("env_") {
                env_sets.insert(name.to_string(), value);
            } else if k == "ecv" {
                ecv = Some(value);
            } else if k == "cronRestart" {
                cron_restart = Some(v.as_str().map(str::to_owned).ok_or_else(|| PlanError::Invalid {
                    file: file.into(),
                    at: String::new(),
                    group: format!("[groups.{key}]"),
                    field: k.clone(),
                    error: format!("must be a cron expression string, got {v}"),
                })?);
            } else if k == "preStart" {
                pre_start = Some(v.as_str().map(str::to_owned).ok_or_else(|| PlanError::Invalid {
                    file: file.into(),
                    at: String::new(),
                    group: format!("[groups.{key}]"),
                    field: k.clone(),
                    error: format!("must be a shell command string, got {v}"),
                })?);
            } else {
                options.insert(k, value);
            }
        }
        sources.push(GroupSource {
            key,
            options,
            env_sets,
            cron_restart,
            ecv,
            pre_start,
            place: Place::Table,
        });
    }
    // `:LINE` of `field` in the group's table, or of the table itself.
    let at = |key: &str, field: &str| {
        let table = spans.groups.get(key);
        let offset = table
            .and_then(|t| {
                t.get_ref()
                    .iter()
                    .find(|(k, _)| k.get_ref() == field)
                    .map(|(k, _)| k.span().start)
            })
            .or_else(|| table.map(|t| t.span().start))
            .unwrap_or(0);
        format!(":{}", line_col(text, offset).0)
    };
    let plan = validate_groups(file, sources, env, |(key, field)| at(key, field))?;
    Ok(Plan {
        socket: parsed.socket.map(PathBuf::from),
        http: parsed.http,
        log_format: parsed.log_format.unwrap_or_default(),
        on_group_failure: parsed.on_group_failure.unwrap_or_default(),
        node_preload: parsed.node_preload,
        monitor: MonitorPlan {
            enabled: parsed.monitor,
            token: parsed.monitor_token,
            public: parsed.monitor_public,
        },
        ..plan
    })
}

/// Validates each group (core's checks, plus the command's keys) into a plan; `at` gives where
/// a group's field is in the file (`(group key, field)` → `:LINE`, or empty).
fn validate_groups(
    file: &str,
    sources: Vec<GroupSource>,
    env: Option<&str>,
    at: impl Fn((&str, &str)) -> String,
) -> Result<Plan, PlanError> {
    if sources.is_empty() {
        return Err(PlanError::NoGroups { file: file.into() });
    }
    if sources.len() > MAX_GROUPS {
        return Err(PlanError::TooManyGroups {
            file: file.into(),
            count: sources.len(),
        });
    }
    if let Some(env) = env {
        if !sources.iter().any(|g| g.env_sets.contains_key(env)) {
            return Err(PlanError::NoSuchEnv {
                file: file.into(),
                env: env.into(),
            });
        }
    }
    let mut groups: Vec<Group> = Vec::new();
    for mut source in sources {
        let key = source.key.clone();
        let (label, as_written): (String, fn(&str) -> &str) = match source.place {
            Place::Table => (format!("[groups.{key}]"), |f| f),
            Place::App(i) => (format!("apps[{i}] ({key})"), crate::pm2::pm2_key),
        };
        let invalid = |field: &str, error: String| PlanError::Invalid {
            file: file.into(),
            at: at((&key, field)),
            group: label.clone(),
            field: as_written(field).to_string(),
            error,
        };
        if let Some(set) = env.and_then(|e| source.env_sets.remove(e)) {
            merge_env(&mut source.options, set).map_err(|error| invalid("env", error))?;
        }
        let value = serde_json::Value::Object(source.options);
        let mut options: MasterOptions = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            // An unknown key's error names it in backticks; a type error's path is the key.
            let field = if path == "." || path.is_empty() {
                message.split('`').nth(1).unwrap_or("?").to_string()
            } else {
                path.split('.').next().unwrap_or(&path).to_string()
            };
            invalid(&field, message)
        })?;
        options.name.get_or_insert_with(|| key.clone());
        // `drover: GROUP #INSTANCE` in ps, unless the group says `processTitle = false`.
        options.process_title.get_or_insert(true);
        let config = into_config(options.clone()).map_err(|error| {
            let field = field_of(&error);
            invalid(&field, error.to_string())
        })?;
        let cron_restart = match &source.cron_restart {
            None => None,
            Some(expr) => Some(
                expr.parse::<croner::Cron>()
                    .map_err(|e| invalid("cronRestart", format!("{expr:?} is not a cron expression: {e}")))?,
            ),
        };
        let ecv = match source.ecv.take() {
            None => None,
            Some(value) => {
                let options: drover::ecv::EcvOptions =
                    serde_json::from_value(value).map_err(|e| invalid("ecv", e.to_string()))?;
                Some(drover::ecv::EcvMonitor::new(options).map_err(|e| invalid("ecv", e.to_string()))?)
            }
        };
        if groups.iter().any(|g| g.name == config.name) {
            return Err(PlanError::DuplicateName {
                file: file.into(),
                at: at((&key, "name")),
                group: label,
                name: config.name,
            });
        }
        groups.push(Group {
            name: config.name.clone(),
            options,
            config,
            cron_restart,
            ecv,
            pre_start: source.pre_start,
        });
    }
    let plan = Plan {
        groups,
        socket: None,
        http: None,
        log_format: LogFormat::default(),
        on_group_failure: OnGroupFailure::default(),
        node_preload: None,
        warnings: Vec::new(),
        ignored: Vec::new(),
        source: None,
        monitor: MonitorPlan::default(),
    };
    Ok(plan)
}

/// `env_NAME` over `env`: the set's variables win.
fn merge_env(options: &mut serde_json::Map<String, serde_json::Value>, set: serde_json::Value) -> Result<(), String> {
    let serde_json::Value::Object(set) = set else {
        return Err(format!("an env_ set must be a table of variables, got {set}"));
    };
    let env = options
        .entry("env")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    match env {
        serde_json::Value::Object(env) => {
            env.extend(set);
            Ok(())
        }
        other => Err(format!("must be a table of variables, got {other}")),
    }
}

/// The option a core error is about: every [`ConfigError`] message names it first, in backticks.
fn field_of(error: &ConfigError) -> String {
    let message = error.to_string();
    message
        .split('`')
        .nth(1)
        // `store.persistDir` is the key `store` of the group's table.
        .and_then(|f| f.split('.').next())
        .filter(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or("program")
        .to_string()
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        match from_str("drover.toml", text) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_value_core_refuses_names_file_line_and_field() {
        let text = "[groups.web]\nprogram = \"sh\"\n\ncount = 0\n";
        assert_eq!(
            error(text),
            "drover.toml:4: [groups.web] `count`: `count` must be at least 1, got 0"
        );
        let text = "[groups.web]\nprogram = \"sh\"\n[groups.api]\nprogram = \"sh\"\nstopTimeout = -5\n";
        assert_eq!(
            error(text),
            "drover.toml:5: [groups.api] `stopTimeout`: `stopTimeout` must be a positive number of milliseconds, got -5"
        );
    }

    #[test]
    fn zero_and_huge_values_are_refused_with_their_bound() {
        for (key, expected) in [
            (
                "count = 1099511627776",
                "`count` must be at most 10000, got 1099511627776",
            ),
            (
                "stopTimeout = 1e300",
                "`stopTimeout` must be at most 1000000000000 ms, got 1e300 ms",
            ),
            (
                "heartbeatInterval = 0",
                "`heartbeatInterval` must be a positive number of milliseconds, got 0",
            ),
            (
                "maxFrameBytes = 1099511627776",
                "`maxFrameBytes` must be at most 67108864, got 1099511627776",
            ),
            (
                "maxRestarts = 4294967295",
                "`maxRestarts` must be at most 100000, got 4294967295",
            ),
        ] {
            let field = key.split(' ').next().unwrap_or_default();
            let message = error(&format!("[groups.web]\nprogram = \"sh\"\n{key}\n"));
            assert_eq!(message, format!("drover.toml:3: [groups.web] `{field}`: {expected}"));
        }
    }

    #[test]
    fn durations_and_sizes_take_units() {
        let plan = from_str(
            "f",
            "[groups.web]\nprogram = \"sh\"\nstopTimeout = \"10s\"\nkillTimeout = 2500\nmaxMemoryBytes = \"150MiB\"\n",
        )
        .expect("valid");
        let config = &plan.groups[0].config;
        assert_eq!(config.timeouts.stop, std::time::Duration::from_secs(10));
        assert_eq!(config.timeouts.kill, std::time::Duration::from_millis(2500));
        assert_eq!(config.recycle.max_rss_bytes, Some(150 * 1024 * 1024));
        let msg = error("[groups.web]\nprogram = \"sh\"\nstopTimeout = \"ten seconds\"\n");
        assert!(msg.starts_with("drover.toml:3:"), "{msg}");
        assert!(msg.contains(r#""ten seconds" is not a duration"#), "{msg}");
    }

    #[test]
    fn a_store_table_persists_or_selects_redis_and_its_errors_point_at_it() {
        let plan = from_str(
            "f",
            "[groups.web]\nprogram = \"sh\"\n[groups.web.store]\npersistDir = \"/var/lib/web\"\nfsync = \"everysec\"\n",
        )
        .expect("valid");
        let persist = plan.groups[0].config.store.persist.clone().expect("persisted");
        assert_eq!(persist.dir, std::path::PathBuf::from("/var/lib/web"));
        assert_eq!(persist.fsync, drover::store::persist::FsyncPolicy::Everysec);
        let plan = from_str(
            "f",
            "[groups.web]\nprogram = \"sh\"\nstore = { backend = \"redis\", url = \"redis://127.0.0.1:6379/0\" }\n",
        )
        .expect("valid");
        let redis = plan.groups[0].config.store.redis.clone().expect("redis");
        assert_eq!(redis.prefix, "drover:web:", "the group's own prefix by default");
        let msg = error("[groups.web]\nprogram = \"sh\"\n\nstore = { persistDir = \"/x\", compactLogBytes = 1 }\n");
        assert!(msg.starts_with("drover.toml:4: [groups.web] `store`:"), "{msg}");
        assert!(msg.contains("store.compactLogBytes"), "{msg}");
    }

    #[test]
    fn more_groups_than_the_bound_are_refused() {
        let text: String = (0..=MAX_GROUPS)
            .map(|i| format!("[groups.g{i}]\nprogram = \"sh\"\n"))
            .collect();
        assert_eq!(
            error(&text),
            "drover.toml: 1001 groups: at most 1000 (put workers of one program in one group, with `count`)"
        );
    }

    #[test]
    fn a_missing_program_points_at_the_group() {
        let msg = error("http = \"127.0.0.1:0\"\n\n[groups.web]\ncount = 2\n");
        assert!(msg.starts_with("drover.toml:3: [groups.web] `program`:"), "{msg}");
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_line_and_key() {
        let msg = error("[groups.web]\nprogram = \"sh\"\ncuont = 2\n");
        assert!(
            msg.starts_with("drover.toml:3: [groups.web] `cuont`: unknown field `cuont`"),
            "{msg}"
        );
        let msg = error("[groups.web]\nprogram = \"sh\"\ncount = \"two\"\n");
        assert!(
            msg.starts_with("drover.toml:3: [groups.web] `count`: invalid type"),
            "{msg}"
        );
        let msg = error("[groups.web\n");
        assert!(msg.starts_with("drover.toml:1:"), "{msg}");
    }

    #[test]
    fn env_sets_are_merged_with_env_name_and_a_missing_one_is_refused() {
        let text = "[groups.web]\nprogram = \"sh\"\nenv = { A = \"1\", B = \"2\" }\nenv_production = { B = \"prod\", C = 3 }\ncronRestart = \"0 3 * * *\"\n";
        let plan = from_toml("f", text, Some("production")).expect("valid");
        let env = &plan.groups[0].config.env;
        assert_eq!(
            (env["A"].as_str(), env["B"].as_str(), env["C"].as_str()),
            ("1", "prod", "3")
        );
        assert_eq!(
            plan.groups[0]
                .cron_restart
                .as_ref()
                .map(|c| c.pattern.to_string())
                .as_deref(),
            Some("0 3 * * *")
        );
        let plain = from_toml("f", text, None).expect("valid");
        assert_eq!(plain.groups[0].config.env["B"], "2");
        let msg = from_toml("f", text, Some("staging"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(msg, "--env staging: no group of f has an `env_staging` set");
        let msg = error("[groups.web]\nprogram = \"sh\"\ncronRestart = \"every tuesday\"\n");
        assert!(
            msg.starts_with("drover.toml:3: [groups.web] `cronRestart`: \"every tuesday\" is not a cron expression"),
            "{msg}"
        );
    }

    #[test]
    fn groups_get_their_table_name_and_captured_output() {
        let plan = from_str(
            "f",
            "logFormat = \"json\"\n[groups.web]\nprogram = \"sh\"\ncount = 2\nenv = { PORT = 8080 }\n[groups.api]\nprogram = \"sh\"\nrestart = \"always\"\n",
        )
        .expect("valid");
        let names: Vec<&str> = plan.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["api", "web"]);
        assert!(plan.groups.iter().all(|g| g.config.capture_output));
        assert_eq!(plan.groups[1].config.env["PORT"], "8080");
        assert_eq!(plan.log_format, LogFormat::Json);
    }
}
