//! drover installed as a C user installs it: `scripts/install.sh` into a temporary prefix, then
//! the C example built from a copy of `examples/c/` by its Makefile with pkg-config alone (shared
//! and static), and by its CMakeLists.txt with `find_package(drover)` when cmake is on PATH; each
//! build runs against real workers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use drover_tests::c::{serve_and_stop_c_example, show, target_dir, workspace, SONAME};

fn run(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("{:?} runs: {e}", cmd.get_program()));
    assert!(output.status.success(), "{cmd:?} failed:\n{}", show(&output));
    output
}

/// A fresh directory under the target dir's tmp (kept on failure, for a look).
fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("install-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// The prefix the debug build is installed into, once per test process.
fn prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let prefix = fresh_dir("prefix");
        let target = target_dir();
        let target_root = target.parent().expect("target/debug has a parent");
        run(Command::new(workspace().join("scripts/install.sh"))
            .args(["--profile", "debug", "--no-build"])
            .arg(&prefix)
            .env("CARGO_TARGET_DIR", target_root));
        prefix
    })
}

/// A copy of examples/c (its sources, Makefile and CMakeLists.txt), to build outside the checkout.
fn example_copy(name: &str) -> PathBuf {
    let dir = fresh_dir(name);
    for file in ["master.c", "worker.c", "Makefile", "CMakeLists.txt"] {
        std::fs::copy(workspace().join("examples/c").join(file), dir.join(file)).expect("copy the example");
    }
    dir
}

/// The dynamic section of an ELF file, as `readelf -d` prints it.
fn dynamic_section(file: &Path) -> String {
    String::from_utf8_lossy(&run(Command::new("readelf").arg("-d").arg(file)).stdout).into_owned()
}

#[test]
fn the_install_has_a_versioned_soname_pkg_config_and_cmake_files() {
    let prefix = prefix();
    let lib = prefix.join("lib");
    let header = std::fs::read_to_string(prefix.join("include/drover.h")).expect("drover.h is installed");
    let abi = header
        .lines()
        .find_map(|l| l.strip_prefix("#define DROVER_ABI_VERSION "))
        .expect("drover.h defines DROVER_ABI_VERSION");
    assert_eq!(
        SONAME,
        format!("libdrover.so.{abi}"),
        "the SONAME carries the ABI version"
    );
    let version = env!("CARGO_PKG_VERSION");
    // libdrover.so -> libdrover.so.0 -> libdrover.so.0.1.0, the real file.
    assert_eq!(
        std::fs::read_link(lib.join("libdrover.so")).expect("a link"),
        Path::new(SONAME)
    );
    assert_eq!(
        std::fs::read_link(lib.join(SONAME)).expect("a link"),
        Path::new(&format!("libdrover.so.{version}"))
    );
    let real = lib.join(format!("libdrover.so.{version}"));
    assert!(std::fs::symlink_metadata(&real).expect("the library").is_file());
    assert!(
        dynamic_section(&real).contains(&format!("Library soname: [{SONAME}]")),
        "{} has no SONAME {SONAME}",
        real.display()
    );
    assert!(lib.join("libdrover.a").is_file());
    assert!(prefix.join("share/doc/drover/LICENSE-MIT").is_file());
    assert!(prefix.join("share/doc/drover/LICENSE-APACHE").is_file());

    let pkg_config = |args: &[&str]| {
        let out = run(Command::new("pkg-config")
            .args(args)
            .env("PKG_CONFIG_PATH", lib.join("pkgconfig")));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(pkg_config(&["--modversion", "drover"]), version);
    assert_eq!(
        pkg_config(&["--cflags", "drover"]),
        format!("-I{}", prefix.join("include").display())
    );
    assert_eq!(
        pkg_config(&["--libs", "drover"]),
        format!("-L{} -ldrover", lib.display())
    );
    let static_libs = pkg_config(&["--libs", "drover-static"]);
    assert!(
        static_libs.starts_with(&lib.join("libdrover.a").display().to_string()),
        "{static_libs}"
    );
    assert!(
        static_libs.contains("-lm") && static_libs.contains("-ldl"),
        "{static_libs}"
    );
    assert!(prefix.join("lib/cmake/drover/droverConfig.cmake").is_file());
    assert!(prefix.join("lib/cmake/drover/droverConfigVersion.cmake").is_file());
}

#[test]
fn install_refuses_a_relative_prefix_and_names_it() {
    let output = Command::new(workspace().join("scripts/install.sh"))
        .args(["--no-build", "relative/prefix"])
        .output()
        .expect("install.sh runs");
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("PREFIX must be an absolute path (got relative/prefix)"),
        "{}",
        show(&output)
    );
}

/// `make` in a copy of examples/c with only PKG_CONFIG_PATH set, as its Makefile says.
fn make_example(name: &str, pc: &str) -> PathBuf {
    let dir = example_copy(name);
    run(Command::new("make")
        .arg("-C")
        .arg(&dir)
        .arg(format!("DROVER_PC={pc}"))
        .env("PKG_CONFIG_PATH", prefix().join("lib/pkgconfig")));
    dir
}

#[test]
fn the_example_builds_with_pkg_config_against_the_shared_library_and_runs() {
    let dir = make_example("make-shared", "drover");
    let needed = dynamic_section(&dir.join("master"));
    assert!(needed.contains(&format!("Shared library: [{SONAME}]")), "{needed}");
    serve_and_stop_c_example(&dir.join("master"), &dir.join("worker"));
}

#[test]
fn the_example_builds_with_pkg_config_against_the_static_library_and_runs() {
    let dir = make_example("make-static", "drover-static");
    let needed = dynamic_section(&dir.join("master"));
    assert!(!needed.contains("libdrover"), "linked statically, yet:\n{needed}");
    serve_and_stop_c_example(&dir.join("master"), &dir.join("worker"));
}

#[test]
fn the_example_builds_with_cmake_find_package_and_runs() {
    if Command::new("cmake").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED the_example_builds_with_cmake_find_package_and_runs: cmake is not on PATH \
             (install cmake to test drover's CMake package)"
        );
        return;
    }
    let source = example_copy("cmake-src");
    let build = source.join("build");
    run(Command::new("cmake")
        .arg("-S")
        .arg(&source)
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix().display())));
    run(Command::new("cmake").arg("--build").arg(&build));
    let needed = dynamic_section(&build.join("master"));
    assert!(needed.contains(&format!("Shared library: [{SONAME}]")), "{needed}");
    serve_and_stop_c_example(&build.join("master"), &build.join("worker"));
}
