//! The listener survives what the network can send: garbage datagrams, a handshake flood from
//! one peer, handshakes that panic srt-protocol's parser, and a handshake it never finishes.
//! Bounded: 2000 datagrams each, to 127.0.0.1 only.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{ts_clip, Caller, Delivery, TestServer, GOOD_KEY, GOOD_PASS, OTHER_KEY, OTHER_PASS};
use tokio::net::UdpSocket;

/// Datagrams sent by each flood.
const FLOOD: usize = 2000;

/// A deterministic stream of bytes (xorshift), so a failure can be replayed.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// An SRT handshake control packet: the 16-byte header and the 48-byte handshake body.
fn handshake(version: u32, ext_field: u16, shake_type: i32, socket_id: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&0x8000_0000u32.to_be_bytes()); // control, type 0: handshake
    p.extend_from_slice(&0u32.to_be_bytes()); // type-specific
    p.extend_from_slice(&0u32.to_be_bytes()); // timestamp
    p.extend_from_slice(&0u32.to_be_bytes()); // destination socket id
    p.extend_from_slice(&version.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes()); // encryption field
    p.extend_from_slice(&ext_field.to_be_bytes());
    p.extend_from_slice(&12345u32.to_be_bytes()); // initial sequence number
    p.extend_from_slice(&1500u32.to_be_bytes()); // MTU
    p.extend_from_slice(&8192u32.to_be_bytes()); // flow window
    p.extend_from_slice(&shake_type.to_be_bytes());
    p.extend_from_slice(&socket_id.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes()); // cookie
    p.extend_from_slice(&[127, 0, 0, 1]);
    p.extend_from_slice(&[0; 12]);
    p
}

