//! What production relies on: `/health` and `/metrics`, systemd's notify protocol, orphan reaping,
//! and the systemd and Kubernetes examples (syntax, and the configs they carry validated by drover).

mod common;

use common::*;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[test]
fn health_flips_503_to_200_and_metrics_count_what_happened() {
    let worker = test_worker();
    let drover = Drover::start(
        &[
            "-n",
            "2",
            "--name",
            "web",
            "--restart",
            "on-failure",
            "--http",
            "127.0.0.1:0",
            "--",
            worker.to_str().unwrap(),
        ],
        &[("DROVER_TEST_MODE", "start-after-ms:1000")],
    );
    let addr = drover.http_addr();
    let old_pid = drover
        .wait_line("[web 1 pid ")
        .split_whitespace()
        .nth(3)
        .unwrap()
        .trim_end_matches(']')
        .to_string();
    // Workers take a second to report STARTED: 503, naming the group that is short.
    let (code, body) = http_get(&addr, "/health");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.starts_with("web: 0/2 STARTED") || body.starts_with("web: 1/2 STARTED"),
        "{body}"
    );
    drover.wait_ready();
    assert_eq!(http_get(&addr, "/health"), (200, "ok\n".into()));
    assert_eq!(http_get(&addr, "/nope").0, 404);

    // A message each way, then a crash that the restart policy answers.
    drover.ctl_ok(&["send", "web", "id:2", r#"{"cmd":"echo"}"#]);
    drover.wait_line("message: {\"echo\"");
    drover.ctl_ok(&["send", "web", "id:1", r#"{"cmd":"exit","code":3}"#]);
    drover.wait_line("[web 1] drover: restarting in");
    let (code, body) = http_get(&addr, "/health");
    assert_eq!(code, 503, "one worker is down: {body}");
    assert!(body.starts_with("web: 1/2 STARTED"), "{body}");
    drover.wait_line_where("worker 1 STARTED again, in a new process", |l| {
        l.starts_with("[web 1 pid") && l.ends_with("drover: started") && !l.contains(&format!("pid {old_pid}]"))
    });
    assert!(eventually(|| http_get(&addr, "/health").0 == 200));

    drover.ctl_ok(&["reload"]);
    let (code, text) = http_get(&addr, "/metrics");
    assert_eq!(code, 200);
    assert_eq!(metric(&text, r#"drover_workers{group="web",status="STARTED"}"#), 2.0);
    assert_eq!(metric(&text, r#"drover_workers_desired{group="web"}"#), 2.0);
    assert_eq!(metric(&text, r#"drover_group_up{group="web"}"#), 1.0);
    // The restart is counted under how the worker had exited.
    assert_eq!(
        metric(
            &text,
            r#"drover_worker_restarts_total{group="web",reason="AbnormalExit"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"drover_worker_restarts_total{group="web",reason="ExternalSignal"}"#
        ),
        0.0
    );
    assert_eq!(
        metric(
            &text,
            r#"drover_worker_exits_total{group="web",reason="AbnormalExit",requested="false"}"#
        ),
        1.0
    );
    // The reload ended the two old workers, as asked.
    assert_eq!(
        metric(
            &text,
            r#"drover_worker_exits_total{group="web",reason="NormalExit",requested="true"}"#
        ),
        2.0
    );
    assert_eq!(metric(&text, r#"drover_reloads_total{group="web",outcome="ok"}"#), 1.0);
    assert_eq!(
        metric(&text, r#"drover_reloads_total{group="web",outcome="rolled_back"}"#),
        0.0
    );
    assert_eq!(
        metric(&text, r#"drover_ipc_messages_total{group="web",direction="to_worker"}"#),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            r#"drover_ipc_messages_total{group="web",direction="from_worker"}"#
        ),
        1.0
    );
    assert_eq!(metric(&text, "drover_log_lines_dropped_total"), 0.0);
    assert!(text.contains("# TYPE drover_worker_restarts_total counter"));
    drover.ctl_ok(&["stop"]);
}

#[test]
fn under_systemd_drover_notifies_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(DEADLINE)).unwrap();
    let recv = || {
        let mut buf = [0u8; 4096];
        let n = notify.recv(&mut buf).expect("a notification within the deadline");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let worker = test_worker();
    let mut drover = Drover::start_in(
        dir,
        &["-n", "2", "--name", "web", "--", worker.to_str().unwrap()],
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())],
    );
    let ready = recv();
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    assert_eq!(
        drover.status()["groups"][0]["started"],
        2,
        "READY=1 only once every worker is STARTED"
    );

    drover.signal(libc::SIGHUP);
    let reloading = recv();
    assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading:?}");
    let usec: u64 = reloading.lines().nth(1).unwrap()["MONOTONIC_USEC=".len()..]
        .parse()
        .unwrap();
    assert!(usec > 0);
    assert!(recv().starts_with("READY=1\n"), "READY=1 again after the reload");

    drover.signal(libc::SIGTERM);
    assert!(recv().starts_with("STOPPING=1\n"));
    assert!(drover.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn a_subreaper_drover_reaps_orphans_without_stealing_workers_exits() {
    let worker = test_worker();
    let drover = Drover::start(
        &[
            "--subreaper",
            "-n",
            "2",
            "--name",
            "web",
            "--",
            worker.to_str().unwrap(),
        ],
        &[],
    );
    drover.wait_ready();
    let pids = drover.worker_pids("web");
    let grandchild = drover.spawn_grandchild("web", 1);

    // The worker leaves: its child is orphaned, adopted by drover and killed with the group.
    drover.ctl_ok(&["send", "web", "id:1", r#"{"cmd":"exit","code":4}"#]);
    // Core still saw the worker's own exit: the reaper did not steal it.
    drover.wait_line(&format!(
        "[web 1 pid {}] drover: exited: exited with code 4 in status STARTED, unasked",
        pids[0]
    ));
    drover.wait_line(&format!(
        "drover: reaped orphan pid {grandchild} (killed by SIGKILL (9))"
    ));
    assert!(
        eventually(|| !Path::new(&format!("/proc/{grandchild}")).exists()),
        "no zombie left"
    );
    assert_eq!(drover.count_lines("reaped orphan"), 1, "{}", drover.transcript());
    // The other worker is untouched and still stops cleanly.
    let mut drover = drover;
    drover.ctl_ok(&["stop"]);
    drover.wait_exit(Duration::from_secs(10));
    drover.wait_line(&format!(
        "[web 2 pid {}] drover: exited: exited with code 0 in status SHUTTED_DOWN, as asked",
        pids[1]
    ));
}

fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join(path)
}

/// `drover run --check -c` on `toml`, with every program replaced by the test worker.
fn check_config(toml_text: &str, program: &str) {
    let dir = tempfile::tempdir().unwrap();
    let text = toml_text.replace(program, test_worker().to_str().unwrap());
    write(dir.path(), "drover.toml", &text);
    let out = Command::new(drover_bin())
        .current_dir(dir.path())
        .args(["run", "--check", "-c", "drover.toml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_systemd_unit_verifies_and_relies_on_what_drover_does() {
    let unit = std::fs::read_to_string(example("systemd/drover.service")).unwrap();
    let socket = std::fs::read_to_string(example("systemd/drover.socket")).unwrap();
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    assert!(has("Type=notify"), "drover sends READY=1 (tested above)");
    assert!(has("NotifyAccess=main"));
    assert!(
        has("KillMode=mixed"),
        "SIGTERM to drover only; drover stops its workers"
    );
    assert!(
        has("ExecReload=/usr/local/bin/drover reload"),
        "a reload that waits for its outcome"
    );
    assert!(socket.lines().any(|l| l.starts_with("ListenStream=")));
    // Hardened: its own user, a read-only system, no privileges; the watchdog drover pets.
    for line in [
        "User=drover",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "RuntimeDirectory=drover",
        "WatchdogSec=30",
    ] {
        assert!(has(line), "{line}");
    }
    check_config(
        &std::fs::read_to_string(example("systemd/drover.toml")).unwrap(),
        "/usr/local/bin/my-server",
    );

    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: syntax checked by the assertions above only");
        return;
    };
    assert!(out.status.success());
    // verify wants ExecStart's binary to exist: point it at the one under test.
    let dir = tempfile::tempdir().unwrap();
    let service = unit.replace("/usr/local/bin/drover", drover_bin().to_str().unwrap());
    write(dir.path(), "drover.service", &service);
    write(dir.path(), "drover.socket", &socket);
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("drover.service"))
        .arg(dir.path().join("drover.socket"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let complaints: Vec<&str> = stderr.lines().filter(|l| l.contains("drover.s")).collect();
    assert!(complaints.is_empty(), "systemd-analyze verify: {complaints:#?}");

    // The exposure systemd rates it: "OK" (under 4.0); the unit's comment says the score.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(dir.path().join("drover.service"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let overall = text
        .lines()
        .find_map(|l| l.split("drover.service: ").nth(1))
        .unwrap_or_else(|| panic!("no overall exposure in {text}"));
    let score: f64 = overall.split_whitespace().next().unwrap().parse().unwrap();
    eprintln!("systemd-analyze security --offline=yes: {overall}");
    assert!(score < 4.0 && overall.contains("OK"), "{overall}");
    assert!(
        unit.contains(&format!("rates this unit {score:.1} OK")),
        "the unit's comment says {score:.1}"
    );
}

#[test]
fn the_kubernetes_deployment_probes_health_and_waits_for_a_graceful_stop() {
    use yaml_rust2::{Yaml, YamlLoader};
    let text = std::fs::read_to_string(example("kubernetes/deployment.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).expect("valid YAML");
    let kind = |d: &Yaml| d["kind"].as_str().map(str::to_string);
    let deployment = docs
        .iter()
        .find(|d| kind(d).as_deref() == Some("Deployment"))
        .expect("a Deployment");
    let config_map = docs
        .iter()
        .find(|d| kind(d).as_deref() == Some("ConfigMap"))
        .expect("a ConfigMap");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];

    // drover serves /health on the port the probes use.
    let args: Vec<&str> = container["args"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let http = args[args.iter().position(|a| *a == "--http").expect("--http") + 1];
    let http_port: i64 = http.rsplit(':').next().unwrap().parse().unwrap();
    let port_named = |name: &str| {
        container["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_i64())
    };
    // Liveness apart from readiness: a restart of a worker makes the pod unready, never killed.
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/livez")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        let port = get["port"]
            .as_i64()
            .or_else(|| get["port"].as_str().and_then(port_named));
        assert_eq!(port, Some(http_port), "{probe} on drover's --http port");
    }

    // The grace period covers the preStop pause and drover's whole stop escalation.
    let config = config_map["data"]["drover.toml"]
        .as_str()
        .expect("drover.toml in the ConfigMap");
    let table: toml::Table = toml::from_str(config).unwrap();
    let mut longest_stop_ms = 0;
    for (_, group) in table["groups"].as_table().unwrap() {
        // Core's defaults where the group sets nothing.
        let defaults = drover::Timeouts::default();
        let ms = |k: &str, default: std::time::Duration| {
            group
                .get(k)
                .and_then(toml::Value::as_integer)
                .unwrap_or(default.as_millis() as i64)
        };
        longest_stop_ms = longest_stop_ms.max(
            ms("stopTimeout", defaults.stop) + ms("quitTimeout", defaults.quit) + ms("killTimeout", defaults.kill),
        );
    }
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_i64()
        .unwrap_or(0);
    let grace = pod["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace * 1000 > pre_stop * 1000 + longest_stop_ms,
        "grace {grace}s < {pre_stop}s + {longest_stop_ms}ms"
    );
    assert_eq!(
        container["command"][0].as_str(),
        Some("/usr/local/bin/drover"),
        "drover is PID 1"
    );
    // Bounded, unprivileged, read-only: no control socket to write.
    assert!(
        args.contains(&"--no-socket"),
        "a read-only root filesystem needs no socket"
    );
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(security["capabilities"]["drop"][0].as_str(), Some("ALL"));
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );
    for kind in ["requests", "limits"] {
        assert!(container["resources"][kind]["memory"].as_str().is_some(), "{kind}");
    }
    assert!(container["resources"]["requests"]["cpu"].as_str().is_some());
    check_config(config, "/app/server");
}
