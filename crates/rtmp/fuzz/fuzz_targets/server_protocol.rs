//! Fuzzes everything a peer can reach after the handshake: the chunk decoder, command
//! decoding and normalisation, rml_rtmp's command session behind the adapter, and the replies.
//! Input layout: [split byte][decision byte][bytes...]; the bytes follow a valid handshake,
//! are fed in pieces of 1 + split bytes, and publish requests are accepted or rejected
//! according to the decision byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmp::protocol::client_handshake_bytes;
use rtmp::{ProtocolEvent, RtmpConfig, ServerProtocol};

fuzz_target!(|data: &[u8]| {
    let [split, decision, rest @ ..] = data else {
        return;
    };
    let config = RtmpConfig {
        max_message_size: 64 * 1024,
        max_pending_bytes: 128 * 1024,
        ..RtmpConfig::default()
    };
    let mut protocol = ServerProtocol::new(&config);
    if protocol.handle_input(&client_handshake_bytes()).is_err() {
        return;
    }
    let _ = protocol.take_output();
    let mut published = false;
    for piece in rest.chunks(1 + usize::from(*split)) {
        if protocol.handle_input(piece).is_err() {
            return;
        }
        loop {
            match protocol.poll_event() {
                Ok(Some(ProtocolEvent::PublishRequested { .. })) => {
                    assert!(!published, "a second publish request");
                    published = true;
                    let answer = if decision % 2 == 0 {
                        protocol.accept_publish()
                    } else {
                        protocol.reject_publish("NetStream.Publish.BadName", "fuzz")
                    };
                    assert!(answer.is_ok(), "{answer:?}");
                }
                Ok(Some(ProtocolEvent::Media { body, .. })) => {
                    assert!(body.len() <= config.max_message_size);
                }
                Ok(Some(ProtocolEvent::PublishFinished)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        let _ = protocol.take_output();
    }
});
