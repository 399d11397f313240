//! `drover debug GROUP INSTANCE`: opens the Node inspector of a running worker and says where it
//! listens.
//!
//! Node opens its inspector when it receives SIGUSR1. For a program that does not catch SIGUSR1
//! the signal's default action ends it, so drover first reads the worker's caught signals
//! (`SigCgt` in `/proc/PID/status`) and refuses to send it to one that does not catch it: "not a
//! Node process". Otherwise it notes the worker's listening TCP sockets (its fds' socket inodes,
//! matched in `/proc/PID/net/tcp` and `tcp6`), sends SIGUSR1, and waits for a new one on loopback
//! that answers the inspector's `GET /json/list`; the answer's `webSocketDebuggerUrl` is the
//! address to give a debugger (`chrome://inspect`, `node inspect ws://...`). An inspector already
//! open (a second `drover debug`) is found the same way, without a signal.
//!
//! **Several workers.** Node's inspector port is 9229 unless told: the second worker to open it
//! would find the port taken. drover's Node MessageBus therefore sets `process.debugPort = 0` in
//! each worker whose options choose no port (`--inspect*`): each worker's inspector takes a free
//! port of its own when it opens.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long `drover debug` waits for the inspector unless told (`--timeout`).
pub const DEFAULT_DEBUG_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `--timeout` (a longer one is cut to this).
pub const MAX_DEBUG_TIMEOUT: Duration = Duration::from_secs(120);
/// The most bytes of the inspector's `/json/list` answer read.
const MAX_LIST_BYTES: usize = 64 * 1024;
/// How often the worker's sockets are looked at while waiting.
const POLL: Duration = Duration::from_millis(50);

/// Why no inspector address came.
#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    #[error("pid {pid} does not catch SIGUSR1, so it is not a Node process with an inspector (SIGUSR1 would end it; not sent)")]
    NotNode { pid: u32 },
    #[error("pid {pid}: no inspector listened within {after:?} of SIGUSR1 (not a Node process, or started with --disable-sigusr1, or its inspector port is taken: see the worker's log)")]
    NoInspector { pid: u32, after: Duration },
    #[error("pid {pid}: cannot read /proc/{pid}: {error}")]
    Proc { pid: u32, error: std::io::Error },
    #[error("pid {pid}: cannot send SIGUSR1: {error}")]
    Signal { pid: u32, error: std::io::Error },
}

/// A live inspector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspector {
    /// Its HTTP/WebSocket address, e.g. `127.0.0.1:39997`.
    pub address: SocketAddr,
    /// The WebSocket URL a debugger connects to.
    pub url: String,
}

/// Opens (or finds open) worker `pid`'s inspector, waiting up to `timeout`. Blocking.
pub fn open_inspector(pid: u32, timeout: Duration) -> Result<Inspector, DebugError> {
    let timeout = timeout.min(MAX_DEBUG_TIMEOUT);
    if !catches_sigusr1(pid)? {
        return Err(DebugError::NotNode { pid });
    }
    let before = listening(pid)?;
    if let Some(open) = before.iter().find_map(|a| inspector_at(*a)) {
        return Ok(open);
    }
    // SAFETY: kill with a pid and a signal number.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGUSR1) } != 0 {
        return Err(DebugError::Signal {
            pid,
            error: std::io::Error::last_os_error(),
        });
    }
    let deadline = Instant::now() + timeout;
    loop {
        let now = listening(pid)?;
        if let Some(found) = now.difference(&before).find_map(|a| inspector_at(*a)) {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            return Err(DebugError::NoInspector { pid, after: timeout });
        }
        std::thread::sleep(POLL);
    }
}

/// Whether `pid` has a handler for SIGUSR1 (its `SigCgt` mask).
fn catches_sigusr1(pid: u32) -> Result<bool, DebugError> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|error| DebugError::Proc { pid, error })?;
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    Ok(mask & (1 << (libc::SIGUSR1 - 1)) != 0)
}

