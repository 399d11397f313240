//! PM2 ecosystem files (`ecosystem.config.js`, `.cjs`, `.mjs`, `.json`) as drover groups.
//!
//! A `.js` file is a Node module: drover asks `node` (from PATH) to load it and print its export as
//! JSON, in the file's directory, within [`EVAL_TIMEOUT`] and [`MAX_EVAL_OUTPUT`]. Each entry of
//! `apps` becomes one group; its PM2 keys are translated to core's options (the table in
//! `cli/README.md`, "Coming from PM2"), and every key drover does not apply is listed back to the
//! user, never silently dropped. PM2's meanings are kept where they differ from drover's own
//! defaults: `autorestart` (on by default) restarts on any exit, and a size like `"150M"` is
//! 150 MiB, as PM2 reads it.

use serde_json::{json, Map, Value};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use wait_timeout::ChildExt;

use crate::config::{GroupSource, PlanError};

/// How long `node` may take to load an ecosystem file.
pub const EVAL_TIMEOUT: Duration = Duration::from_secs(10);
/// The most JSON an ecosystem file may print (a larger one is refused, not truncated).
pub const MAX_EVAL_OUTPUT: u64 = 4 * 1024 * 1024;

/// Loads the module and prints its export: CommonJS first, then ESM for `.mjs` or `"type": "module"`.
const EVAL_SCRIPT: &str = r#"
const file = process.argv[1];
(async () => {
  let exported;
  try { exported = require(file); }
  catch (e) {
    if (e.code !== 'ERR_REQUIRE_ESM' && !/\.mjs$/.test(file)) throw e;
    exported = (await import(require('node:url').pathToFileURL(file).href)).default;
  }
  if (exported && !exported.apps && exported.default) exported = exported.default;
  process.stdout.write(JSON.stringify(exported === undefined ? null : exported));
})().catch((e) => { process.stderr.write(String((e && e.stack) || e) + '\n'); process.exit(1); });
"#;

/// Whether `path` names a PM2 ecosystem file rather than a `drover.toml`.
pub fn is_ecosystem(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.ends_with(".js") || name.ends_with(".cjs") || name.ends_with(".mjs") || name.ends_with(".json")
}

/// The groups of the ecosystem file at `path`, with the keys drover ignores (as `apps[i].key`).
pub fn groups(path: &Path) -> Result<(Vec<GroupSource>, Vec<String>), PlanError> {
    let file = path.display().to_string();
    let document = if path.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(path).map_err(|error| PlanError::Read {
            file: file.clone(),
            error,
        })?;
        serde_json::from_str(&text).map_err(|e| PlanError::Syntax {
            file: file.clone(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?
    } else {
        evaluate(path)?
    };
    let failed = |message: String| PlanError::Ecosystem {
        file: file.clone(),
        message,
    };
    let apps = match document.get("apps") {
        Some(Value::Array(apps)) => apps.clone(),
        Some(Value::Object(app)) => vec![Value::Object(app.clone())],
        _ => return Err(failed("no `apps`: export `{ apps: [{ name, script, ... }] }`".into())),
    };
    let mut groups = Vec::new();
    let mut ignored = Vec::new();
    for (index, app) in apps.iter().enumerate() {
        let Value::Object(app) = app else {
            return Err(failed(format!("apps[{index}] is not an object")));
        };
        let (group, skipped) = translate(index, app).map_err(|message| failed(format!("apps[{index}]: {message}")))?;
        ignored.extend(skipped.into_iter().map(|key| format!("apps[{index}].{key}")));
        groups.push(group);
    }
    Ok((groups, ignored))
}

/// The export of a Node module, as JSON.
fn evaluate(path: &Path) -> Result<Value, PlanError> {
    let file = path.display().to_string();
    let failed = |message: String| PlanError::Ecosystem {
        file: file.clone(),
        message,
    };
    let absolute = std::path::absolute(path).map_err(|e| failed(e.to_string()))?;
    if !absolute.is_file() {
        return Err(PlanError::Read {
            file: file.clone(),
            error: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let mut child = Command::new("node")
        .arg("-e")
        .arg(EVAL_SCRIPT)
        .arg(&absolute)
        .current_dir(absolute.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("reading a PM2 ecosystem file needs `node` on PATH: {e}")))?;
    // Read both pipes on threads so that neither can fill and stall the child; bounded.
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(MAX_EVAL_OUTPUT + 1).read_to_end(&mut out);
            }
            out
        })
    };
    let stdout = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = match child.wait_timeout(EVAL_TIMEOUT) {
        Ok(Some(status)) => status,
        Ok(None) | Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!(
                "node did not load it within {} s",
                EVAL_TIMEOUT.as_secs()
            )));
        }
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if !status.success() {
        let text = String::from_utf8_lossy(&err);
        let first = text.lines().take(6).collect::<Vec<_>>().join("\n  ");
        return Err(failed(format!("node could not load it ({status}):\n  {first}")));
    }
    if out.len() as u64 > MAX_EVAL_OUTPUT {
        return Err(failed(format!("its export is over {} bytes of JSON", MAX_EVAL_OUTPUT)));
    }
    serde_json::from_slice(&out).map_err(|e| failed(format!("its export is not JSON: {e}")))
}