/// Waits until `delivery` has grown past `before`, or `within` passes.
async fn grows(delivery: &Delivery, before: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if delivery.bytes() > before {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A second caller (srt-live-transmit, another stream) is admitted and delivers.
async fn another_caller_is_served(server: &TestServer) {
    let url = server.url(&format!(
        "streamid={OTHER_KEY}&passphrase={OTHER_PASS}&pbkeylen=16"
    ));
    let index = server.admission.delivery_count(OTHER_KEY);
    let mut caller = Caller::srt_live_transmit(&url);
    let delivery = server
        .admission
        .wait_delivery(OTHER_KEY, index, Duration::from_secs(5))
        .await;
    assert!(
        grows(&delivery, 0, Duration::from_secs(5)).await,
        "no bytes"
    );
    caller.child.kill().await.unwrap();
}

async fn flood(to: SocketAddr, datagrams: impl Iterator<Item = Vec<u8>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (i, d) in datagrams.enumerate() {
        let _ = socket.send_to(&d, to).await;
        if i % 100 == 99 {
            // Leave the listener (and the kernel's receive buffer) room to keep up.
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_a_handshake_flood_do_not_stop_the_listener() {
    let server = TestServer::start().await;
    let _ = ts_clip();
    let good = Caller::ffmpeg(&server.url(&format!("streamid={GOOD_KEY}&passphrase={GOOD_PASS}")));
    let delivery = server
        .admission
        .wait_delivery(GOOD_KEY, 0, Duration::from_secs(5))
        .await;

    // Garbage: random lengths and bytes, some with the control bit set.
    let mut noise = Noise(0x5eed_1234_abcd_0001);
    let garbage: Vec<Vec<u8>> = (0..FLOOD)
        .map(|_| {
            let len = (noise.next() % 1500) as usize + 1;
            (0..len).map(|_| noise.next() as u8).collect()
        })
        .collect();
    let before = delivery.bytes();
    flood(server.addr, garbage.into_iter()).await;
    assert!(
        grows(&delivery, before, Duration::from_secs(2)).await,
        "the good stream stopped after the garbage"
    );

    // A handshake flood from one peer: inductions with new socket ids, and conclusions with
    // wrong cookies.
    let before = delivery.bytes();
    flood(
        server.addr,
        (0..FLOOD as u32).map(|i| {
            if i % 2 == 0 {
                handshake(4, 2, 1, i + 1)
            } else {
                handshake(5, 1, -1, i + 1)
            }
        }),
    )
    .await;
    assert!(
        grows(&delivery, before, Duration::from_secs(2)).await,
        "the good stream stopped after the handshake flood"
    );
    assert!(!delivery.is_finished());

    another_caller_is_served(&server).await;
    let (ok, stderr) = good.wait(Duration::from_secs(30)).await;
    assert!(ok, "the good caller failed: {stderr}");
    server.stop().await;
}

/// Handshakes from more peers than the listener keeps state for (5,000 inductions from 20
/// loopback addresses, 250 ports each): the oldest are evicted, so neither the publisher
/// already connected nor a caller that comes right after is kept out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_from_thousands_of_peers_keep_nobody_out() {
    let server = TestServer::start().await;
    let _ = ts_clip();
    let good = Caller::ffmpeg(&server.url(&format!("streamid={GOOD_KEY}&passphrase={GOOD_PASS}")));
    let delivery = server
        .admission
        .wait_delivery(GOOD_KEY, 0, Duration::from_secs(5))
        .await;
    let before = delivery.bytes();
    for i in 0..5000u32 {
        // 250 peers per address: under the per-address limit (256).
        let ip = std::net::Ipv4Addr::new(127, 1, 0, 1 + (i / 250) as u8);
        let socket = UdpSocket::bind((ip, 0)).await.unwrap();
        let _ = socket
            .send_to(&handshake(4, 2, 1, i + 1), server.addr)
            .await;
        if i % 100 == 99 {
            tokio::task::yield_now().await;
        }
    }
    assert!(
        grows(&delivery, before, Duration::from_secs(2)).await,
        "the good stream stopped during the flood"
    );
    another_caller_is_served(&server).await;
    let (ok, stderr) = good.wait(Duration::from_secs(30)).await;
    assert!(ok, "the good caller failed: {stderr}");
    server.stop().await;
}

/// srt-protocol 0.4.4's packet parser panics (`unimplemented!("Implement other kinds")`) on a
/// handshake carrying an SRT extension of type 6 (congestion control), 7 (packet filter) or 8
/// (group) in the configuration position; with srt-tokio's listener one such datagram ended
/// every SRT connection. OnAir's driver refuses the caller with libsrt's reason for it, and
/// the publisher already connected keeps delivering on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_panicked_srt_tokio_is_refused_and_disturbs_nobody() {
    let server = TestServer::start().await;
    let _ = ts_clip();
    let good = Caller::ffmpeg(&server.url(&format!("streamid={GOOD_KEY}&passphrase={GOOD_PASS}")));
    let delivery = server
        .admission
        .wait_delivery(GOOD_KEY, 0, Duration::from_secs(5))
        .await;
    assert!(grows(&delivery, 0, Duration::from_secs(2)).await);

    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // (extension type, its content, the reject code expected: libsrt's SRT_REJ_*)
    for (kind, content, code) in [
        (6u16, *b"elif", 1013), // congestion "file" (words are little-endian)
        (7, *b"evil", 1014),    // filter
        (8, *b"evil", 1015),    // group
        (0, *b"evil", 1004),    // unknown: rogue
    ] {
        let mut poison = handshake(5, 0x0005, -1, 77);
        poison.extend_from_slice(&kind.to_be_bytes());
        poison.extend_from_slice(&1u16.to_be_bytes()); // one 32-bit word
        poison.extend_from_slice(&content);
        let before = delivery.bytes();
        socket.send_to(&poison, server.addr).await.unwrap();
        let mut reply = [0u8; 1500];
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut reply))
            .await
            .expect("no reply to the handshake")
            .unwrap();
        assert!(n >= 64, "short reply");
        // The handshake type field carries the reject code; addressed to the caller's socket.
        assert_eq!(
            i32::from_be_bytes(reply[36..40].try_into().unwrap()),
            code,
            "type {kind}"
        );
        assert_eq!(u32::from_be_bytes(reply[12..16].try_into().unwrap()), 77);
        assert!(
            grows(&delivery, before, Duration::from_secs(2)).await,
            "the connected publisher stopped after a type {kind} extension"
        );
    }
    assert!(!delivery.is_finished(), "the connected publisher was cut");
    assert_eq!(
        server.admission.delivery_count(GOOD_KEY),
        1,
        "the publisher had to reconnect"
    );
    another_caller_is_served(&server).await;
    let (ok, stderr) = good.wait(Duration::from_secs(30)).await;
    assert!(ok, "the good caller failed: {stderr}");
    server.stop().await;
}

/// A conclusion that srt-protocol's handshake code cannot finish (no SRT handshake extension:
/// it answers `NotHandled` and keeps the request); the admission gives up after its timeout,
/// so the caller's slot and the stream are free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_srt_protocol_never_finishes_does_not_hold_the_stream() {
    let server = TestServer::start().await;
    let _ = ts_clip();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&handshake(4, 2, 1, 99), server.addr)
        .await
        .unwrap();
    let mut reply = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut reply))
        .await
        .expect("no induction reply")
        .unwrap();
    assert!(n >= 64, "short induction reply");
    let cookie = &reply[44..48];

    // HSv5 conclusion with the cookie, a 16-byte key size, the streamid and no HSREQ.
    let mut conclusion = handshake(5, 0x0004, -1, 99);
    conclusion[20..22].copy_from_slice(&2u16.to_be_bytes()); // key size 16 (in units of 8)
    conclusion[44..48].copy_from_slice(cookie);
    conclusion.extend_from_slice(&5u16.to_be_bytes()); // extension type 5: streamid
    let sid = GOOD_KEY.as_bytes();
    assert_eq!(sid.len() % 4, 0);
    conclusion.extend_from_slice(&((sid.len() / 4) as u16).to_be_bytes());
    for word in sid.chunks(4) {
        conclusion.extend(word.iter().rev()); // streamid words are little-endian
    }
    socket.send_to(&conclusion, server.addr).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.admission.lookups().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.admission.lookups(),
        [GOOD_KEY],
        "the request did not arrive"
    );

    // After the admission timeout (2 s) the stuck request is given up; a real caller for the
    // same stream is admitted.
    tokio::time::sleep(srt::DEFAULT_ADMISSION_TIMEOUT + Duration::from_millis(500)).await;
    assert!(server.admission.requests().is_empty(), "publish was asked");
    let caller =
        Caller::ffmpeg(&server.url(&format!("streamid={GOOD_KEY}&passphrase={GOOD_PASS}")));
    let delivery = server
        .admission
        .wait_delivery(GOOD_KEY, 0, Duration::from_secs(5))
        .await;
    assert!(grows(&delivery, 0, Duration::from_secs(3)).await);
    drop(caller);
    server.stop().await;
}
