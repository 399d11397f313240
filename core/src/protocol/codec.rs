//! Line framing: one JSON object per `\n`-terminated UTF-8 line, at most `max_frame_bytes` long.
//!
//! Framing is `tokio_util`'s `LinesCodec` with a maximum length: an oversized line is rejected as
//! soon as the limit is crossed, without buffering the rest of it.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::io;
use tokio_util::codec::{Decoder, Encoder, LinesCodec, LinesCodecError};

use super::wire::{MasterFrame, WorkerFrame};
use crate::status::WorkerStatus;

/// Everything a peer can do wrong on the channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
/// New kinds may be added in a compatible version (PROTOCOL.md §13): match with a `_` arm.
#[non_exhaustive]
pub enum ProtocolError {
    /// A line longer than the limit.
    #[error("frame exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// Bytes that are not UTF-8.
    #[error("frame is not valid UTF-8")]
    InvalidUtf8,
    /// Not JSON, not an object, no `type`, or a known type with wrong fields.
    #[error("malformed frame ({reason}): {excerpt}")]
    Malformed {
        /// What the JSON decoder said.
        reason: String,
        /// The first bytes of the offending frame.
        excerpt: String,
    },
    /// A frame other than `hello` came first.
    #[error("expected a hello frame first, got {got}")]
    HelloExpected {
        /// What came instead.
        got: String,
    },
    /// A second `hello`.
    #[error("hello sent twice")]
    DuplicateHello,
    /// The peers speak different protocol versions.
    #[error("protocol version mismatch: worker speaks {worker}, master speaks {master}")]
    VersionMismatch {
        /// The worker's version.
        worker: u32,
        /// The master's version.
        master: u32,
    },
    /// A status the state machine does not allow from the current one.
    #[error("illegal status transition {from} -> {to}")]
    IllegalTransition {
        /// The current status.
        from: WorkerStatus,
        /// The reported status.
        to: WorkerStatus,
    },
    /// Bytes after the worker declared the channel closed (after SHUTTED_DOWN).
    #[error("frame received after the channel was declared closed (SHUTTED_DOWN)")]
    AfterClose,
    /// The master refused us (worker side).
    #[error("master refused the worker: {code}: {message}")]
    Refused {
        /// The master's error code.
        code: String,
        /// The master's message.
        message: String,
    },
    /// The socket failed.
    #[error("channel I/O error: {message}")]
    Io {
        /// The OS error.
        message: String,
    },
}

impl From<LinesCodecError> for ProtocolError {
    fn from(err: LinesCodecError) -> ProtocolError {
        match err {
            // The only length limit is ours; LinesCodec does not carry it, the caller fills it in.
            LinesCodecError::MaxLineLengthExceeded => ProtocolError::FrameTooLarge { limit: 0 },
            LinesCodecError::Io(e) if e.kind() == io::ErrorKind::InvalidData => ProtocolError::InvalidUtf8,
            LinesCodecError::Io(e) => ProtocolError::Io { message: e.to_string() },
        }
    }
}

/// The framing codec both sides use: `\n`-terminated lines with a maximum length.
#[derive(Debug)]
pub struct FrameCodec {
    lines: LinesCodec,
    max_frame_bytes: usize,
}

impl FrameCodec {
    /// A codec that rejects lines longer than `max_frame_bytes` (not counting the `\n`).
    pub fn new(max_frame_bytes: usize) -> FrameCodec {
        FrameCodec {
            lines: LinesCodec::new_with_max_length(max_frame_bytes),
            max_frame_bytes,
        }
    }

    fn fix(&self, err: LinesCodecError) -> ProtocolError {
        match ProtocolError::from(err) {
            ProtocolError::FrameTooLarge { .. } => ProtocolError::FrameTooLarge {
                limit: self.max_frame_bytes,
            },
            other => other,
        }
    }
}

