//! What an operator relies on, end to end: `/livez` apart from `/readyz`, `/metrics` (checked by a
//! strict exposition-format parser) with drover's own `process_*` series, per-worker gauges,
//! counters by reason and duration histograms; systemd's watchdog; running without a control
//! socket; finding a service's socket; CPU as a recent rate; completions and the man page.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn run_args<'a>(head: &[&'a str], program: &'a [String]) -> Vec<&'a str> {
    let mut args: Vec<&str> = head.to_vec();
    args.push("--");
    args.extend(program.iter().map(String::as_str));
    args
}

/// Parses the Prometheus text exposition format strictly: every sample belongs to a family
/// declared once by `# HELP` and `# TYPE` before it, families are not interleaved, no series twice,
/// labels well-formed, values numbers, counters named `_total`, histogram buckets cumulative and
/// ending at `+Inf` with `_count`. Returns every series (`name{labels}`) with its value.
fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut series = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = std::collections::BTreeSet::new();
    let mut done_families = std::collections::BTreeSet::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helped.insert(name.to_string()), "HELP twice: {at}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap(), parts.next().expect("a type"));
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{at}"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "a counter named _total: {at}");
            }
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice: {at}"
            );
            assert!(helped.contains(name), "HELP before TYPE: {at}");
            if let Some(previous) = current.replace(name.to_string()) {
                done_families.insert(previous);
            }
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{at}");
        let (key, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("a number: {at}")),
        };
        let name = key.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{at}"
        );
        if let Some(labels) = key.strip_prefix(name) {
            if !labels.is_empty() {
                let inner = labels
                    .strip_prefix('{')
                    .and_then(|l| l.strip_suffix('}'))
                    .unwrap_or_else(|| panic!("{at}"));
                for pair in split_labels(inner) {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{at}"));
                    assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{at}");
                    assert!(v.starts_with('"') && v.ends_with('"') && v.len() >= 2, "{at}");
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "a sample before its TYPE: {at}");
        assert_eq!(current.as_deref(), Some(family), "families interleaved: {at}");
        assert!(!done_families.contains(family), "{at}");
        assert!(series.insert(key.to_string(), value).is_none(), "a series twice: {at}");
    }
    // Histograms: cumulative buckets ending at +Inf == _count.
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let counts: Vec<(&String, &f64)> = series
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{family}_count")))
            .collect();
        for (count_key, count) in counts {
            let labels = count_key.strip_prefix(&format!("{family}_count")).unwrap();
            let labels = labels.trim_start_matches('{').trim_end_matches('}');
            let prefix = format!("{family}_bucket{{{labels},le=");
            let buckets: Vec<f64> = text
                .lines()
                .filter(|l| l.starts_with(&prefix))
                .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
                .collect();
            assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{family}: not cumulative");
            let inf = series[&format!("{prefix}\"+Inf\"}}")];
            assert_eq!(inf, *count, "{family}: +Inf bucket == count");
        }
    }
    series
}

/// Splits `a="x",b="y,z"` at the commas between pairs (not inside quoted values).
fn split_labels(inner: &str) -> Vec<&str> {
    let mut pairs = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                pairs.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pairs.push(&inner[start..]);
    pairs
}

/// `drover run -n COUNT --name web --restart RESTART --http 127.0.0.1:0 -- test-worker`.
fn http_web(count: &str, restart: &str, env: &[(&str, &str)]) -> Drover {
    let worker = test_worker();
    Drover::start(
        &[
            "-n",
            count,
            "--name",
            "web",
            "--restart",
            restart,
            "--http",
            "127.0.0.1:0",
            "--",
            worker.to_str().unwrap(),
        ],
        env,
    )
}

fn scrape(addr: &str) -> BTreeMap<String, f64> {
    let (code, text) = http_get(addr, "/metrics");
    assert_eq!(code, 200, "{text}");
    parse_exposition(&text)
}

fn value(metrics: &BTreeMap<String, f64>, series: &str) -> f64 {
    *metrics
        .get(series)
        .unwrap_or_else(|| panic!("no series {series} in {:#?}", metrics.keys().collect::<Vec<_>>()))
}

