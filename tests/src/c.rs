//! C programs for the tests: compiled with `cc` against `include/drover.h` and the `libdrover`
//! that `cargo build --workspace` put in target/debug.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::target_bin;

/// How a C program is linked to libdrover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Linkage {
    /// libdrover.a.
    Static,
    /// libdrover.so, found through an rpath to target/debug.
    Shared,
    /// Shared, with the C code built with AddressSanitizer (and its LeakSanitizer, which sees every
    /// allocation of the process, Rust's included).
    SharedAsan,
}

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// target/debug, where cargo put libdrover.so, libdrover.a and drover-test-worker.
pub fn target_dir() -> PathBuf {
    target_bin("libdrover.so").parent().expect("target/debug").to_path_buf()
}

/// The SONAME libdrover.so is built with (ffi/build.rs): what a program linked to it asks the
/// dynamic loader for.
pub const SONAME: &str = "libdrover.so.0";

/// Makes `lib/libdrover.so.0` a link to the libdrover.so cargo built there, as an install does:
/// a program linked with `-ldrover` records the SONAME and looks for that name at run time.
fn link_soname(lib: &Path) {
    let link = lib.join(SONAME);
    if std::fs::read_link(&link).is_ok_and(|to| to == Path::new("libdrover.so")) {
        return;
    }
    // Made under a name of this process's own and renamed: other test processes do the same.
    let partial = lib.join(format!("{SONAME}.{}.partial", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    std::os::unix::fs::symlink("libdrover.so", &partial).expect("link libdrover.so.0 in target/debug");
    std::fs::rename(&partial, &link).expect("move the libdrover.so.0 link into place");
}

/// Compiles `tests/c/<name>.c` once per linkage (per test process) and returns the executable.
pub fn program(name: &str, linkage: Linkage) -> PathBuf {
    compile(&format!("tests/c/{name}.c"), linkage)
}

/// Compiles the C file at `source` (relative to the workspace) once per linkage (per test
/// process), with `-Wall -Wextra -Werror`, and returns the executable, in target/tmp/c.
pub fn compile(source: &str, linkage: Linkage) -> PathBuf {
    static BUILT: Mutex<BTreeMap<(String, Linkage), PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(exe) = built.get(&(source.to_string(), linkage)) {
        return exe.clone();
    }
    let lib = target_dir();
    for file in ["libdrover.so", "libdrover.a"] {
        assert!(
            lib.join(file).exists(),
            "{} is missing: build the workspace first (cargo test --workspace builds it)",
            lib.join(file).display()
        );
    }
    link_soname(&lib);
    let out_dir = lib
        .parent()
        .expect("target/debug is inside the target dir")
        .join("tmp")
        .join("c");
    std::fs::create_dir_all(&out_dir).expect("create the C build dir");
    let exe = out_dir.join(format!("{}-{linkage:?}", source.replace('/', "-").trim_end_matches(".c")).to_lowercase());
    // Built under a name of this process's own, then renamed over `exe`: another test process may
    // be running the previous build (a rename leaves it running; writing into it would fail).
    let partial = exe.with_extension(format!("{}.partial", std::process::id()));
    let mut cc = Command::new("cc");
    cc.args([
        "-std=c11",
        "-D_GNU_SOURCE",
        "-g",
        "-O0",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-I",
    ])
    .arg(workspace().join("include"))
    .arg("-I")
    .arg(workspace().join("tests/c"))
    .arg(workspace().join(source))
    .arg("-o")
    .arg(&partial);
    match linkage {
        Linkage::Shared | Linkage::SharedAsan => {
            if linkage == Linkage::SharedAsan {
                cc.args(["-fsanitize=address", "-fno-omit-frame-pointer"]);
            }
            cc.arg("-L")
                .arg(&lib)
                .arg("-ldrover")
                .arg(format!("-Wl,-rpath,{}", lib.display()));
        }
        Linkage::Static => {
            cc.arg(lib.join("libdrover.a"));
        }
    }
    cc.args(["-lpthread", "-ldl", "-lm"]);
    let output = cc.output().expect("cc runs");
    assert!(
        output.status.success(),
        "cc failed for {source} ({linkage:?}):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&partial, &exe).expect("move the C program into place");
    built.insert((source.to_string(), linkage), exe.clone());
    exe
}

/// valgrind memcheck, failing on any error, on definite or possible leaks, and on invalid access.
pub fn valgrind() -> Command {
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--leak-check=full",
        "--error-exitcode=99",
        "--errors-for-leak-kinds=definite,possible",
        "--show-leak-kinds=definite,possible",
        "--track-fds=no",
        "--quiet",
    ]);
    cmd.arg(format!(
        "--suppressions={}",
        workspace().join("tests/c/valgrind.supp").display()
    ));
    cmd
}

/// Where workers run under [`valgrind`] write their reports: one `worker-PID.log` each, in a
/// directory emptied for the test.
pub struct ValgrindLogs {
    dir: PathBuf,
}

impl ValgrindLogs {
    /// `dir`, emptied (the test's own, e.g. under `CARGO_TARGET_TMPDIR`).
    pub fn fresh(dir: PathBuf) -> ValgrindLogs {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create valgrind's log dir");
        ValgrindLogs { dir }
    }

    /// A config whose workers are `worker` under valgrind, logging here. valgrind exits with 99 on
    /// any error, so a worker's clean exit 0 after a shutdown is a clean run.
    pub fn config(&self, worker: &Path) -> drover::MasterConfig {
        drover::MasterConfig::program("valgrind")
            .args(valgrind().get_args().map(|a| a.to_os_string()))
            .arg(format!("--log-file={}/worker-%p.log", self.dir.display()))
            .arg(worker)
    }

    /// Everything valgrind wrote, for an assertion's message.
    pub fn read(&self) -> String {
        std::fs::read_dir(&self.dir)
            .map(|dir| {
                dir.flatten()
                    .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A finished program's status, stdout and stderr, for an assertion's message.
pub fn show(output: &std::process::Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs the C example's `master` with 2 copies of its `worker` on a free port, as its README does:
/// both start, the declared socket is bound before them and serves HTTP, and SIGTERM stops every
/// worker gracefully and the master with status 0.
pub fn serve_and_stop_c_example(master: &Path, worker: &Path) {
    use std::io::{BufRead, BufReader, Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new(master)
        .arg(worker)
        .arg("2")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the example master runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("a line");
        seen.push(line.clone());
        if line.starts_with("started 2 workers") {
            break;
        }
    }
    assert!(seen.iter().any(|l| l.starts_with("started 2 workers")), "{seen:?}");
    // The master declared the socket (from PORT) and bound it before the workers started.
    assert!(
        seen.iter().any(|l| *l == format!("listening on 127.0.0.1:{port}")),
        "{seen:?}"
    );
    // The master asked every worker's "stats" handler, before "started 2 workers".
    let stats = seen.iter().find_map(|l| l.strip_prefix("stats: ")).unwrap_or_default();
    let stats: serde_json::Value = serde_json::from_str(stats).unwrap_or_default();
    let answered: Vec<bool> = stats
        .as_array()
        .map(|all| all.iter().map(|one| one["result"]["pid"].as_u64().is_some()).collect())
        .unwrap_or_default();
    assert_eq!(answered, [true, true], "{seen:?}");
    // Each worker stored its pid in the master's store, and answered its status function.
    let of = |prefix: &str| -> serde_json::Value {
        let line = seen.iter().find_map(|l| l.strip_prefix(prefix)).unwrap_or_default();
        serde_json::from_str(line).unwrap_or_default()
    };
    let store = of("store: ");
    let statuses = of("statuses: ");
    for id in ["1", "2"] {
        assert!(store[id]["pid"].is_u64(), "{seen:?}");
        assert_eq!(statuses[id]["http"]["draining"], false, "{seen:?}");
    }
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("a worker accepts");
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("hello from worker"), "{response}");

    // SAFETY: kill on the pid of our own child, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("the example master exits");
    assert!(status.success(), "{status}: {rest:?}");
    assert!(rest.iter().any(|l| l == "every worker is gone"), "{rest:?}");
    assert_eq!(
        rest.iter()
            .filter(|l| l.contains("exited with code 0 in status SHUTTED_DOWN, as asked"))
            .count(),
        2,
        "{rest:?}"
    );
}
