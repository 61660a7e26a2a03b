//! Fuzzes the chunk decoder alone, with bounds checked: no message above the limit, pending
//! bytes never above theirs. Input: [split byte][bytes...], fed in pieces of 1 + split bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmp::chunk::{ChunkDecoder, ChunkLimits};

fuzz_target!(|data: &[u8]| {
    let [split, rest @ ..] = data else {
        return;
    };
    let limits = ChunkLimits {
        max_message_size: 4096,
        max_pending_bytes: 8192,
        max_chunk_size: 0x7fff_ffff,
        max_chunk_streams: 16,
    };
    let mut decoder = ChunkDecoder::new(limits);
    for piece in rest.chunks(1 + usize::from(*split)) {
        decoder.push(piece);
        loop {
            match decoder.poll_message() {
                Ok(Some(message)) => assert!(message.payload.len() <= limits.max_message_size),
                Ok(None) => break,
                Err(_) => return,
            }
            assert!(decoder.pending_bytes() <= limits.max_pending_bytes);
        }
    }
});
