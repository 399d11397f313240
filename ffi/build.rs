//! Gives libdrover.so a versioned SONAME, `libdrover.so.<ABI>`, so a program records the ABI it was
//! linked against (not a bare `libdrover.so`) and an incompatible libdrover is never loaded in its
//! place. `<ABI>` is `DROVER_ABI_VERSION` in src/lib.rs (a test checks the two agree); the install
//! script (scripts/install.sh) installs libdrover.so.<version> with the libdrover.so.<ABI> and
//! libdrover.so links.

/// Bumped with `DROVER_ABI_VERSION` on every incompatible change of the C ABI.
const ABI_VERSION: u32 = 0;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    match std::env::var("CARGO_CFG_TARGET_OS").as_deref() {
        Ok("macos") | Ok("ios") => {
            println!("cargo:rustc-cdylib-link-arg=-Wl,-install_name,@rpath/libdrover.{ABI_VERSION}.dylib")
        }
        Ok(_) => println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libdrover.so.{ABI_VERSION}"),
        Err(_) => {}
    }
}
