//! Reading a channel from a host's own event loop instead of from the runtime.
//!
//! A host with its own loop (Node's libuv loop, in the addon) that wants the frames *on that loop*
//! pays, when the runtime reads them, for two thread wake-ups per frame: the runtime thread's, then
//! the host thread's, woken by a hand-off. Measured in Node, that second hop is a third of a round
//! trip. [`HostFrames`] lets the host read the socket itself when its loop reports it readable: the
//! same framing and limits as the runtime's reader ([`FrameCodec`]), with no runtime involved, so the
//! frame is decoded on the thread that consumes it.
//!
//! The reads are non-blocking and bounded per call ([`READ_BUDGET`]): the host's loop stays fair to
//! its other work, and a level-triggered poll (libuv's) calls again for the rest.

use bytes::BytesMut;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use tokio_util::codec::Decoder;

use super::codec::{Frame, FrameCodec};
use super::fdpass::{self, FdQueue};

/// The most one read asks for.
const READ_CHUNK: usize = 64 * 1024;

/// The most one [`HostFrames::read_ready`] reads before it returns to the host's loop.
pub const READ_BUDGET: usize = 4 * READ_CHUNK;

/// The read side of a channel, read by the host: see the module documentation.
#[derive(Debug)]
pub struct HostFrames {
    stream: Arc<UnixStream>,
    fds: Option<FdQueue>,
    /// Bytes read and not yet framed (a partial line, or what the runtime's reader had buffered
    /// when the host took over).
    buf: BytesMut,
    /// Where `read` puts the bytes before they join `buf`: allocated once, so a read neither
    /// zeroes nor reallocates.
    scratch: Box<[u8]>,
    codec: FrameCodec,
    ended: bool,
}

/// What [`HostFrames::read_ready`] found at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadState {
    /// The socket is drained for now (or the budget is spent): read again when it is readable.
    Open,
    /// The channel ended (EOF, or an I/O error given as the last frame): nothing more will come.
    Ended,
}

impl HostFrames {
    /// Takes over a non-blocking stream no runtime is registered for. `buffered` are bytes already
    /// read from it and not yet framed; `fds`, where fds passed with `SCM_RIGHTS` go.
    pub(crate) fn new(
        stream: Arc<UnixStream>,
        fds: Option<FdQueue>,
        buffered: BytesMut,
        codec: FrameCodec,
    ) -> HostFrames {
        HostFrames {
            stream,
            fds,
            buf: buffered,
            scratch: vec![0u8; READ_CHUNK].into_boxed_slice(),
            codec,
            ended: false,
        }
    }

