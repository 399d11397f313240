//! Unmodified Node apps: when a group runs `node` (or `nodejs`, or a `script`), drover adds the
//! preload of its npm package to the workers' `NODE_OPTIONS` (`--require <abs path>`, after the
//! user's own options). In each worker the preload connects the worker's MessageBus on its first
//! `listen`, so that `app.listen(PORT)` in every worker shares the master's socket; reports the
//! worker STARTED when it listens (or leaves readiness to the app: `process.send('ready')` with
//! `--ready node-ipc`); and drains keep-alive connections when the master stops the worker
//! (`bindings-node/preload.js` says how).
//!
//! The preload is found, unless `--node-preload PATH` (or `nodePreload` in the file) names it, as
//! `node_modules/drover/preload.js` under the group's working directory, then beside this binary:
//! `../lib/node_modules/drover/` (an npm global prefix), `node_modules/drover/`, and
//! `../../bindings-node/` (a build in drover's repository). It is used only where its addon is,
//! found as the package's `lib/native.js` finds it: `DROVER_NODE_ADDON`, `drover.node` beside it
//! (a checkout), or this platform's prebuilt package (`drover-linux-x64-gnu/drover.linux-x64-gnu.node`)
//! where Node's `require` would find it from the preload (an npm install). Not found: drover runs
//! the group without it and says so at start. `--node-preload off` turns it off (an app that creates its own MessageBus needs
//! nothing from it, and the preload leaves such an app alone anyway).

use drover::{MasterConfig, ReadySource};
use std::path::{Path, PathBuf};

use crate::config::{Plan, PlanError};

/// The preload's file name in the `drover` npm package.
const PRELOAD_FILE: &str = "preload.js";
/// The addon the preload needs, beside it in a checkout.
const ADDON_FILE: &str = "drover.node";
/// Names the addon's file for the preload, as `lib/native.js` reads it.
const ADDON_VAR: &str = "DROVER_NODE_ADDON";

/// Tells the preload who reports readiness: `listen` (the preload, when the app listens) or `app`
/// (the app itself: `--ready node-ipc`, `notify` or `spawn`).
pub const READY_VAR: &str = "DROVER_PRELOAD_READY";

/// `--node-preload`.
enum Setting {
    Auto,
    Off,
    Path(PathBuf),
}

impl Setting {
    fn parse(value: Option<&str>) -> Result<Setting, PlanError> {
        match value {
            None | Some("auto") => Ok(Setting::Auto),
            Some("off") => Ok(Setting::Off),
            Some(path) => {
                let file = Path::new(path);
                if !file.is_file() {
                    return Err(PlanError::CommandLine(format!(
                        "--node-preload / nodePreload: {path:?} is not a file (give the drover package's preload.js, `auto` or `off`)"
                    )));
                }
                // Canonical: the preload takes itself out of NODE_OPTIONS by its own real path.
                let path = std::fs::canonicalize(file).or_else(|_| std::path::absolute(file));
                Ok(Setting::Path(path.unwrap_or_else(|_| file.to_path_buf())))
            }
        }
    }
}

/// Adds the preload to every group that runs Node, as `plan.node_preload` says; a preload that
/// cannot be found is a warning in the plan, not an error.
pub fn apply_to_plan(plan: &mut Plan) -> Result<(), PlanError> {
    let setting = Setting::parse(plan.node_preload.as_deref())?;
    for group in &mut plan.groups {
        if !group.config.runs_node() {
            continue;
        }
        let preload = match &setting {
            Setting::Off => continue,
            Setting::Path(path) => path.clone(),
            Setting::Auto => {
                let candidates = candidates(group.config.cwd.as_deref());
                match candidates.iter().find(|c| usable(c)) {
                    Some(found) => std::fs::canonicalize(found).unwrap_or_else(|_| found.clone()),
                    None => {
                        let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
                        plan.warnings.push(format!(
                            "group {} runs node, but drover's Node preload was not found (looked at {}): \
                             workers that call server.listen(PORT) will not share the port (EADDRINUSE) \
                             and are not counted ready when they listen; install the drover npm package \
                             beside the app (with its addon built), give --node-preload PATH, or \
                             --node-preload off to silence this",
                            group.name,
                            looked.join(", ")
                        ));
                        continue;
                    }
                }
            }
        };
        add(&mut group.config, &preload);
    }
    Ok(())
}