/// What drover does with each PM2 key it knows but does not apply, said to the user.
const IGNORED: &[(&str, &str)] = &[
    ("watch", "drover does not watch files: `drover reload` after a deploy"),
    ("ignore_watch", "drover does not watch files"),
    ("watch_options", "drover does not watch files"),
    ("merge_logs", "drover's log always says which worker wrote a line"),
    ("log_date_format", "drover's plain log has its own timestamps"),
    ("out_file", "drover writes to its stdout (see `drover logs`)"),
    ("error_file", "drover writes to its stdout (see `drover logs`)"),
    ("log_file", "drover writes to its stdout (see `drover logs`)"),
    ("pid_file", "drover does not write pid files: `drover status --json`"),
    ("combine_logs", "drover's log always says which worker wrote a line"),
    ("time", "drover's plain log has its own timestamps"),
    ("vizion", "no version control metadata"),
    ("post_update", "no deploy hooks"),
    ("force", "no effect"),
    ("source_map_support", "no effect"),
    ("instance_var", "drover sets NODE_APP_INSTANCE and DROVER_INSTANCE"),
    ("filter_env", "the environment is passed as it is"),
    ("namespace", "a drover config is its own namespace"),
    (
        "stop_exit_codes",
        "a worker's exit 0 is not restarted with restart = on-failure",
    ),
    (
        "shutdown_with_message",
        "drover stops a worker with its signal escalation",
    ),
    ("increment_var", "drover sets DROVER_INSTANCE"),
    ("treekill", "drover always stops a worker's whole process group"),
    ("appendEnvToName", "no effect"),
    ("automation", "no PM2 Plus"),
    ("pmx", "no PM2 Plus"),
    ("disable_trace", "no PM2 Plus"),
    ("trace", "no PM2 Plus"),
];

