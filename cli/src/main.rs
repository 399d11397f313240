//! `drover`: run any program as a supervised group of workers, control it from another terminal,
//! observe it. A thin face over the `drover` crate: every decision about processes is core's; this
//! binary parses, prints, serves and forwards. See `cli/README.md`.
//!
//! - `run.rs`: `drover run` — the groups, their logs and events, signals, the shutdown.
//! - `config.rs`: the command line and `drover.toml` into core's `MasterOptions`, errors with file
//!   and line; `pm2.rs`: PM2 ecosystem files into the same groups.
//! - `control.rs`: the control socket (server and client) and its JSON-lines protocol.
//! - `http.rs`, `metrics.rs`: `/health` and `/metrics`.
//! - `logs.rs`: the log printer (bounded, never blocks the master); `log_ring.rs`: the recent lines
//!   `drover logs` reads; `log_file.rs`: `--log-file` with rotation by size.
//! - `usage.rs`: workers' CPU as a recent rate. `watchdog.rs`: systemd's watchdog.
//! - `completions.rs`: shell completions and the man page, from this file's clap definitions.
//! - `node_preload.rs`: unmodified Node apps (the npm package's preload in `NODE_OPTIONS`).
//! - `fdlimit.rs`: raising the soft open-file limit at start.
//! - `notify.rs`: systemd's `sd_notify`. `reaper.rs`: orphan reaping as PID 1. `procinfo.rs`: `/proc`.

// No unwrap/expect outside tests: what a user or a worker controls is an error, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod completions;
mod config;
mod control;
mod debug;
mod fdlimit;
mod http;
mod log_file;
mod log_ring;
mod logs;
mod metrics;
mod node_preload;
mod notify;
mod pm2;
mod pre_start;
mod procinfo;
mod reaper;
mod run;
mod usage;
mod watchdog;