/// Where the preload may be, in order.
fn candidates(cwd: Option<&Path>) -> Vec<PathBuf> {
    let package = Path::new("node_modules").join("drover").join(PRELOAD_FILE);
    let mut out = vec![cwd.unwrap_or(Path::new(".")).join(&package)];
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| std::fs::canonicalize(exe).ok())
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        let up = dir.parent().unwrap_or(&dir);
        out.push(up.join("lib").join(&package));
        out.push(dir.join(&package));
        out.push(up.parent().unwrap_or(up).join("bindings-node").join(PRELOAD_FILE));
    }
    out
}

/// A preload file whose addon is there (see the module's documentation).
fn usable(preload: &Path) -> bool {
    preload.is_file()
        && (std::env::var_os(ADDON_VAR).is_some_and(|addon| Path::new(&addon).is_file())
            || preload.with_file_name(ADDON_FILE).is_file()
            || platform_addon(preload).is_some())
}

/// The npm platform this binary was built for (`linux-x64-gnu`...), as `lib/platform.js` names it:
/// its prebuilt package ships this binary and the addon together.
fn npm_platform() -> Option<String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        _ => return None,
    };
    let libc = if cfg!(target_env = "musl") { "musl" } else { "gnu" };
    Some(format!("linux-{arch}-{libc}"))
}

/// The addon of this platform's package, where Node's `require` looks for it from the preload's
/// directory: `node_modules/drover-PLATFORM/drover.PLATFORM.node` in it and each directory above.
fn platform_addon(preload: &Path) -> Option<PathBuf> {
    let platform = npm_platform()?;
    let package = format!("drover-{platform}");
    let addon = format!("drover.{platform}.node");
    let dir = std::path::absolute(preload).ok()?;
    dir.parent()?.ancestors().find_map(|dir| {
        let modules = if dir.file_name() == Some(std::ffi::OsStr::new("node_modules")) {
            dir.to_path_buf()
        } else {
            dir.join("node_modules")
        };
        let file = modules.join(&package).join(&addon);
        file.is_file().then_some(file)
    })
}

/// The workers' `NODE_OPTIONS` gets `--require <preload>` after the options they already have
/// (the group's `env`, else drover's own environment, which workers inherit).
fn add(config: &mut MasterConfig, preload: &Path) {
    let own = config
        .env
        .get("NODE_OPTIONS")
        .cloned()
        .or_else(|| std::env::var("NODE_OPTIONS").ok())
        .unwrap_or_default();
    config.env.insert("NODE_OPTIONS".into(), with_require(&own, preload));
    let ready = if config.ready == ReadySource::Message {
        "listen"
    } else {
        "app"
    };
    config.env.insert(READY_VAR.into(), ready.into());
}

/// `options` with `--require <preload>` appended. NODE_OPTIONS is split on spaces; a path that
/// has one (or a quote or backslash) is double-quoted with backslash escapes, as Node reads it.
fn with_require(options: &str, preload: &Path) -> String {
    let path = preload.display().to_string();
    let arg = if path.contains([' ', '"', '\\', '\t']) {
        format!("--require \"{}\"", path.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        format!("--require {path}")
    };
    if options.trim().is_empty() {
        arg
    } else {
        format!("{} {arg}", options.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// npm's layout: the preload in `node_modules/drover/`, the addon in the platform package
    /// beside it, not beside the preload.
    #[test]
    fn an_installed_preload_is_usable_with_its_platform_package_and_not_without() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let modules = dir.path().join("app").join("node_modules");
        let preload = modules.join("drover").join(PRELOAD_FILE);
        std::fs::create_dir_all(preload.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&preload, "").expect("write the preload");
        assert!(platform_addon(&preload).is_none(), "no platform package yet");
        let platform = npm_platform().expect("a platform drover publishes for");
        let addon = modules
            .join(format!("drover-{platform}"))
            .join(format!("drover.{platform}.node"));
        std::fs::create_dir_all(addon.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&addon, "").expect("write the addon");
        assert_eq!(platform_addon(&preload), Some(addon));
        assert!(usable(&preload));
    }

    #[test]
    fn the_require_goes_after_the_users_own_options() {
        let p = Path::new("/opt/drover/preload.js");
        assert_eq!(with_require("", p), "--require /opt/drover/preload.js");
        assert_eq!(
            with_require("--max-old-space-size=100 ", p),
            "--max-old-space-size=100 --require /opt/drover/preload.js"
        );
        assert_eq!(
            with_require("", Path::new("/my apps/d\"x/preload.js")),
            "--require \"/my apps/d\\\"x/preload.js\""
        );
    }
}
