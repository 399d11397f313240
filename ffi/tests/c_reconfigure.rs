//! Reconfigure and the pre-start hook through the C ABI: a C master (tests/c/reconfigure_master.c)
//! with C workers answering RECONFIGURE events, natively and under AddressSanitizer with
//! LeakSanitizer.

use std::process::Command;

use drover_tests::c::{program as c_program, show, Linkage};

fn run(mut cmd: Command) -> String {
    let output = cmd.output().expect("the C test program runs");
    assert!(output.status.success(), "the C test program failed:\n{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    for step in [
        "ok: a failing pre-start hook spawns nothing",
        "ok: C workers apply and refuse configs",
        "ok: free",
    ] {
        assert!(stderr.contains(step), "{step:?} missing:\n{stderr}");
    }
    stderr
}

#[test]
fn a_c_master_reconfigures_c_workers_and_runs_its_pre_start_hook() {
    let mut cmd = Command::new(c_program("reconfigure_master", Linkage::Static));
    cmd.arg(c_program("worker", Linkage::Static));
    run(cmd);
}

#[test]
fn a_c_master_reconfiguring_is_clean_under_address_and_leak_sanitizer() {
    let mut cmd = Command::new(c_program("reconfigure_master", Linkage::SharedAsan));
    cmd.arg(c_program("worker", Linkage::Shared));
    cmd.env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=98");
    let stderr = run(cmd);
    assert!(!stderr.contains("Sanitizer"), "{stderr}");
}