/// What the decoder yields: a line, or a bad frame that does not end the stream (an oversized
/// line is skipped up to its `\n`, a non-UTF-8 line is dropped), so a peer that is only warned
/// (`onProtocolError: ignore`) keeps being read. Only an I/O error ends the stream.
pub type Frame = Result<String, ProtocolError>;

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut bytes::BytesMut) -> Result<Option<Frame>, ProtocolError> {
        match self.lines.decode(src) {
            Ok(line) => Ok(line.map(Ok)),
            Err(e) => match self.fix(e) {
                io @ ProtocolError::Io { .. } => Err(io),
                bad_frame => Ok(Some(Err(bad_frame))),
            },
        }
    }

    fn decode_eof(&mut self, src: &mut bytes::BytesMut) -> Result<Option<Frame>, ProtocolError> {
        // A final line without `\n` is a truncated frame: the peer died mid-write. Drop it rather
        // than act on half a message.
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None => {
                src.clear();
                Ok(None)
            }
        }
    }
}

/// Flattens what a `FramedRead<_, FrameCodec>` yields into one result per frame.
pub fn flatten(item: Option<Result<Frame, ProtocolError>>) -> Option<Frame> {
    item.map(|r| r.and_then(|frame| frame))
}

impl From<io::Error> for ProtocolError {
    fn from(err: io::Error) -> ProtocolError {
        ProtocolError::Io {
            message: err.to_string(),
        }
    }
}

impl Encoder<String> for FrameCodec {
    type Error = ProtocolError;
    fn encode(&mut self, item: String, dst: &mut bytes::BytesMut) -> Result<(), ProtocolError> {
        self.lines.encode(item, dst).map_err(|e| self.fix(e))
    }
}

fn excerpt(line: &str) -> String {
    const MAX: usize = 120;
    if line.len() <= MAX {
        return line.to_string();
    }
    let mut end = MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &line[..end])
}

fn decode<T: DeserializeOwned>(line: &str) -> Result<T, ProtocolError> {
    from_frame_text(line).map_err(|e| ProtocolError::Malformed {
        reason: e.to_string(),
        excerpt: excerpt(line),
    })
}

/// The deepest a payload may nest (PROTOCOL.md §3): what serde_json decodes on its own, so what
/// every Rust peer decodes when it takes the payload out of the frame.
pub const MAX_PAYLOAD_DEPTH: usize = 127;

/// The deepest a frame may nest: the frame object around the deepest payload.
pub const MAX_FRAME_DEPTH: usize = MAX_PAYLOAD_DEPTH + 1;

/// How deep arrays and objects nest in JSON text, or `None` past `limit` (the scan stops there).
/// Brackets inside strings do not count. For text that is not JSON the answer means nothing, but
/// it is bounded, so the decoder that then refuses the text is never asked to recurse deeper.
fn nesting_within(text: &[u8], limit: usize) -> Option<usize> {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return None;
                }
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Some(deepest)
}

/// Decodes a whole frame's text. serde_json alone refuses more than 127 levels, which a frame
/// holding a payload of 127 levels (the frame object is one more) would pass: the frame's nesting
/// is counted here first, against [`MAX_FRAME_DEPTH`], and serde_json's own limit lifted for it.
fn from_frame_text<'a, T: serde::Deserialize<'a>>(line: &'a str) -> Result<T, serde_json::Error> {
    use serde::de::Error;
    if nesting_within(line.as_bytes(), MAX_FRAME_DEPTH).is_none() {
        return Err(serde_json::Error::custom(format_args!(
            "nested deeper than {MAX_FRAME_DEPTH} levels (a payload holds at most {MAX_PAYLOAD_DEPTH})"
        )));
    }
    let mut de = serde_json::Deserializer::from_str(line);
    // Bounded above: at most MAX_FRAME_DEPTH levels of recursion.
    de.disable_recursion_limit();
    let value = T::deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// The shape of a user message, decoded in one pass.
///
/// The frame enums are internally tagged (`"type"` names the variant), which serde decodes by first
/// buffering the whole object into an intermediate tree and then decoding that tree again: for a
/// user message, every value of the payload is allocated twice. User messages are the hot path (a
/// round trip is two of them), so they are tried as this plain struct first, which decodes the
/// payload straight into a `Value`. Anything else, and anything odd about a message (no `data`, a
/// duplicate key), goes through the enum, which gives the same result and the canonical error.
#[derive(serde::Deserialize)]
struct MessageShape<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, deserialize_with = "present")]
    data: Option<Value>,
    /// The sending worker of a routed message (master → worker only).
    #[serde(default)]
    from: Option<u64>,
}

/// `Some` whenever the field is there, `null` included (a missing field is the default, `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    <Value as serde::Deserialize>::deserialize(d).map(Some)
}

