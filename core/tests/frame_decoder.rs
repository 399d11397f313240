//! Property tests of the frame decoder: whatever bytes a peer writes, however the kernel splits
//! them, the decoder never panics, every frame it yields is within the limit or a typed error,
//! and what a peer encodes is what the other decodes. They run in the normal suite (256 cases
//! each); `fuzz/README.md` gives the longer run.

use bytes::BytesMut;
use drover::protocol::codec::{encode_message, MAX_FRAME_DEPTH, MAX_PAYLOAD_DEPTH};
use drover::protocol::{
    decode_master_frame, decode_worker_frame, encode_frame, json_text, message_text, FrameCodec, ProtocolError,
    WorkerFrame,
};
use drover::WorkerStatus;
use proptest::prelude::*;
use serde_json::Value;
use tokio_util::codec::Decoder;

/// Feeds `bytes` to a fresh codec in pieces of the given sizes, then ends the stream, and
/// returns every frame it yielded (and the error that ended it, if one did).
fn decode_all(
    bytes: &[u8],
    pieces: &[usize],
    max: usize,
) -> (Vec<Result<String, ProtocolError>>, Option<ProtocolError>) {
    let mut codec = FrameCodec::new(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = bytes;
    let mut sizes = pieces.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

/// JSON values without floats (a float's text round trip is not exact without serde_json's
/// `float_roundtrip`), nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn worker_frame() -> impl Strategy<Value = WorkerFrame> {
    prop_oneof![
        (any::<u32>(), proptest::option::of(any::<u32>()))
            .prop_map(|(version, pid)| WorkerFrame::Hello { version, pid }),
        (1u8..=8).prop_map(|n| WorkerFrame::status(WorkerStatus::try_from(n).expect("1..=8 are statuses"))),
        json_value().prop_map(|data| WorkerFrame::Message { data }),
        (
            proptest::option::of(any::<u64>()),
            // Eighths: exact in JSON's decimal text (serde_json's default float parsing may round others).
            proptest::collection::btree_map(
                "[a-z_]{1,16}",
                (-1_000_000i32..1_000_000).prop_map(|n| f64::from(n) / 8.0),
                0..4
            )
        )
            .prop_map(|(rss_bytes, stats)| WorkerFrame::Heartbeat {
                rss_bytes,
                uptime_ms: None,
                stats,
            }),
        (any::<u64>(), any::<String>()).prop_map(|(request, address)| WorkerFrame::Listen { request, address }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_give_frames_within_the_limit_or_typed_errors(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        pieces in prop::collection::vec(1usize..600, 1..8),
        max in 1usize..512,
    ) {
        let (frames, end) = decode_all(&bytes, &pieces, max);
        // Only the socket ends the stream: bytes never do.
        prop_assert!(end.is_none(), "{end:?}");
        for frame in frames {
            match frame {
                Ok(line) => {
                    prop_assert!(line.len() <= max, "a {}-byte frame with the limit at {max}", line.len());
                    prop_assert!(!line.contains('\n'));
                    // Every decoder a frame meets: they answer, never panic.
                    let _ = decode_worker_frame(&line);
                    let _ = decode_master_frame(&line);
                    let _ = message_text(&line);
                }
                Err(ProtocolError::FrameTooLarge { limit }) => prop_assert_eq!(limit, max),
                Err(ProtocolError::InvalidUtf8) => {}
                Err(other) => prop_assert!(false, "unexpected frame error {other:?}"),
            }
        }
    }

    #[test]
    fn arbitrary_text_lines_decode_to_a_frame_or_a_malformed_error(line in "[^\n]{0,300}") {
        for result in [decode_worker_frame(&line).map(|_| ()), decode_master_frame(&line).map(|_| ())] {
            match result {
                Ok(()) => {}
                Err(ProtocolError::Malformed { excerpt, .. }) => prop_assert!(excerpt.len() <= 124),
                Err(other) => prop_assert!(false, "{other:?}"),
            }
        }
    }

    #[test]
    fn frames_round_trip_through_any_split(
        frames in prop::collection::vec(worker_frame(), 1..6),
        pieces in prop::collection::vec(1usize..64, 1..8),
    ) {
        let max = 64 * 1024;
        let mut bytes = Vec::new();
        for f in &frames {
            bytes.extend(encode_frame(f, max).expect("small frames encode"));
        }
        let (decoded, end) = decode_all(&bytes, &pieces, max);
        prop_assert!(end.is_none());
        prop_assert_eq!(decoded.len(), frames.len());
        for (line, frame) in decoded.into_iter().zip(&frames) {
            let line = line.expect("a frame we encoded is a line");
            prop_assert_eq!(&decode_worker_frame(&line).expect("decodes"), frame);
        }
    }

    #[test]
    fn messages_round_trip_and_go_direct_as_the_text_they_were(data in json_value()) {
        let bytes = encode_message(&data, usize::MAX).expect("encodes");
        let line = std::str::from_utf8(&bytes).expect("UTF-8").trim_end_matches('\n');
        prop_assert_eq!(decode_worker_frame(line).expect("decodes"), WorkerFrame::Message { data: data.clone() });
        let text = message_text(line).expect("a message goes direct");
        prop_assert_eq!(text.get(), data.to_string());
        prop_assert!(json_text(data.to_string()).is_ok());
    }

    #[test]
    fn a_frame_over_the_limit_is_a_typed_error_and_the_next_frame_still_decodes(
        extra in 1usize..5000,
        max in 64usize..256,
        pieces in prop::collection::vec(1usize..700, 1..4),
    ) {
        let mut bytes = vec![b'x'; max + extra];
        bytes.push(b'\n');
        bytes.extend(encode_frame(&WorkerFrame::status(WorkerStatus::Started), max).expect("fits"));
        let (frames, end) = decode_all(&bytes, &pieces, max);
        prop_assert!(end.is_none());
        prop_assert_eq!(frames.len(), 2, "{:?}", frames);
        prop_assert_eq!(&frames[0], &Err(ProtocolError::FrameTooLarge { limit: max }));
        let next = frames[1].as_ref().expect("the next frame is whole");
        prop_assert_eq!(decode_worker_frame(next).expect("decodes"), WorkerFrame::status(WorkerStatus::Started));
    }

    #[test]
    fn nesting_decodes_up_to_the_documented_depth_and_not_past_it(depth in 0usize..300, object in any::<bool>()) {
        let (open, close) = if object { ("{\"k\":", "}") } else { ("[", "]") };
        let payload = format!("{}0{}", open.repeat(depth), close.repeat(depth));
        let line = format!(r#"{{"type":"message","data":{payload}}}"#);
        let decoded = decode_worker_frame(&line);
        prop_assert_eq!(decoded.is_ok(), depth <= MAX_PAYLOAD_DEPTH, "{} levels: {:?}", depth, decoded.err());
        prop_assert_eq!(message_text(&line).is_some(), depth <= MAX_PAYLOAD_DEPTH);
        prop_assert_eq!(json_text(payload).is_ok(), depth < MAX_FRAME_DEPTH);
    }
}