/// One app into core's options (as JSON), its `env_NAME` sets and cron schedule; the keys ignored.
fn translate(index: usize, app: &Map<String, Value>) -> Result<(GroupSource, Vec<String>), String> {
    let mut options = Map::new();
    let mut env_sets = std::collections::BTreeMap::new();
    let mut cron_restart = None;
    let mut ignored = Vec::new();
    let name = match app.get("name") {
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        Some(other) if !other.is_null() => return Err(format!("`name` must be a string, got {other}")),
        _ => format!("app{index}"),
    };
    let script = match app.get("script") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err("`script` is required (a JavaScript file or a program)".into()),
    };
    let interpreter = app.get("interpreter").and_then(Value::as_str).filter(|i| !i.is_empty());
    let is_js = [".js", ".cjs", ".mjs"].iter().any(|ext| script.ends_with(ext));
    let mut args: Vec<Value> = match app.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(line)) => shell_words::split(line)
            .map_err(|e| format!("`args`: {e}"))?
            .into_iter()
            .map(Value::String)
            .collect(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|a| match a {
                Value::String(_) => Ok(a.clone()),
                Value::Number(n) => Ok(Value::String(n.to_string())),
                other => Err(format!("`args` entries must be strings, got {other}")),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("`args` must be a string or an array, got {other}")),
    };
    let node_args: Vec<Value> = ["node_args", "interpreter_args"]
        .iter()
        .filter_map(|key| app.get(*key).map(|v| (key, v)))
        .map(|(key, value)| match value {
            Value::String(line) => shell_words::split(line)
                .map(|words| words.into_iter().map(Value::String).collect())
                .map_err(|e| format!("`{key}`: {e}")),
            Value::Array(list) => Ok(list.clone()),
            Value::Null => Ok(Vec::new()),
            other => Err(format!("`{key}` must be a string or an array, got {other}")),
        })
        .collect::<Result<Vec<Vec<Value>>, String>>()?
        .concat();
    match interpreter {
        Some("none") | None if !is_js => {
            options.insert("program".into(), json!(script));
        }
        Some("node") | None if node_args.is_empty() => {
            options.insert("script".into(), json!(script));
        }
        Some(interpreter) => {
            // node [node_args] script [args], python3 [interpreter_args] script [args]...
            options.insert("program".into(), json!(interpreter));
            args.splice(0..0, node_args.into_iter().chain([json!(script)]));
        }
        None => {
            options.insert("program".into(), json!("node"));
            args.splice(0..0, node_args.into_iter().chain([json!(script)]));
        }
    }
    if !args.is_empty() {
        options.insert("args".into(), Value::Array(args));
    }
    for (key, value) in app {
        let mut put = |ours: &str, v: Value| {
            options.insert(ours.into(), v);
        };
        match key.as_str() {
            "cwd" => put("cwd", value.clone()),
            "env" => put("env", value.clone()),
            "name" | "script" | "args" | "interpreter" | "node_args" | "interpreter_args" => {}
            "instances" => put("count", instances(value)?),
            "exec_mode" => match value.as_str() {
                Some("cluster" | "cluster_mode" | "fork" | "fork_mode") => {}
                _ => return Err(format!("`exec_mode` must be \"cluster\" or \"fork\", got {value}")),
            },
            "max_memory_restart" => put("maxMemoryBytes", pm2_size(value)?),
            "wait_ready" => {
                if value.as_bool() == Some(true) {
                    put("ready", json!("node-ipc"));
                }
            }
            "listen_timeout" => put("startTimeout", value.clone()),
            "kill_timeout" => put("killTimeout", value.clone()),
            "restart_delay" => put("restartDelay", value.clone()),
            "exp_backoff_restart_delay" => {
                // PM2's exponential backoff: ×1.5 per restart up to 15 s, reset after 30 s up.
                put("restartDelay", value.clone());
                put("restartBackoffFactor", json!(1.5));
                put("restartMaxDelay", json!(15_000));
            }
            "max_restarts" => put("maxRestarts", value.clone()),
            "min_uptime" => put("restartResetAfter", value.clone()),
            "autorestart" => {
                let on = value
                    .as_bool()
                    .ok_or(format!("`autorestart` must be true or false, got {value}"))?;
                put("restart", json!(if on { "always" } else { "never" }));
            }
            "cron_restart" => match value {
                Value::String(cron) => cron_restart = Some(cron.clone()),
                Value::Null | Value::Bool(false) => {}
                other => return Err(format!("`cron_restart` must be a cron expression, got {other}")),
            },
            other if other.starts_with("env_") => {
                env_sets.insert(other["env_".len()..].to_string(), value.clone());
            }
            other => {
                let known = IGNORED.iter().any(|(k, _)| *k == other);
                ignored.push(if known {
                    other.to_string()
                } else {
                    format!("{other} (unknown to drover)")
                });
            }
        }
    }
    // PM2 restarts any exit unless told otherwise.
    options.entry("restart").or_insert(json!("always"));
    options.insert("name".into(), json!(name));
    Ok((
        GroupSource {
            key: name,
            options,
            env_sets,
            cron_restart,
            ecv: None,
            pre_start: None,
            place: crate::config::Place::App(index),
        },
        ignored,
    ))
}

/// `instances`: a number, `"max"` / 0 (one per CPU) or -N (all CPUs but N).
fn instances(value: &Value) -> Result<Value, String> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1);
    let n = match value {
        Value::String(s) if s == "max" => 0,
        Value::String(s) => s
            .parse::<i64>()
            .map_err(|_| format!("`instances` must be a number or \"max\", got {s:?}"))?,
        Value::Number(n) => n
            .as_i64()
            .ok_or(format!("`instances` must be a whole number, got {n}"))?,
        other => return Err(format!("`instances` must be a number or \"max\", got {other}")),
    };
    Ok(json!(match n {
        0 => cpus,
        n if n < 0 => (cpus + n).max(1),
        n => n,
    }))
}

/// PM2's sizes: a number of bytes, or `"150M"`, `"1G"`, `"512K"` in powers of 1024.
fn pm2_size(value: &Value) -> Result<Value, String> {
    let Value::String(text) = value else {
        return Ok(value.clone());
    };
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len()));
    let multiplier: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "K" | "KB" => 1024.0,
        "M" | "MB" => 1024.0 * 1024.0,
        "G" | "GB" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "`max_memory_restart`: {text:?} is not a size (PM2 writes \"150M\", \"1G\")"
            ))
        }
    };
    let number: f64 = digits
        .parse()
        .map_err(|_| format!("`max_memory_restart`: {text:?} is not a size (PM2 writes \"150M\", \"1G\")"))?;
    Ok(json!((number * multiplier).round() as i64))
}

