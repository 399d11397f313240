//! `drover`: run any program as a supervised group of workers, control it from another terminal,
//! observe it. A thin face over the `drover` crate: every decision about processes is core's; this
//! binary parses, prints, serves and forwards. See `cli/README.md`.
//!
//! - `run.rs`: `drover run` — the groups, their logs and events, signals, the shutdown.
//! - `config.rs`: the command line and `drover.toml` into core's `MasterOptions`, errors with file
//!   and line.
//! - `control.rs`: the control socket (server and client) and its JSON-lines protocol.
//! - `http.rs`, `metrics.rs`: `/health` and `/metrics`.
//! - `logs.rs`: the log printer (bounded, never blocks the master).
//! - `node_preload.rs`: unmodified Node apps (the npm package's preload in `NODE_OPTIONS`).
//! - `fdlimit.rs`: raising the soft open-file limit at start.
//! - `notify.rs`: systemd's `sd_notify`. `reaper.rs`: orphan reaping as PID 1. `procinfo.rs`: `/proc`.

// No unwrap/expect outside tests: what a user or a worker controls is an error, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod control;
mod fdlimit;
mod http;
mod logs;
mod metrics;
mod node_preload;
mod notify;
mod procinfo;
mod reaper;
mod run;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Run any program as a supervised group of workers; control and observe it.
#[derive(Parser, Debug)]
#[command(name = "drover", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the control socket of the drover to talk to is.
#[derive(Args, Debug, Clone)]
pub struct SocketArg {
    /// The control socket [default: $XDG_RUNTIME_DIR/drover.sock, else /tmp/drover-$UID/drover.sock]
    #[arg(long, env = "DROVER_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a group (`-- PROGRAM ARGS...`) or the groups of a config file (`-c drover.toml`) in the
    /// foreground until a signal or `drover stop`.
    Run(RunArgs),
    /// Show every worker: group, instance, id, pid, status, uptime, restarts, RSS, CPU.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Replace every worker (of GROUP, or of all groups) by a new generation, make-before-break.
    Reload {
        /// Only this group.
        group: Option<String>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Change the number of workers of GROUP.
    Scale {
        /// The group.
        group: String,
        /// The new number of workers (1 to 10000).
        #[arg(allow_negative_numbers = true)]
        count: i64,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Replace one worker's process, or every worker of GROUP one after the other.
    Restart {
        /// The group.
        group: String,
        /// The worker: its instance index (`1`: the group's second worker, across reloads) or
        /// `id:N` (a worker id); every worker of the group when left out.
        worker: Option<control::WorkerRef>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Send a JSON message to one worker or to every worker of GROUP.
    Send {
        /// The group.
        group: String,
        /// `[WORKER] JSON`: the worker (an instance index, or `id:N`; optional) and the message.
        #[arg(num_args = 1..=2, value_names = ["WORKER", "JSON"], required = true)]
        args: Vec<String>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Shut every group down and end `drover run`; or only GROUP (drover keeps running; `drover
    /// start GROUP` starts it again).
    Stop {
        /// Only this group.
        group: Option<String>,
        /// SIGKILL every worker's process group instead of asking them to stop.
        #[arg(long)]
        hard: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Start GROUP again after `drover stop GROUP`.
    Start {
        /// The group.
        group: String,
        #[command(flatten)]
        socket: SocketArg,
    },
}

/// The options of `drover run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// A TOML file with one `[groups.NAME]` table per group (keys as in core's MasterOptions).
    #[arg(short = 'c', long = "config", value_name = "FILE", conflicts_with_all = ["count", "name", "restart", "listen", "ready", "program"])]
    pub config: Option<PathBuf>,
    /// Number of workers [default: number of CPUs].
    #[arg(short = 'n', long = "count", value_name = "COUNT", allow_negative_numbers = true)]
    pub count: Option<i64>,
    /// The group's name [default: the program's file name].
    #[arg(long)]
    pub name: Option<String>,
    /// Restart policy for workers that exit unasked: never, on-failure, always.
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// An address the workers share (`host:port`, `:port`, `unix:/path`, `NAME=ADDR`); repeatable.
    /// The master binds it once and passes it to every worker systemd-style (LISTEN_FDS).
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,
    /// How a worker says it is ready: message (its MessageBus, default), notify (sd_notify
    /// READY=1), node-ipc (process.send('ready')), spawn (as soon as it runs).
    #[arg(long, value_name = "SOURCE")]
    pub ready: Option<String>,
    /// When a group fails for good (it gave up restarting, or every worker exited and none is
    /// restarted): `exit` (default) shuts everything down and exits with status 3; `keep` keeps
    /// the other groups running (`status` and `/metrics` say FAILED).
    #[arg(long, value_name = "ACTION")]
    pub on_group_failure: Option<config::OnGroupFailure>,
    /// Whether a Node program gets drover's preload (`NODE_OPTIONS=--require`): `auto` (default:
    /// when the program is node), `off`, or the path of the preload file to use.
    #[arg(long, value_name = "auto|off|PATH")]
    pub node_preload: Option<String>,
    /// Serve /health and /metrics on this address, e.g. 127.0.0.1:9091.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// `plain` (prefixed lines) or `json` (one JSON object per line).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<logs::LogFormat>,
    /// Validate the configuration (core's checks, nothing started) and exit.
    #[arg(long)]
    pub check: bool,
    /// Reap orphans adopted by drover (PR_SET_CHILD_SUBREAPER). Always on when drover is PID 1.
    #[arg(long)]
    pub subreaper: bool,
    #[command(flatten)]
    pub socket: SocketArg,
    /// The program and its arguments (after `--`).
    #[arg(last = true, value_name = "PROGRAM")]
    pub program: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run::main(args),
        Command::Status { json, socket } => control::client::status(&socket, json),
        Command::Reload { group, socket } => control::client::request(&socket, control::Request::Reload { group }),
        Command::Scale { group, count, socket } => {
            control::client::request(&socket, control::Request::Scale { group, count })
        }
        Command::Restart { group, worker, socket } => {
            control::client::request(&socket, control::Request::Restart { group, worker })
        }
        Command::Send { group, args, socket } => control::client::send(&socket, group, &args),
        Command::Stop { group, hard, socket } => {
            control::client::request(&socket, control::Request::Stop { hard, group })
        }
        Command::Start { group, socket } => control::client::request(&socket, control::Request::Start { group }),
    }
}