use clap::{Args, CommandFactory, Parser, Subcommand};
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
    /// The control socket [default: the first that exists of $RUNTIME_DIRECTORY/drover.sock
    /// (systemd), /run/drover/drover.sock, $XDG_RUNTIME_DIR/drover.sock,
    /// /tmp/drover-$UID/drover.sock; `drover run` binds the first, /run/drover as root only]
    #[arg(long, env = "DROVER_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a group (`-- PROGRAM ARGS...`) or the groups of a config file (`-c drover.toml`) in the
    /// foreground until a signal or `drover stop`.
    Run(Box<RunArgs>),
    /// Show every worker: group, instance, id, pid, status, uptime, restarts, RSS, CPU.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Gather and print every worker's status functions (the handlers named `status.NAME`
        /// they declared), as JSON by group and worker id.
        #[arg(long)]
        app: bool,
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
    /// Call handler NAME of TARGET in GROUP (PROTOCOL.md §5.5) and print its result as JSON; a
    /// failed request exits 1 with "CODE: message" (no_such_handler, no_such_target, timeout,
    /// target_gone, handler_failed, overloaded, bad_request).
    Request {
        /// The group.
        group: String,
        /// `worker:ID`, `name:NAME`, `any` (one worker that declared the handler, in turn) or
        /// `all` (every one; a list of per-worker results and errors).
        target: String,
        /// The handler's name.
        name: String,
        /// The arguments, as JSON (default: null).
        args: Option<String>,
        /// How long to wait for the answer, e.g. 500ms, 10s (default 30s, at most 10min).
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        timeout: Option<std::time::Duration>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Read or write the shared store of GROUP's master (PROTOCOL.md §5.6) by dot path
    /// (`users.42.name`; "" is the whole tree) and print the answer as JSON: `get` the value
    /// (null: none), `set` it to VALUE (JSON), `delete` it (whether there was one), list the
    /// `keys` below it. A refused operation exits 1 with "CODE: message" (bad_request, overloaded).
    Store {
        /// The group.
        group: String,
        /// What to do.
        op: control::StoreOp,
        /// The dot path.
        path: String,
        /// For `set`: the value, as JSON.
        value: Option<String>,
        /// For `set`: remove the value this long after, e.g. 500ms, 1h.
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        ttl: Option<std::time::Duration>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Print the recent log (of GROUP, or of every group and drover itself) from the running
    /// drover's memory; with -f, keep printing new lines.
    Logs {
        /// Only this group's lines.
        group: Option<String>,
        /// Keep printing new lines as they come, until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
        /// How many recent lines (drover keeps the last 10000).
        #[arg(short = 'n', long, default_value_t = 100, value_name = "N")]
        lines: usize,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Print a shell completion script: `drover completions bash > /etc/bash_completion.d/drover`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print drover's man page (roff): `drover man > /usr/local/share/man/man1/drover.1`.
    Man,
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
    /// Take GROUP out of rotation (ECV): /readyz and /ecv answer 503 "out of rotation" while its
    /// workers keep running and serving.
    Down {
        /// The group.
        group: String,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Put GROUP back in rotation (unless its ECV monitor judges it down).
    Up {
        /// The group.
        group: String,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Push a new user config (JSON text, or a .json / .toml file) to GROUP's live workers without
    /// restarting them (their `reconfigure` event; later workers get it in their welcome). Prints
    /// each worker's answer: applied, refused (with its reason), timeout or gone; exit 1 unless
    /// every worker applied it.
    Reconfigure {
        /// The group.
        group: String,
        /// The config: JSON text, or the path of a JSON or TOML file.
        #[arg(value_name = "FILE|JSON")]
        config: String,
        /// How long to wait for the workers' answers, e.g. 500ms, 10s (default 10s, at most 10min).
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        timeout: Option<std::time::Duration>,
        /// Print the answers as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Open the Node inspector of one worker of GROUP (SIGUSR1) and print its WebSocket address
    /// (for `node inspect ws://...` or chrome://inspect). Refused for a worker that does not catch
    /// SIGUSR1 (not Node: the signal would end it).
    Debug {
        /// The group.
        group: String,
        /// The worker: its instance index, or `id:N`.
        worker: control::WorkerRef,
        /// How long to wait for the inspector, e.g. 5s (default 10s, at most 2min).
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        timeout: Option<std::time::Duration>,
        #[command(flatten)]
        socket: SocketArg,
    },
}

/// The options of `drover run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// A drover.toml with one `[groups.NAME]` table per group (keys as in core's MasterOptions),
    /// or a PM2 ecosystem file (`ecosystem.config.js`, `.cjs`, `.mjs`, `.json`). Read again at each
    /// reload.
    #[arg(short = 'c', long = "config", value_name = "FILE", conflicts_with_all = ["count", "name", "restart", "listen", "balance", "ready", "program", "pre_start"])]
    pub config: Option<PathBuf>,
    /// With -c: merge each group's `env_NAME` set over its `env` (PM2's `--env NAME`).
    #[arg(long, value_name = "NAME", requires = "config")]
    pub env: Option<String>,
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
    /// Who takes the connections of the shared sockets: shared (default: every worker accepts,
    /// the kernel picks), round-robin (the master hands each to the next worker), sticky (by
    /// client address), reuseport (a SO_REUSEPORT socket per worker). In a drover.toml:
    /// `balance = "..."` in the group's table.
    #[arg(long, value_name = "MODE", value_parser = clap::value_parser!(drover::Balance))]
    pub balance: Option<drover::Balance>,
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
    /// A shell command (`sh -c`) run before the first worker spawns, at each start of the group; if
    /// it fails (non-zero exit, or still running at the start timeout), the start fails and no
    /// worker is spawned. In a drover.toml: `preStart = "..."` in the group's table.
    #[arg(long, value_name = "COMMAND")]
    pub pre_start: Option<String>,
    /// Serve /health and /metrics on this address, e.g. 127.0.0.1:9091.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Serve the monitor page (/monitor) and its API on the --http endpoint: off by default, and
    /// protected by a token (--monitor-token, else one is generated and printed at start).
    #[arg(long)]
    pub monitor: bool,
    /// The monitor's token (at least 16 characters); default: a random one, printed at start.
    #[arg(long, env = "DROVER_MONITOR_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub monitor_token: Option<String>,
    /// Allow the monitor on an --http address that is not loopback (it controls the workers:
    /// put TLS and a firewall in front of it).
    #[arg(long)]
    pub monitor_public: bool,
    /// `plain` (prefixed lines) or `json` (one JSON object per line).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<logs::LogFormat>,
    /// Start plain lines with the time: auto (yes, unless stdout is the journal, which stamps
    /// lines itself), always, never.
    #[arg(long, value_name = "WHEN", env = "DROVER_TIMESTAMPS", default_value = "auto")]
    pub timestamps: logs::Timestamps,
    /// Also write the log to FILE (appended), rotated by size (see --log-file-size, --log-files).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Rotate the log file before it passes this size: bytes, or with a unit (10MiB, 500KB).
    #[arg(long, value_name = "SIZE", default_value = "10MiB", value_parser = parse_size)]
    pub log_file_size: u64,
    /// Rotated log files kept (FILE.1 ... FILE.N, oldest deleted), at most 100.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub log_files: u32,
    /// Serve no control socket (a read-only filesystem; `drover status`, `reload`, `logs` ... then
    /// cannot reach this drover: use signals, /metrics and the log).
    #[arg(long, conflicts_with = "socket")]
    pub no_socket: bool,
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

/// A size: bytes, or a number with a unit (`10MiB`, `500KB`, `1G`).
fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|error| format!("{text:?} is not a size (bytes, or e.g. 10MiB, 500KB): {error}"))
}

/// The command line's definition, for completions and the man page.
pub fn command() -> clap::Command {
    Cli::command()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run::main(*args),
        Command::Status { json, app, socket } => control::client::status(&socket, json, app),
        Command::Reload { group, socket } => control::client::request(&socket, control::Request::Reload { group }),
        Command::Scale { group, count, socket } => {
            control::client::request(&socket, control::Request::Scale { group, count })
        }
        Command::Restart { group, worker, socket } => {
            control::client::request(&socket, control::Request::Restart { group, worker })
        }
        Command::Send { group, args, socket } => control::client::send(&socket, group, &args),
        Command::Request {
            group,
            target,
            name,
            args,
            timeout,
            socket,
        } => control::client::handler_request(&socket, group, target, name, args.as_deref(), timeout),
        Command::Store {
            group,
            op,
            path,
            value,
            ttl,
            socket,
        } => control::client::store(&socket, group, op, path, value.as_deref(), ttl),
        Command::Logs {
            group,
            follow,
            lines,
            socket,
        } => control::client::logs(&socket, group, lines, follow),
        Command::Completions { shell } => completions::print_completions(shell),
        Command::Man => completions::print_man_page(),
        Command::Stop { group, hard, socket } => {
            control::client::request(&socket, control::Request::Stop { hard, group })
        }
        Command::Start { group, socket } => control::client::request(&socket, control::Request::Start { group }),
        Command::Down { group, socket } => control::client::request(&socket, control::Request::Down { group }),
        Command::Up { group, socket } => control::client::request(&socket, control::Request::Up { group }),
        Command::Reconfigure {
            group,
            config,
            timeout,
            json,
            socket,
        } => control::client::reconfigure(&socket, group, &config, timeout, json),
        Command::Debug {
            group,
            worker,
            timeout,
            socket,
        } => control::client::debug(&socket, group, worker, timeout),
    }
}
