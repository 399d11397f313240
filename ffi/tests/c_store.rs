//! The master's shared state through the C ABI (issue 18): a C master and four C workers share
//! the store and its watches, load a cache key once for 100 callers, retry after a failed load,
//! answer `drover_master_gather_statuses()` with C status functions, publish an application
//! status, and are recycled, make-before-break, by a C predicate (tests/c/store_master.c and
//! tests/c/worker.c) — natively, and under AddressSanitizer with LeakSanitizer.

use std::process::Command;

use drover_tests::c::{program as c_program, show, Linkage};

fn run_store_master(mut cmd: Command) -> String {
    let output = cmd.output().expect("the C test program runs");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "the C test program failed:\n{}", show(&output));
    for step in [
        "ok: C workers and a C master share the store and its watches",
        "ok: get_or_load loads once for 100 callers in 4 C workers, and a failed load is retried",
        "ok: C status functions answer gather_statuses and the app status shows",
        "ok: a C recycle predicate replaces a worker make-before-break",
        "ok: free",
    ] {
        assert!(stderr.contains(step), "{step:?} missing:\n{stderr}");
    }
    stderr
}

#[test]
fn c_workers_and_a_c_master_share_the_store_the_cache_statuses_and_a_recycle_predicate() {
    let mut cmd = Command::new(c_program("store_master", Linkage::Static));
    cmd.arg(c_program("worker", Linkage::Static));
    run_store_master(cmd);
}

#[test]
fn the_c_store_cache_and_callbacks_are_clean_under_address_and_leak_sanitizer() {
    let mut cmd = Command::new(c_program("store_master", Linkage::SharedAsan));
    cmd.arg(c_program("worker", Linkage::SharedAsan));
    cmd.env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=98");
    let stderr = run_store_master(cmd);
    assert!(!stderr.contains("Sanitizer"), "{stderr}");
}
