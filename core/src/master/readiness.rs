//! Readiness without the MessageBus: systemd's notify protocol and Node's IPC channel.
//!
//! - [`NotifySocket`]: a datagram socket per worker in the abstract namespace, named in the
//!   worker's `NOTIFY_SOCKET` (`@drover-notify/...`). Datagrams carry `KEY=VALUE` lines
//!   (`READY=1`, `STOPPING=1`, `STATUS=...`, `WATCHDOG=1`, `MAINPID=...`). The sender's credentials
//!   (`SO_PASSCRED`) must show a process of the worker's own process group; anything else is
//!   dropped, so no other local process can fake readiness.
//! - [`NodeChannel`]: the master end of the worker's Node IPC channel (`NODE_CHANNEL_FD`, JSON
//!   serialization: one JSON text per line), as PM2 apps expect: `process.send('ready')` means
//!   STARTED, and a graceful stop sends the message `'shutdown'`.

use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use tokio::io::Interest;
use tokio::net::UnixDatagram;

/// One `KEY=VALUE` assignment from a notify datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    pub key: String,
    pub value: String,
}

/// The per-worker notify socket.
#[derive(Debug)]
pub(crate) struct NotifySocket {
    socket: UnixDatagram,
    /// What the worker's `NOTIFY_SOCKET` says.
    pub env_value: String,
}

impl NotifySocket {
    pub(crate) fn bind(worker_id: u64) -> io::Result<NotifySocket> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!("drover-notify/{}/{worker_id}/{nanos:x}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        let socket = std::os::unix::net::UnixDatagram::bind_addr(&addr)?;
        setsockopt(&socket, sockopt::PassCred, &true).map_err(io::Error::from)?;
        socket.set_nonblocking(true)?;
        Ok(NotifySocket {
            socket: UnixDatagram::from_std(socket)?,
            env_value: format!("@{name}"),
        })
    }

    /// The next datagram's assignments, with the sender's pid (`None` without credentials).
    pub(crate) async fn recv(&self) -> io::Result<(Option<i32>, Vec<Notice>)> {
        loop {
            self.socket.readable().await?;
            let raw = self.socket.as_raw_fd();
            let result = self.socket.try_io(Interest::READABLE, || {
                let mut buf = [0u8; 4096];
                let mut space = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
                let mut iov = [IoSliceMut::new(&mut buf)];
                let msg = recvmsg::<()>(raw, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
                    .map_err(io::Error::from)?;
                let mut pid = None;
                if let Ok(cmsgs) = msg.cmsgs() {
                    for cmsg in cmsgs {
                        if let ControlMessageOwned::ScmCredentials(cred) = cmsg {
                            pid = Some(cred.pid());
                        }
                    }
                }
                let n = msg.bytes;
                Ok((pid, String::from_utf8_lossy(&buf[..n]).into_owned()))
            });
            match result {
                Ok((pid, text)) => return Ok((pid, parse_notices(&text))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

fn parse_notices(text: &str) -> Vec<Notice> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| Notice {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect()
}

/// Whether `pid` belongs to the process group led by `leader`.
pub(crate) fn in_group(pid: i32, leader: u32) -> bool {
    // SAFETY: getpgid takes any pid and fails for one that does not exist.
    pid > 0 && unsafe { libc::getpgid(pid) } == leader as i32
}

/// Node's IPC messages arrive as JSON lines; `'ready'` is `"ready"`.
pub(crate) fn node_message_is(value: &serde_json::Value, word: &str) -> bool {
    value.as_str() == Some(word)
}

/// Node's own internal messages (`{"cmd": "NODE_..."}`) are not the user's.
pub(crate) fn node_internal(value: &serde_json::Value) -> bool {
    value
        .get("cmd")
        .and_then(|c| c.as_str())
        .is_some_and(|c| c.starts_with("NODE_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_datagrams_are_key_value_lines() {
        assert_eq!(
            parse_notices("READY=1\nSTATUS=warming up: 3/4\nnonsense\n"),
            vec![
                Notice {
                    key: "READY".into(),
                    value: "1".into()
                },
                Notice {
                    key: "STATUS".into(),
                    value: "warming up: 3/4".into()
                },
            ]
        );
        assert!(node_message_is(&serde_json::json!("ready"), "ready"));
        assert!(node_internal(&serde_json::json!({"cmd": "NODE_HANDLE_ACK"})));
    }
}