#[test]
fn livez_stays_up_while_readyz_follows_the_groups() {
    let drover = http_web("2", "on-failure", &[("DROVER_TEST_MODE", "start-after-ms:1500")]);
    let addr = drover.http_addr();
    // Starting: alive, not ready.
    assert_eq!(http_get(&addr, "/livez"), (200, "ok: supervising\n".into()));
    let (code, body) = http_get(&addr, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.starts_with("web: "), "{body}");
    assert_eq!(http_get(&addr, "/health").0, 503, "/health is /readyz");
    drover.wait_ready();
    assert_eq!(http_get(&addr, "/readyz"), (200, "ok\n".into()));
    assert_eq!(http_get(&addr, "/health"), (200, "ok\n".into()));

    // A worker crashes and is restarted: not ready for a while, alive throughout.
    let pids = drover.worker_pids("web");
    // SAFETY: kill on a worker's pid.
    unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) };
    drover.wait_line("[web 1] drover: restarting in");
    let (code, body) = http_get(&addr, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert_eq!(http_get(&addr, "/livez").0, 200);
    assert!(eventually(|| http_get(&addr, "/readyz").0 == 200));
    drover.ctl_ok(&["stop"]);
}

#[test]
fn metrics_parse_strictly_and_cover_drover_each_worker_restarts_and_durations() {
    let drover = http_web("2", "on-failure", &[]);
    let addr = drover.http_addr();
    drover.wait_ready();
    let first = drover.worker_pids("web");
    // SAFETY: kill on a worker's pid.
    unsafe { libc::kill(first[0] as i32, libc::SIGKILL) };
    drover.wait_line_where("worker 1 STARTED again", |l| {
        l.starts_with("[web 1 pid") && l.ends_with("drover: started") && !l.contains(&format!("pid {}]", first[0]))
    });
    drover.ctl_ok(&["reload"]);
    // The events of the reload's last moments may still be on their way to the counters.
    let mut m = scrape(&addr);
    eventually(|| {
        m = scrape(&addr);
        m.get(r#"drover_worker_start_duration_seconds_count{group="web"}"#) == Some(&5.0)
    });

    assert_eq!(
        value(
            &m,
            &format!("drover_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            r#"drover_worker_restarts_total{group="web",reason="ExternalSignal"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&m, r#"drover_worker_restarts_total{group="web",reason="AbnormalExit"}"#),
        0.0
    );
    assert_eq!(
        value(&m, r#"drover_worker_recycles_total{group="web",reason="age"}"#),
        0.0
    );
    // Two at the start, one restart, two in the reload.
    assert_eq!(
        value(&m, r#"drover_worker_start_duration_seconds_count{group="web"}"#),
        5.0
    );
    assert!(value(&m, r#"drover_worker_start_duration_seconds_sum{group="web"}"#) > 0.0);
    assert_eq!(value(&m, r#"drover_reload_duration_seconds_count{group="web"}"#), 1.0);
    assert!(value(&m, r#"drover_reload_duration_seconds_sum{group="web"}"#) > 0.0);
    assert_eq!(value(&m, r#"drover_group_status{group="web",status="STARTED"}"#), 1.0);
    assert_eq!(value(&m, r#"drover_group_status{group="web",status="FAILED"}"#), 0.0);

    // A gauge per live worker, by id.
    let status = drover.status();
    let live: Vec<&serde_json::Value> = status["groups"][0]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["exit"].is_null())
        .collect();
    assert_eq!(live.len(), 2, "{status}");
    for w in live {
        let id = &w["id"];
        assert!(
            value(
                &m,
                &format!("drover_worker_resident_memory_bytes{{group=\"web\",id=\"{id}\"}}")
            ) > 100_000.0
        );
        assert!(
            value(
                &m,
                &format!("drover_worker_cpu_seconds_total{{group=\"web\",id=\"{id}\"}}")
            ) >= 0.0
        );
    }

    // drover's own process.
    let me = drover.pid();
    let rss = value(&m, "process_resident_memory_bytes");
    assert!(rss > 1_000_000.0 && rss < 200_000_000.0, "{rss}");
    assert!(value(&m, "process_virtual_memory_bytes") >= rss);
    let fds = value(&m, "process_open_fds");
    assert!(fds >= 3.0 && fds <= value(&m, "process_max_fds"), "{fds}");
    assert!(value(&m, "process_threads") >= 1.0);
    assert!(value(&m, "process_cpu_seconds_total") >= 0.0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let started = value(&m, "process_start_time_seconds");
    assert!(
        (now - started).abs() < 120.0,
        "drover {me} started at {started}, now {now}"
    );
    drover.ctl_ok(&["stop"]);
}

#[test]
fn a_worker_that_failed_is_counted_in_the_failed_gauge() {
    let drover = http_web("2", "never", &[]);
    let addr = drover.http_addr();
    drover.wait_ready();
    assert_eq!(
        value(&scrape(&addr), r#"drover_workers{group="web",status="FAILED"}"#),
        0.0
    );
    let pids = drover.worker_pids("web");
    // SAFETY: kill on a worker's pid.
    unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) };
    drover.wait_line("drover: exited: killed by SIGKILL");
    let failed_in_status = || {
        drover.status()["groups"][0]["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["status"] == "FAILED")
            .count()
    };
    assert!(eventually(|| failed_in_status() == 1), "{}", drover.status());
    let m = scrape(&addr);
    assert_eq!(
        value(&m, r#"drover_workers{group="web",status="FAILED"}"#),
        failed_in_status() as f64,
        "the gauge agrees with `drover status`"
    );
    assert_eq!(value(&m, r#"drover_workers{group="web",status="STARTED"}"#), 1.0);
}

#[test]
fn drover_pets_the_systemd_watchdog_from_its_main_loop() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let worker = test_worker();
    let mut drover = Drover::start_in(
        dir,
        &["-n", "1", "--name", "web", "--", worker.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            // 400 ms: a pet every 200 ms.
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    drover.wait_line("systemd watchdog: WATCHDOG=1 every 200ms");
    let pets_within = |within: Duration| {
        let end = Instant::now() + within;
        let mut pets = 0;
        let mut buf = [0u8; 4096];
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            notify
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match notify.recv(&mut buf) {
                Ok(n) if &buf[..n] == b"WATCHDOG=1" => pets += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        pets
    };
    let mut pets = 0;
    let end = Instant::now() + DEADLINE;
    while pets < 3 && Instant::now() < end {
        pets += pets_within(Duration::from_millis(500));
    }
    assert!(pets >= 3, "WATCHDOG=1 keeps coming: {pets}");
    // A master that does not run does not pet: stopped, it sends nothing for 5 of its intervals.
    drover.signal(libc::SIGSTOP);
    pets_within(Duration::from_millis(100)); // a pet in flight as it stopped
    assert_eq!(pets_within(Duration::from_secs(1)), 0, "a stopped master pets nothing");
    drover.signal(libc::SIGCONT);
    let mut again = 0;
    let end = Instant::now() + DEADLINE;
    while again == 0 && Instant::now() < end {
        again += pets_within(Duration::from_millis(500));
    }
    assert!(again > 0, "pets resume");

    // WATCHDOG_PID naming another process: the watchdog is not ours.
    drover.signal(libc::SIGTERM);
    assert!(drover.wait_exit(DEADLINE).success());
    let other = Drover::start(
        &["-n", "1", "--name", "web", "--", worker.to_str().unwrap()],
        &[("WATCHDOG_USEC", "400000"), ("WATCHDOG_PID", "1")],
    );
    other.wait_ready();
    assert_eq!(other.count_lines("systemd watchdog"), 0, "{}", other.transcript());
}

#[test]
fn without_a_control_socket_drover_runs_and_stops_on_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("run");
    let worker = test_worker();
    let mut child = KillOnDrop(
        Command::new(drover_bin())
            .args(["run", "--no-socket", "-n", "1", "--name", "web", "--"])
            .arg(&worker)
            .current_dir(dir.path())
            .env("RUNTIME_DIRECTORY", &runtime)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env_remove("DROVER_SOCKET")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("every group is STARTED") {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("no control socket (--no-socket)")),
        "{seen:#?}"
    );
    assert!(
        !runtime.join("drover.sock").exists() && !runtime.exists(),
        "nothing created"
    );
    // SAFETY: SIGTERM to our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let out = Command::new(drover_bin())
        .args(["run", "--no-socket", "--socket", "x.sock", "--", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "--no-socket and --socket conflict");
}

#[test]
fn a_client_finds_a_services_socket_in_its_runtime_directory() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("rt");
    let worker = test_worker();
    let spawn_env = |cmd: &mut Command| {
        cmd.env("RUNTIME_DIRECTORY", &runtime)
            .env("XDG_RUNTIME_DIR", dir.path().join("elsewhere"))
            .env_remove("DROVER_SOCKET");
    };
    let mut run = Command::new(drover_bin());
    run.args(["run", "-n", "1", "--name", "web", "--"])
        .arg(&worker)
        .env("DROVER_TIMESTAMPS", "never")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    spawn_env(&mut run);
    let mut child = KillOnDrop(run.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let mut control_line = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.unwrap();
        if line.contains("every group is STARTED") {
            break;
        }
        if line.contains("control socket ") {
            control_line = line;
        }
    }
    let expected = runtime.join("drover.sock");
    assert_eq!(control_line, format!("drover: control socket {}", expected.display()));
    let mut status = Command::new(drover_bin());
    status.args(["status", "--json"]);
    spawn_env(&mut status);
    let out = status.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["pid"], child.0.id());

    // With nothing at any candidate, the error names every path tried.
    let mut lost = Command::new(drover_bin());
    lost.args(["status"])
        .env("RUNTIME_DIRECTORY", dir.path().join("none"))
        .env("XDG_RUNTIME_DIR", dir.path().join("none2"))
        .env_remove("DROVER_SOCKET");
    let out = lost.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no socket at any of") && err.contains("none2/drover.sock"),
        "{err}"
    );
    // SAFETY: SIGTERM to our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    assert!(child.0.wait().unwrap().success());
}

#[test]
fn status_cpu_is_a_recent_rate_not_a_lifetime_average() {
    // A second or so of busy loop in the shell (no child process: its own CPU time) before it
    // becomes the worker (`exec`: the same process), then idle.
    let program = sh_worker("i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done");
    let launched = Instant::now();
    let drover = Drover::start(&run_args(&["-n", "1", "--name", "web"], &program), &[]);
    drover.wait_ready();
    let worker = || drover.status()["groups"][0]["workers"][0].clone();
    let busy = worker()["cpu_seconds"].as_f64().unwrap();
    assert!(busy > 0.3, "the worker burnt CPU before it started: {busy}s");
    // Idle now: the recent rate is under 10 % while the lifetime average (at least the CPU time
    // over the time since launch) is still well above it.
    loop {
        let w = worker();
        let recent = w["cpu_percent"].as_f64().unwrap();
        let cpu = w["cpu_seconds"].as_f64().unwrap();
        let lifetime_at_least = 100.0 * cpu / launched.elapsed().as_secs_f64();
        if recent < 10.0 {
            assert!(
                lifetime_at_least > 15.0,
                "recent {recent:.1}%, lifetime {lifetime_at_least:.1}%: not told apart"
            );
            eprintln!("recent CPU {recent:.1}% while the lifetime average is over {lifetime_at_least:.1}%");
            break;
        }
        assert!(
            lifetime_at_least > 15.0,
            "the recent rate stayed at {recent:.1}% for as long as the lifetime average was above 15%"
        );
    }
    drover.ctl_ok(&["stop"]);
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(drover_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("drover") && text.contains("logs") && text.contains("log-file"),
            "{shell}: {text}"
        );
    }
    let out = Command::new(drover_bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unknown shell is refused");
    let out = Command::new(drover_bin()).arg("man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.starts_with(".ie") || page.contains(".TH drover 1"), "{page}");
    for section in ["DROVER RUN", "DROVER LOGS", "DROVER STATUS"] {
        assert!(page.contains(section), "{section} in the man page");
    }
    assert!(
        page.contains("log\\-file") && page.contains("no\\-socket"),
        "every flag: {page}"
    );
}

#[test]
fn status_shows_who_leads_each_leadership_and_a_new_leader_after_the_old_one_is_killed() {
    let worker = test_worker();
    let mut drover = Drover::start(
        &[
            "-n",
            "3",
            "--name",
            "web",
            "--restart",
            "on-failure",
            "--",
            worker.to_str().unwrap(),
        ],
        &[("DROVER_TEST_LEADERSHIP", "db")],
    );
    drover.wait_ready();
    // (leader id, term) of leadership `db` once all three workers have joined it.
    let leader_of = |status: &serde_json::Value| -> Option<(u64, u64)> {
        let l = &status["groups"][0]["leaders"][0];
        if l["key"] != "db" || l["participants"] != 3 {
            return None;
        }
        Some((l["leader"].as_u64()?, l["term"].as_u64()?))
    };
    let mut first = None;
    assert!(eventually(|| {
        first = leader_of(&drover.status());
        first.is_some()
    }));
    let (leader, term) = first.unwrap();
    let text = drover.ctl_ok(&["status"]);
    assert!(
        text.contains(&format!("leader of db: worker {leader} (term {term}, 3 joined)")),
        "{text}"
    );
    // kill -9 the leader: another worker leads, at a later term.
    let status = drover.status();
    let pid = status["groups"][0]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == leader)
        .and_then(|w| w["pid"].as_u64())
        .unwrap();
    // SAFETY: kill(2) on a worker of this test.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    assert!(eventually(|| {
        matches!(leader_of(&drover.status()), Some((l, t)) if l != leader && t > term)
    }));
    drover.ctl_ok(&["stop"]);
    assert!(drover.wait_exit(Duration::from_secs(20)).success());
}