/// The PM2 key an option of core's came from, to name it in errors.
pub fn pm2_key(ours: &str) -> &str {
    match ours {
        "program" | "script" => "script",
        "count" => "instances",
        "maxMemoryBytes" => "max_memory_restart",
        "ready" => "wait_ready",
        "startTimeout" => "listen_timeout",
        "killTimeout" => "kill_timeout",
        "restartDelay" | "restartBackoffFactor" | "restartMaxDelay" => "restart_delay/exp_backoff_restart_delay",
        "maxRestarts" => "max_restarts",
        "restartResetAfter" => "min_uptime",
        "restart" => "autorestart",
        other => other,
    }
}

/// Why each ignored key is ignored, for the log.
pub fn why_ignored(key: &str) -> &'static str {
    let bare = key.rsplit('.').next().unwrap_or(key);
    IGNORED
        .iter()
        .find(|(k, _)| *k == bare)
        .map_or("not a PM2 key drover knows", |(_, why)| why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(value: Value) -> (GroupSource, Vec<String>) {
        let Value::Object(map) = value else { panic!("object") };
        translate(0, &map).expect("translates")
    }

    #[test]
    fn the_daily_keys_become_cores_options() {
        let (group, ignored) = app(json!({
            "name": "api", "script": "app.js", "args": "--port 3000 'a b'", "instances": 4,
            "exec_mode": "cluster", "env": { "NODE_ENV": "development" },
            "env_production": { "NODE_ENV": "production" }, "max_memory_restart": "150M",
            "wait_ready": true, "listen_timeout": 8000, "kill_timeout": 3000, "restart_delay": 100,
            "max_restarts": 10, "min_uptime": "5s", "cron_restart": "0 3 * * *", "cwd": "/srv/api",
            "watch": true, "frobnicate": 1,
        }));
        let o = &group.options;
        assert_eq!(o["script"], "app.js");
        assert_eq!(o["args"], json!(["--port", "3000", "a b"]));
        assert_eq!(o["count"], 4);
        assert_eq!(o["maxMemoryBytes"], 150 * 1024 * 1024);
        assert_eq!(o["ready"], "node-ipc");
        assert_eq!(o["startTimeout"], 8000);
        assert_eq!(o["killTimeout"], 3000);
        assert_eq!(o["restartDelay"], 100);
        assert_eq!(o["maxRestarts"], 10);
        assert_eq!(o["restartResetAfter"], "5s");
        assert_eq!(o["restart"], "always", "PM2 restarts any exit by default");
        assert_eq!(o["cwd"], "/srv/api");
        assert_eq!(group.env_sets["production"], json!({ "NODE_ENV": "production" }));
        assert_eq!(group.cron_restart.as_deref(), Some("0 3 * * *"));
        assert_eq!(ignored, ["frobnicate (unknown to drover)", "watch"]);
    }

    #[test]
    fn programs_interpreters_and_instance_counts() {
        let (group, _) = app(json!({ "script": "./server", "autorestart": false, "instances": "max" }));
        assert_eq!(group.options["program"], "./server");
        assert_eq!(group.options["restart"], "never");
        assert_eq!(group.key, "app0");
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        assert_eq!(group.options["count"], cpus);
        let (group, _) = app(json!({ "script": "worker.py", "interpreter": "python3", "args": ["-v"] }));
        assert_eq!(group.options["program"], "python3");
        assert_eq!(group.options["args"], json!(["worker.py", "-v"]));
        let (group, _) = app(json!({ "script": "a.js", "node_args": "--max-old-space-size=256", "args": ["x"] }));
        assert_eq!(group.options["program"], "node");
        assert_eq!(group.options["args"], json!(["--max-old-space-size=256", "a.js", "x"]));
        let (group, _) = app(json!({ "script": "a.js", "instances": -1 }));
        assert_eq!(group.options["count"], (cpus as i64 - 1).max(1));
    }

    #[test]
    fn bad_values_name_the_key() {
        let bad = |v: Value| {
            let Value::Object(map) = v else { panic!("object") };
            translate(0, &map).err().unwrap_or_default()
        };
        assert!(bad(json!({ "name": "x" })).contains("`script` is required"));
        assert!(bad(json!({ "script": "a.js", "instances": "many" })).contains("`instances`"));
        assert!(bad(json!({ "script": "a.js", "max_memory_restart": "lots" })).contains("`max_memory_restart`"));
        assert!(bad(json!({ "script": "a.js", "exec_mode": "swarm" })).contains("`exec_mode`"));
        assert!(bad(json!({ "script": "a.js", "autorestart": "yes" })).contains("`autorestart`"));
    }
}