    /// The socket to watch for readability.
    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Reads what the socket holds now, up to [`READ_BUDGET`] bytes, and gives every complete frame
    /// to `each`, in order. At the end of the channel, `each` gets `None` after the last frame (or an
    /// I/O error as the last frame), and this returns [`ReadState::Ended`], then and ever after.
    ///
    /// A bad frame (too large, not UTF-8) is given as an error and reading goes on, as with the
    /// runtime's reader.
    pub fn read_ready(&mut self, each: &mut dyn FnMut(Option<Frame>)) -> ReadState {
        if self.ended {
            return ReadState::Ended;
        }
        let mut budget = READ_BUDGET;
        loop {
            if let Err(error) = self.frame_buffered(each) {
                return self.end(each, Some(Err(error)));
            }
            if budget == 0 {
                return ReadState::Open;
            }
            let read = fdpass::recv(self.fd(), &mut self.scratch, self.fds.as_ref());
            match read {
                Ok((0, _)) => {
                    // EOF: a last line without `\n` is a truncated frame (`decode_eof` drops it).
                    loop {
                        match self.codec.decode_eof(&mut self.buf) {
                            Ok(Some(frame)) => each(Some(frame)),
                            Ok(None) => return self.end(each, None),
                            Err(error) => return self.end(each, Some(Err(error))),
                        }
                    }
                }
                Ok((n, with_fds)) => {
                    self.buf.extend_from_slice(&self.scratch[..n]);
                    budget = budget.saturating_sub(n);
                    // A short read emptied the socket (bytes that carried fds end a read early):
                    // frame what came, and skip the read that would only find EAGAIN.
                    if n < READ_CHUNK && !with_fds {
                        if let Err(error) = self.frame_buffered(each) {
                            return self.end(each, Some(Err(error)));
                        }
                        return ReadState::Open;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadState::Open,
                Err(e) => return self.end(each, Some(Err(e.into()))),
            }
        }
    }

    /// Gives every complete frame in the buffer to `each`.
    fn frame_buffered(&mut self, each: &mut dyn FnMut(Option<Frame>)) -> Result<(), super::ProtocolError> {
        while let Some(frame) = self.codec.decode(&mut self.buf)? {
            each(Some(frame));
        }
        Ok(())
    }

    fn end(&mut self, each: &mut dyn FnMut(Option<Frame>), last: Option<Frame>) -> ReadState {
        self.ended = true;
        self.buf = BytesMut::new();
        match last {
            // An I/O error is the last thing a reader sees, as from the runtime's reader.
            Some(error) => each(Some(error)),
            None => each(None),
        }
        ReadState::Ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn reader(max: usize) -> (HostFrames, UnixStream) {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("non-blocking");
        (
            HostFrames::new(Arc::new(ours), None, BytesMut::new(), FrameCodec::new(max)),
            theirs,
        )
    }

    fn read_all(frames: &mut HostFrames) -> (Vec<Option<Frame>>, ReadState) {
        let mut got = Vec::new();
        let state = frames.read_ready(&mut |f| got.push(f));
        (got, state)
    }

    #[test]
    fn frames_come_whole_across_reads_and_a_partial_line_waits() {
        let (mut frames, mut peer) = reader(1024);
        peer.write_all(b"{\"a\":1}\n{\"b\"").expect("write");
        let (got, state) = read_all(&mut frames);
        assert_eq!(got, vec![Some(Ok("{\"a\":1}".to_string()))]);
        assert_eq!(state, ReadState::Open);
        peer.write_all(b":2}\n").expect("write");
        let (got, _) = read_all(&mut frames);
        assert_eq!(got, vec![Some(Ok("{\"b\":2}".to_string()))]);
        // Nothing more to read: no frame, still open.
        assert_eq!(read_all(&mut frames), (vec![], ReadState::Open));
    }

    #[test]
    fn what_the_runtime_had_buffered_when_the_host_took_over_comes_first() {
        let (ours, mut peer) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("non-blocking");
        let buffered = BytesMut::from(&b"{\"a\":1}\n{\"b\""[..]);
        let mut frames = HostFrames::new(Arc::new(ours), None, buffered, FrameCodec::new(1024));
        peer.write_all(b":2}\n{\"c\":3}\n").expect("write");
        let (got, state) = read_all(&mut frames);
        assert_eq!(
            got,
            vec![
                Some(Ok("{\"a\":1}".to_string())),
                Some(Ok("{\"b\":2}".to_string())),
                Some(Ok("{\"c\":3}".to_string()))
            ]
        );
        assert_eq!(state, ReadState::Open);
    }

    #[test]
    fn eof_ends_the_channel_and_drops_a_truncated_frame() {
        let (mut frames, mut peer) = reader(1024);
        peer.write_all(b"{\"a\":1}\n{\"trunc").expect("write");
        drop(peer);
        // A short read stops a call (the socket looked drained); the poll reports the end next.
        let (mut got, _) = read_all(&mut frames);
        let (rest, state) = read_all(&mut frames);
        got.extend(rest);
        assert_eq!(got, vec![Some(Ok("{\"a\":1}".to_string())), None]);
        assert_eq!(state, ReadState::Ended);
        assert_eq!(read_all(&mut frames), (vec![], ReadState::Ended));
    }

    #[test]
    fn an_oversized_frame_is_an_error_and_reading_goes_on() {
        let (mut frames, mut peer) = reader(16);
        peer.write_all(format!("{}\n{{\"ok\":1}}\n", "x".repeat(100)).as_bytes())
            .expect("write");
        let (got, state) = read_all(&mut frames);
        assert_eq!(
            got,
            vec![
                Some(Err(super::super::ProtocolError::FrameTooLarge { limit: 16 })),
                Some(Ok("{\"ok\":1}".to_string()))
            ]
        );
        assert_eq!(state, ReadState::Open);
    }

    #[test]
    fn a_large_backlog_is_read_a_budget_at_a_time_in_order() {
        let (mut frames, peer) = reader(1024);
        let lines = 40_000;
        let writer = std::thread::spawn(move || {
            let mut peer = peer;
            for i in 0..lines {
                peer.write_all(format!("{{\"seq\":{i:010}}}\n").as_bytes())?;
            }
            Ok::<_, io::Error>(())
        });
        let mut seen = 0usize;
        let mut calls = 0;
        loop {
            calls += 1;
            let mut bad = None;
            let state = frames.read_ready(&mut |f| match f {
                Some(Ok(line)) => {
                    if line != format!("{{\"seq\":{seen:010}}}") {
                        bad.get_or_insert(line);
                    }
                    seen += 1;
                }
                other => {
                    bad.get_or_insert(format!("{other:?}"));
                }
            });
            assert_eq!(bad, None, "frame {seen} arrives whole and in order");
            if seen == lines {
                break;
            }
            if state == ReadState::Open {
                std::thread::yield_now();
            }
        }
        writer.join().expect("no panic").expect("writes succeed");
        assert!(calls > 1, "{} bytes cannot come in one call", lines * 17);
    }
}
