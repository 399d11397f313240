//! What `drover run` runs: the groups from the command line or from a TOML file, each validated
//! by core ([`MasterOptions::into_config`]) before anything starts.
//!
//! ```toml
//! http = "127.0.0.1:9091"      # optional: socket, http, logFormat
//!
//! [groups.web]                 # the table key is the group's name
//! program = "./server"         # or script = "app.js"
//! args = ["--port", "8080"]
//! count = 4
//! env = { RUST_LOG = "info" }
//! restart = "on-failure"
//! startTimeout = 5000          # every key of core's MasterOptions, camelCase, ms for durations
//! ```
//!
//! A bad file is an error naming the file, the line and the field: a syntax or type error carries
//! toml's span; a value core refuses (`count = 0`) is mapped back to the line of that key in the
//! group's table (or of the table itself when the key is missing).

use drover::{ConfigError, MasterConfig, MasterOptions, RestartPolicy};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

use crate::logs::LogFormat;
use crate::RunArgs;

/// The most groups a config file may have (each is a master with its own tasks and fds).
pub const MAX_GROUPS: usize = 1000;

/// One group, validated.
pub struct Group {
    pub name: String,
    pub config: MasterConfig,
}

/// Everything `drover run` needs, validated.
pub struct Plan {
    pub groups: Vec<Group>,
    pub socket: Option<PathBuf>,
    pub http: Option<String>,
    pub log_format: LogFormat,
    pub on_group_failure: OnGroupFailure,
    /// `nodePreload` / `--node-preload`: `auto` (unset), `off` or a path ([`crate::node_preload`]).
    pub node_preload: Option<String>,
    /// What drover could not set up but runs without (logged at start).
    pub warnings: Vec<String>,
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
    #[error("{file}:{line}: [groups.{group}] `{field}`: {error}")]
    Invalid {
        file: String,
        line: usize,
        group: String,
        field: String,
        error: Box<ConfigError>,
    },
    #[error("{file}:{line}: [groups.{group}] `name`: {name:?} is also the name of another group")]
    DuplicateName {
        file: String,
        line: usize,
        group: String,
        name: String,
    },
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
    groups: BTreeMap<String, MasterOptions>,
}

/// The same document, keeping where each group and each of its keys is.
#[derive(Deserialize)]
struct Spans {
    #[serde(default)]
    groups: BTreeMap<String, Spanned<BTreeMap<Spanned<String>, serde::de::IgnoredAny>>>,
}

/// The plan for `drover run` from its arguments (and the file they name).
pub fn plan(args: &RunArgs) -> Result<Plan, PlanError> {
    let mut plan = match &args.config {
        Some(file) => {
            let mut plan = from_file(file)?;
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
            if args.node_preload.is_some() {
                plan.node_preload = args.node_preload.clone();
            }
            plan
        }
        None => from_command_line(args)?,
    };
    crate::node_preload::apply_to_plan(&mut plan)?;
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
        ready,
        ..MasterOptions::default()
    };
    let config = into_config(options).map_err(|error| {
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
            config,
        }],
        socket: args.socket.socket.clone(),
        http: args.http.clone(),
        log_format: args.log_format.unwrap_or_default(),
        on_group_failure: args.on_group_failure.unwrap_or_default(),
        node_preload: args.node_preload.clone(),
        warnings: Vec::new(),
    })
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

/// Reads and validates a config file.
pub fn from_file(path: &Path) -> Result<Plan, PlanError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| PlanError::Read {
        file: file.clone(),
        error,
    })?;
    from_str(&file, &text)
}

/// Validates the text of a config file called `file`.
pub fn from_str(file: &str, text: &str) -> Result<Plan, PlanError> {
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
    if parsed.groups.is_empty() {
        return Err(PlanError::NoGroups { file: file.into() });
    }
    if parsed.groups.len() > MAX_GROUPS {
        return Err(PlanError::TooManyGroups {
            file: file.into(),
            count: parsed.groups.len(),
        });
    }
    let mut groups: Vec<Group> = Vec::new();
    for (key, mut options) in parsed.groups {
        let table = spans.groups.get(&key);
        let line_of = |field: &str| {
            let at = table
                .and_then(|t| {
                    t.get_ref()
                        .iter()
                        .find(|(k, _)| k.get_ref() == field)
                        .map(|(k, _)| k.span().start)
                })
                .or_else(|| table.map(|t| t.span().start))
                .unwrap_or(0);
            line_col(text, at).0
        };
        options.name.get_or_insert_with(|| key.clone());
        let config = into_config(options).map_err(|error| {
            let field = field_of(&error);
            PlanError::Invalid {
                file: file.into(),
                line: line_of(&field),
                group: key.clone(),
                field,
                error: Box::new(error),
            }
        })?;
        if groups.iter().any(|g| g.name == config.name) {
            return Err(PlanError::DuplicateName {
                file: file.into(),
                line: line_of("name"),
                group: key,
                name: config.name,
            });
        }
        groups.push(Group {
            name: config.name.clone(),
            config,
        });
    }
    let plan = Plan {
        groups,
        socket: parsed.socket.map(PathBuf::from),
        http: parsed.http,
        log_format: parsed.log_format.unwrap_or_default(),
        on_group_failure: parsed.on_group_failure.unwrap_or_default(),
        node_preload: parsed.node_preload,
        warnings: Vec::new(),
    };
    Ok(plan)
}

/// The option a core error is about: every [`ConfigError`] message names it first, in backticks.
fn field_of(error: &ConfigError) -> String {
    let message = error.to_string();
    message
        .split('`')
        .nth(1)
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
    fn unknown_keys_and_wrong_types_carry_toml_spans() {
        let msg = error("[groups.web]\nprogram = \"sh\"\ncuont = 2\n");
        assert!(msg.starts_with("drover.toml:3:1:"), "{msg}");
        assert!(msg.contains("cuont"), "{msg}");
        let msg = error("[groups.web]\nprogram = \"sh\"\ncount = \"two\"\n");
        assert!(msg.starts_with("drover.toml:3:"), "{msg}");
        let msg = error("[groups.web\n");
        assert!(msg.starts_with("drover.toml:1:"), "{msg}");
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