/// [`MessageShape`] with the payload left as the text it came as.
#[derive(serde::Deserialize)]
struct RawMessageShape<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "present_raw")]
    data: Option<&'a RawValue>,
    /// Set on a message another worker sent (§5.5): not a plain message, so it is left to the
    /// full decoder, which keeps the sender (a fast path taking it would lose who sent it).
    #[serde(default)]
    from: Option<serde::de::IgnoredAny>,
}

/// As [`present`], for a payload kept as text.
fn present_raw<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as serde::Deserialize>::deserialize(d).map(Some)
}

/// The payload of a user message frame (from either side) as the JSON text it was sent as, checked
/// as [`json_text`] checks it but not decoded; `None` for any other frame, and for a message of
/// unusual shape (a duplicate field, say) or payload (see [`json_text`]), which
/// [`decode_worker_frame`] / [`decode_master_frame`] handle (with the error, if it is one).
///
/// For a host that parses JSON itself (V8, in the Node addon): decoding the payload into a `Value`
/// only to encode it again as text costs more than the rest of the frame's way through the core.
pub fn message_text(line: &str) -> Option<&RawValue> {
    match from_frame_text::<RawMessageShape>(line) {
        Ok(RawMessageShape {
            kind,
            data: Some(data),
            from: None,
        }) if kind == "message" && decodable(data.get()).is_ok() => Some(data),
        _ => None,
    }
}

/// Checks that `text` is JSON every drover peer decodes, and wraps it to be sent as it is (with
/// [`encode_message`], `Master::send` or `BusSender::send_message`), without decoding it into a
/// `Value` first.
///
/// "Every peer decodes" is stricter than the JSON grammar, which alone is all a lenient check would
/// ask: a string with a lone surrogate escape (`"\ud800"`, which `JSON.stringify` makes of a lone
/// surrogate) or values nested deeper than 128 levels are refused, as a Rust or C peer decoding
/// the frame would refuse them, so the sender hears of it instead of the receiver failing.
pub fn json_text(text: String) -> Result<Box<RawValue>, serde_json::Error> {
    decodable(&text)?;
    RawValue::from_string(text)
}

/// Walks `text` as decoding it into a `Value` would (strings unescaped and checked, numbers
/// parsed, nesting counted: serde_json allows 127 levels on its own, as many as a frame's payload
/// can have inside the frame object), building nothing.
fn decodable(text: &str) -> Result<(), serde_json::Error> {
    use serde::de::{MapAccess, SeqAccess, Visitor};

    struct Walk;
    impl<'de> serde::Deserialize<'de> for Walk {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Walk, D::Error> {
            d.deserialize_any(Walk)
        }
    }
    impl<'de> Visitor<'de> for Walk {
        type Value = Walk;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_str<E>(self, _: &str) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_unit<E>(self) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Walk, A::Error> {
            while seq.next_element::<Walk>()?.is_some() {}
            Ok(Walk)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Walk, A::Error> {
            while map.next_entry::<Walk, Walk>()?.is_some() {}
            Ok(Walk)
        }
    }
    serde_json::from_str::<Walk>(text).map(|_| ())
}

fn message_payload(line: &str) -> Option<(Value, Option<u64>)> {
    match from_frame_text::<MessageShape>(line) {
        Ok(MessageShape { kind, data, from }) if kind == "message" => data.map(|d| (d, from)),
        _ => None,
    }
}

/// Decodes one line a worker sent.
pub fn decode_worker_frame(line: &str) -> Result<WorkerFrame, ProtocolError> {
    match message_payload(line) {
        Some((data, _)) => Ok(WorkerFrame::Message { data }),
        None => decode(line),
    }
}

/// Decodes one line a master sent.
pub fn decode_master_frame(line: &str) -> Result<MasterFrame, ProtocolError> {
    match message_payload(line) {
        Some((data, from)) => Ok(MasterFrame::Message { data, from }),
        None => decode(line),
    }
}

/// Encodes a user message frame (`{"type":"message","data":...}`), without copying `data`: a
/// `Value`, any `Serialize` type, or a [`RawValue`] (JSON text, written as it is).
pub fn encode_message<T: Serialize + ?Sized>(data: &T, max_frame_bytes: usize) -> Result<Vec<u8>, EncodeError> {
    #[derive(Serialize)]
    struct Message<'a, T: ?Sized> {
        #[serde(rename = "type")]
        kind: &'static str,
        data: &'a T,
    }
    encode_frame(&Message { kind: "message", data }, max_frame_bytes)
}