/// The loopback addresses `pid`'s listening TCP sockets are bound to.
fn listening(pid: u32) -> Result<BTreeSet<SocketAddr>, DebugError> {
    let proc_err = |error| DebugError::Proc { pid, error };
    let mut inodes = BTreeSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(proc_err)? {
        let Ok(entry) = entry else { continue };
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.to_string_lossy();
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                if let Ok(inode) = inode.parse::<u64>() {
                    inodes.insert(inode);
                }
            }
        }
    }
    let mut found = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        // A kernel without IPv6 has no tcp6 table.
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        found.extend(text.lines().skip(1).filter_map(|line| loopback_listener(line, &inodes)));
    }
    Ok(found)
}

/// The address of a `/proc/net/tcp{,6}` line if it is a listening socket among `inodes`, bound
/// to loopback.
fn loopback_listener(line: &str, inodes: &BTreeSet<u64>) -> Option<SocketAddr> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
    if *state != "0A" || !inodes.contains(&inode.parse().ok()?) {
        return None;
    }
    let (ip, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let addr = match ip.len() {
        // Four bytes in the kernel's (little-endian) order.
        8 => SocketAddr::from((Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.swap_bytes()), port)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, word) in bytes.chunks_mut(4).enumerate() {
                let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?.swap_bytes();
                word.copy_from_slice(&w.to_be_bytes());
            }
            SocketAddr::from((Ipv6Addr::from(bytes), port))
        }
        _ => return None,
    };
    addr.ip().is_loopback().then_some(addr)
}

/// The inspector at `address`, if that is one: its `/json/list` names a WebSocket URL.
fn inspector_at(address: SocketAddr) -> Option<Inspector> {
    let body = http_get(address, "/json/list").ok()?;
    let list: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let url = list
        .as_array()?
        .first()?
        .get("webSocketDebuggerUrl")?
        .as_str()?
        .to_string();
    Some(Inspector { address, url })
}

/// The body of `GET path` at `address`, at most [`MAX_LIST_BYTES`], within a second per read.
/// The inspector keeps the connection open after its answer: the body is read by its
/// `Content-Length`.
pub fn http_get(address: SocketAddr, path: &str) -> std::io::Result<Vec<u8>> {
    let invalid = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(start) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..start]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") && !head.starts_with("http/1.0 200") {
                return Err(invalid("not 200 OK"));
            }
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|n| n.trim().parse::<usize>().ok());
            let body = start + 4;
            match length {
                Some(n) if n > MAX_LIST_BYTES => return Err(invalid("answer too long")),
                Some(n) if answer.len() >= body + n => return Ok(answer[body..body + n].to_vec()),
                _ => {}
            }
        }
        if answer.len() > MAX_LIST_BYTES {
            return Err(invalid("answer too long"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            // Closed: what came is the body (an answer without a length).
            let start = answer
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .ok_or_else(|| invalid("no HTTP header end"))?;
            return Ok(answer.split_off(start + 4));
        }
        answer.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_lines_give_loopback_listeners_of_the_workers_inodes_only() {
        let inodes = BTreeSet::from([111, 222, 333]);
        let v4 = "   0: 0100007F:9C3D 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0000000000000000 100 0 0 10 0";
        assert_eq!(loopback_listener(v4, &inodes), Some("127.0.0.1:39997".parse().unwrap()));
        let any = "   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222 1";
        assert_eq!(loopback_listener(any, &inodes), None, "0.0.0.0 is not the inspector's");
        let connected =
            "   2: 0100007F:9C3D 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 333 1";
        assert_eq!(loopback_listener(connected, &inodes), None, "not listening");
        let other = "   3: 0100007F:9C3E 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 444 1";
        assert_eq!(loopback_listener(other, &inodes), None, "another process's socket");
        let v6 = "   0: 00000000000000000000000001000000:2329 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 333 1";
        assert_eq!(loopback_listener(v6, &inodes), Some("[::1]:9001".parse().unwrap()));
    }

    #[test]
    fn a_process_without_a_sigusr1_handler_is_not_signalled() {
        // This test process catches no SIGUSR1 (the harness does not): refused, and still alive.
        let me = std::process::id();
        if catches_sigusr1(me).unwrap() {
            return;
        }
        assert!(matches!(
            open_inspector(me, Duration::from_millis(100)),
            Err(DebugError::NotNode { .. })
        ));
    }
}
