//! The config file is live: `drover reload` and SIGHUP read it again, apply what changed and say
//! what it was, and refuse a broken file while the running config stays. PM2 ecosystem files run
//! as drover groups, with their `env_NAME` sets, saying which keys drover ignores.

mod common;

use common::*;
use std::path::Path;

/// A group `web` of `count` workers that print `greeting=$GREETING` at start.
fn toml(count: &str, greeting: &str) -> String {
    let program = sh_worker("echo \"greeting=$GREETING\"");
    format!(
        "[groups.web]\nprogram = \"sh\"\nargs = {args}\ncount = {count}\nenv = {{ GREETING = \"{greeting}\" }}\n",
        args = serde_json::to_string(&program[1..]).unwrap(),
    )
}

fn rewrite(path: &Path, text: &str) {
    // A new file renamed over the old one, as editors and deploy tools do.
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn reload_and_sighup_read_the_file_again_and_a_broken_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "drover.toml", &toml("1", "one"));
    let file_arg = file.display().to_string();
    let mut drover = Drover::start_in(dir, &["-c", &file_arg], &[]);
    drover.wait_ready();
    drover.wait_line("greeting=one");

    // An edited file is applied by `drover reload`: what changed is said, then done.
    rewrite(&file, &toml("2", "two"));
    let out = drover.ctl_ok(&["reload"]);
    assert!(out.contains("reloaded web"), "{out}");
    drover.wait_line(r#"config changed: count: 1 → 2; env.GREETING: "one" → "two""#);
    assert_eq!(drover.worker_pids("web").len(), 2);
    assert_eq!(drover.count_lines("greeting=two"), 2, "{}", drover.transcript());

    // A broken file: the same error as at start, nothing reloaded, the workers untouched.
    let before = drover.worker_pids("web");
    rewrite(&file, &toml("0", "three"));
    let out = drover.ctl(&["reload"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("drover.toml:4: [groups.web] `count`: `count` must be at least 1, got 0"),
        "{said}"
    );
    assert!(said.contains("nothing reloaded"), "{said}");
    assert_eq!(drover.worker_pids("web"), before);
    assert_eq!(drover.count_lines("greeting=three"), 0);

    // SIGHUP (systemctl reload) reads it too.
    rewrite(&file, &toml("1", "four"));
    drover.signal(libc::SIGHUP);
    drover.wait_line(r#"config changed: count: 2 → 1; env.GREETING: "two" → "four""#);
    assert!(
        eventually(|| drover.count_lines("reloaded in") == 2),
        "{}",
        drover.transcript()
    );
    drover.wait_line("greeting=four");
    assert_eq!(drover.worker_pids("web").len(), 1);

    drover.ctl_ok(&["stop"]);
    assert!(drover.wait_exit(DEADLINE).success());
}

/// An ecosystem file with one app of the test worker behind `sh`, printing `A=$A`.
fn ecosystem(extra: &str) -> String {
    let program = sh_worker("echo \"A=$A\"");
    format!(
        "module.exports = {{ apps: [{{ name: 'api', script: 'sh', args: {args}, instances: 2,\n\
         env: {{ A: 'dev' }}, env_production: {{ A: 'prod' }}, max_memory_restart: '150M',\n\
         kill_timeout: 3000, watch: true, {extra} }}] }};\n",
        args = serde_json::to_string(&program[1..]).unwrap(),
    )
}

#[test]
fn a_pm2_ecosystem_file_runs_with_its_env_set_and_says_what_it_ignores() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "ecosystem.config.js", &ecosystem(""));
    let file_arg = file.display().to_string();

    // --check validates and lists what drover does not apply.
    let check = std::process::Command::new(drover_bin())
        .args(["run", "--check", "-c", &file_arg])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(said.contains("api: 2 worker(s) of /"), "{said}");
    assert!(
        said.contains("ignored: apps[0].watch: drover does not watch files"),
        "{said}"
    );

    let mut drover = Drover::start_in(dir, &["-c", &file_arg, "--env", "production"], &[]);
    drover.wait_ready();
    drover.wait_line("ignored apps[0].watch: drover does not watch files");
    assert_eq!(drover.worker_pids("api").len(), 2);
    drover.wait_line("A=prod");
    assert_eq!(drover.count_lines("A=dev"), 0);

    // A broken edit of the ecosystem file is refused by a reload, naming PM2's key.
    rewrite(&file, &ecosystem("instances: 'many'"));
    let out = drover.ctl(&["reload"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("ecosystem.config.js: apps[0]: `instances` must be a number or \"max\""),
        "{said}"
    );
    drover.ctl_ok(&["stop"]);
    assert!(drover.wait_exit(DEADLINE).success());

    // The same mistake at start: exit 2, nothing started.
    let bad = std::process::Command::new(drover_bin())
        .args(["run", "-c", &file_arg])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`instances`"));

    // A file that does not load: node's error, first lines.
    rewrite(&file, "module.exports = { apps: [ syntax error");
    let bad = std::process::Command::new(drover_bin())
        .args(["run", "--check", "-c", &file_arg])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(said.contains("node could not load it"), "{said}");
    assert!(said.contains("SyntaxError"), "{said}");
}

#[test]
fn cron_restart_reloads_the_group_at_its_times() {
    let dir = tempfile::tempdir().unwrap();
    // Every second (croner takes an optional seconds field).
    let text = format!("{}cronRestart = \"* * * * * *\"\n", toml("1", "cron"));
    let file = write(dir.path(), "drover.toml", &text);
    let file_arg = file.display().to_string();
    let mut drover = Drover::start_in(dir, &["-c", &file_arg], &[]);
    drover.wait_ready();
    let first = drover.worker_pids("web");
    drover.wait_line("web: cronRestart `* * * * * *`: reloading");
    assert!(
        eventually(|| drover.count_lines("reloaded in") >= 2),
        "{}",
        drover.transcript()
    );
    assert_ne!(drover.worker_pids("web"), first, "a new generation");
    // A reload that drops the schedule stops the cron reloads.
    rewrite(&file, &toml("1", "cron"));
    drover.ctl_ok(&["reload"]);
    drover.wait_line("config changed: cronRestart");
    drover.ctl_ok(&["stop"]);
    assert!(drover.wait_exit(DEADLINE).success());
}