/// Encodes a frame as one line, `\n` included, refusing one larger than `max_frame_bytes`.
pub fn encode_frame<T: Serialize + ?Sized>(frame: &T, max_frame_bytes: usize) -> Result<Vec<u8>, EncodeError> {
    let mut buf = serde_json::to_vec(frame).map_err(|e| EncodeError::NotSerializable(e.to_string()))?;
    // A frame is one line. serde_json writes none but a `RawValue`'s text goes out as it is, and it
    // may have line breaks: in valid JSON (which a `RawValue` is) those can only be whitespace
    // between tokens (a string holds them escaped), so a space does as well.
    for byte in buf.iter_mut().filter(|b| **b == b'\n') {
        *byte = b' ';
    }
    // A `Value` (or a `Serialize` type) may nest deeper than any peer decodes: the sender hears
    // of it, rather than the receiver failing (or, for a worker, being killed for it).
    if nesting_within(&buf, MAX_FRAME_DEPTH).is_none() {
        return Err(EncodeError::TooDeep {
            limit: MAX_PAYLOAD_DEPTH,
        });
    }
    if buf.len() > max_frame_bytes {
        return Err(EncodeError::TooLarge {
            size: buf.len(),
            limit: max_frame_bytes,
        });
    }
    buf.push(b'\n');
    Ok(buf)
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
pub enum EncodeError {
    /// The encoded frame would exceed the peer's limit.
    #[error("message of {size} bytes exceeds the frame limit of {limit} bytes")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The message nests arrays and objects deeper than a peer decodes (PROTOCOL.md §3).
    #[error("message nests arrays and objects deeper than {limit} levels")]
    TooDeep {
        /// The most levels a payload may have.
        limit: usize,
    },
    /// The value cannot be written as JSON.
    #[error("message cannot be encoded as JSON: {0}")]
    NotSerializable(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_round_trip_as_documented() {
        let line = String::from_utf8(encode_frame(&WorkerFrame::status(WorkerStatus::Started), 1024).unwrap()).unwrap();
        assert_eq!(line, "{\"type\":\"status\",\"status\":3,\"name\":\"STARTED\"}\n");
        assert_eq!(
            decode_worker_frame(r#"{"type":"status","status":3}"#).unwrap(),
            WorkerFrame::Status {
                status: WorkerStatus::Started,
                name: None
            }
        );
        assert_eq!(decode_master_frame(r#"{"type":"stop"}"#).unwrap(), MasterFrame::Stop);
        assert_eq!(
            decode_master_frame(r#"{"type":"message","data":[1,{"a":null}]}"#).unwrap(),
            MasterFrame::Message {
                data: json!([1, {"a": null}]),
                from: None
            }
        );
    }

    #[test]
    fn messages_decode_the_same_on_the_fast_path_and_through_the_enum() {
        for line in [
            r#"{"type":"message","data":{"a":[1,2.5,"x\n"],"b":null}}"#,
            r#"{"data":[1,2],"type":"message"}"#,
            r#"{"type":"message","data":null}"#,
            r#"{"type":"message","data":7,"extra":{"ignored":true}}"#,
            r#"{"type":"mess\u0061ge","data":"escaped type"}"#,
        ] {
            let slow: WorkerFrame = decode(line).expect(line);
            assert_eq!(decode_worker_frame(line).expect(line), slow, "{line}");
            let slow: MasterFrame = decode(line).expect(line);
            assert_eq!(decode_master_frame(line).expect(line), slow, "{line}");
        }
        // What the fast path does not take still gets the enum's answer, errors included.
        for line in [
            r#"{"type":"message"}"#,
            r#"{"type":"message","data":1,"data":2}"#,
            r#"{"type":"message","data":"#,
            r#"{"type":"status","status":3}"#,
            r#"["message"]"#,
            // From another worker: the full decoder keeps `from`.
            r#"{"type":"message","data":1,"from":2}"#,
        ] {
            assert_eq!(decode_worker_frame(line), decode::<WorkerFrame>(line), "{line}");
        }
        assert!(matches!(
            decode_worker_frame(r#"{"type":"message"}"#),
            Err(ProtocolError::Malformed { .. })
        ));
    }

    #[test]
    fn message_text_is_the_payload_as_sent_for_exactly_the_messages_the_fast_path_takes() {
        for (line, text) in [
            (
                r#"{"type":"message","data":{"a":[1,2.5,"x\n"],"b":null}}"#,
                r#"{"a":[1,2.5,"x\n"],"b":null}"#,
            ),
            (r#"{"data": [1, 2] ,"type":"message"}"#, "[1, 2]"),
            (r#"{"type":"message","data":null}"#, "null"),
            (r#"{"type":"message","data":7,"extra":{"ignored":true}}"#, "7"),
            (r#"{"type":"mess\u0061ge","data":"escaped type"}"#, r#""escaped type""#),
        ] {
            assert_eq!(message_text(line).map(RawValue::get), Some(text), "{line}");
            // The same value as the full decoder gives.
            let WorkerFrame::Message { data } = decode(line).expect(line) else {
                panic!("{line} is a message");
            };
            assert_eq!(serde_json::from_str::<Value>(text).unwrap(), data, "{line}");
        }
        for line in [
            r#"{"type":"message"}"#,
            r#"{"type":"message","data":1,"data":2}"#,
            r#"{"type":"message","data":"#,
            r#"{"type":"message","data":[1,}"#,
            r#"{"type":"status","status":3}"#,
            r#"["message"]"#,
        ] {
            assert_eq!(message_text(line).map(RawValue::get), None, "{line}");
        }
    }

    #[test]
    fn json_text_refuses_what_a_peer_could_not_decode() {
        // 127 levels in the payload, and the frame object: the most a frame holds.
        let deep = format!("{}1{}", "[".repeat(128), "]".repeat(128));
        for text in [
            r#""\ud800""#,
            r#"{"k":"\udc00x"}"#,
            deep.as_str(),
            "1e400",
            r#""\x""#,
            "[1,]",
            "",
        ] {
            assert!(json_text(text.to_string()).is_err(), "{text}");
            assert!(
                serde_json::from_str::<Value>(text).is_err(),
                "{text}: the decoder refuses it too"
            );
            // Received, it is left to the full decoder, which says what is wrong.
            let line = format!(r#"{{"type":"message","data":{text}}}"#);
            assert_eq!(message_text(&line).map(RawValue::get), None, "{line}");
            assert!(
                matches!(decode_worker_frame(&line), Err(ProtocolError::Malformed { .. })),
                "{line}"
            );
        }
        let fine = format!("{}1{}", "[".repeat(127), "]".repeat(127));
        for text in [
            r#""\ud83d\ude00""#,
            fine.as_str(),
            "-0.5e-3",
            r#"{"a":{"b":[true,false,null]}}"#,
        ] {
            assert_eq!(json_text(text.to_string()).unwrap().get(), text);
        }
    }

    fn nested(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn a_payload_of_127_levels_passes_everywhere_and_128_fails_everywhere() {
        for levels in [126, 127] {
            let payload = nested(levels);
            let line = format!(r#"{{"type":"message","data":{payload}}}"#);
            assert_eq!(
                message_text(&line).map(RawValue::get),
                Some(payload.as_str()),
                "{levels}"
            );
            let Ok(WorkerFrame::Message { data }) = decode_worker_frame(&line) else {
                panic!("a payload of {levels} levels decodes");
            };
            assert_eq!(data, serde_json::from_str::<Value>(&payload).unwrap());
            assert!(matches!(decode_master_frame(&line), Ok(MasterFrame::Message { .. })));
            // The frame of a known type other than message, with its members this deep.
            let status = format!(r#"{{"type":"heartbeat","extra":{payload}}}"#);
            assert!(decode_worker_frame(&status).is_ok(), "{levels}: {status}");
            let encoded = encode_message(&data, usize::MAX).expect("the sender takes it");
            let text = std::str::from_utf8(&encoded).unwrap().trim_end();
            assert!(decode_worker_frame(text).is_ok(), "{levels}: what is sent is received");
            assert!(json_text(payload.clone()).is_ok(), "{levels}");
        }
        let payload = nested(128);
        let line = format!(r#"{{"type":"message","data":{payload}}}"#);
        assert_eq!(message_text(&line).map(RawValue::get), None);
        let Err(ProtocolError::Malformed { reason, .. }) = decode_worker_frame(&line) else {
            panic!("a payload of 128 levels is malformed");
        };
        assert!(reason.contains("nested deeper than 128"), "{reason}");
        assert!(decode_master_frame(&line).is_err());
        assert!(json_text(payload).is_err());
        // A `Value` this deep can be built in Rust: the sender refuses it, naming the limit.
        let mut deep = json!(1);
        for _ in 0..128 {
            deep = json!([deep]);
        }
        assert_eq!(
            encode_message(&deep, usize::MAX),
            Err(EncodeError::TooDeep { limit: 127 })
        );
        // Brackets inside strings do not count.
        let text = format!(
            r#"{{"type":"message","data":"{}\"{}"}}"#,
            "[".repeat(300),
            "{".repeat(300)
        );
        assert!(decode_worker_frame(&text).is_ok());
    }

    #[test]
    fn raw_json_text_is_sent_as_it_is_on_one_line() {
        // Compact text: byte for byte what the `Value` would have been encoded as.
        let data = json!({"k": [1, "two", null], "s": "a\nb"});
        let raw = RawValue::from_string(data.to_string()).unwrap();
        assert_eq!(
            encode_message(&*raw, 1024).unwrap(),
            encode_message(&data, 1024).unwrap()
        );
        // Pretty-printed text: its line breaks are whitespace, and must not end the frame.
        let raw = RawValue::from_string(serde_json::to_string_pretty(&data).unwrap()).unwrap();
        let frame = encode_message(&*raw, 1024).unwrap();
        assert_eq!(frame.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        assert_eq!(frame.last(), Some(&b'\n'));
        let line = std::str::from_utf8(&frame[..frame.len() - 1]).unwrap();
        assert_eq!(decode_worker_frame(line).unwrap(), WorkerFrame::Message { data });
    }

    #[test]
    fn a_message_is_encoded_as_the_enum_would_encode_it() {
        let data = json!({"k": [1, "two", null]});
        assert_eq!(
            encode_message(&data, 1024).unwrap(),
            encode_frame(
                &MasterFrame::Message {
                    data: data.clone(),
                    from: None
                },
                1024
            )
            .unwrap()
        );
        assert!(matches!(
            encode_message(&json!("x".repeat(2000)), 1024),
            Err(EncodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn unknown_types_and_fields_are_tolerated() {
        assert_eq!(
            decode_worker_frame(r#"{"type":"future_thing","x":1}"#).unwrap(),
            WorkerFrame::Unknown
        );
        assert_eq!(
            decode_master_frame(r#"{"type":"quit","extra":true}"#).unwrap(),
            MasterFrame::Quit
        );
    }

    #[test]
    fn bad_frames_are_errors_that_say_why() {
        for bad in [
            "not json",
            "[1,2]",
            "{}",
            r#"{"type":"status","status":9}"#,
            r#"{"type":"status"}"#,
        ] {
            match decode_worker_frame(bad) {
                Err(ProtocolError::Malformed { excerpt, .. }) => assert_eq!(excerpt, bad),
                other => panic!("{bad}: expected Malformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn oversized_frames_are_refused_on_both_sides() {
        let big = json!({ "data": "x".repeat(100) });
        assert_eq!(
            encode_frame(&big, 50),
            Err(EncodeError::TooLarge {
                size: serde_json::to_vec(&big).unwrap().len(),
                limit: 50
            })
        );
        let mut codec = FrameCodec::new(16);
        let mut buf = bytes::BytesMut::from(&b"0123456789abcdefXYZ"[..]);
        assert_eq!(
            codec.decode(&mut buf),
            Ok(Some(Err(ProtocolError::FrameTooLarge { limit: 16 })))
        );
        // The stream goes on: the rest of the oversized line is skipped, the next line decodes.
        buf.extend_from_slice(b"more-of-it\nshort\n");
        assert_eq!(codec.decode(&mut buf), Ok(Some(Ok("short".to_string()))));
    }

    #[test]
    fn invalid_utf8_is_its_own_error() {
        let mut codec = FrameCodec::new(16);
        let mut buf = bytes::BytesMut::from(&b"\xff\xfe\n"[..]);
        assert_eq!(codec.decode(&mut buf), Ok(Some(Err(ProtocolError::InvalidUtf8))));
        buf.extend_from_slice(b"ok\n");
        assert_eq!(codec.decode(&mut buf), Ok(Some(Ok("ok".to_string()))));
    }
}
