//! End-to-end tests with real libsrt callers (ffmpeg's SRT output and `srt-live-transmit`, both
//! on libsrt 1.5): admitted callers deliver the whole clip; callers without the passphrase,
//! with a wrong one, or with an unknown key are refused quickly while another stream keeps
//! delivering.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    ts_clip, Caller, TestServer, DISABLED_KEY, GOOD_KEY, GOOD_PASS, OTHER_KEY, OTHER_PASS,
};
use session::IngestProtocol;

/// The bytes delivered are the clip's bytes: within 2 % (ffmpeg rewrites the TS as it copies
/// it, with the same packets but its own PAT/PMT cadence).
fn assert_about_clip_size(bytes: u64) {
    let (_, size) = ts_clip();
    let ratio = bytes as f64 / size as f64;
    assert!(
        (0.98..=1.02).contains(&ratio),
        "delivered {bytes} bytes for a clip of {size} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_with_passphrase_and_every_key_size() {
    let server = TestServer::start().await;
    // Without `pbkeylen`, libsrt announces no key size in the handshake (srt-tokio reports
    // `KeySize::Unspecified`) and sends 16-byte key material: accepted too, and never with
    // `accept(None)`, which would panic srt-tokio's listener task.
    for (i, pbkeylen) in ["", "&pbkeylen=16", "&pbkeylen=24", "&pbkeylen=32"]
        .into_iter()
        .enumerate()
    {
        let url = server.url(&format!(
            "streamid={GOOD_KEY}&passphrase={GOOD_PASS}{pbkeylen}"
        ));
        let (ok, stderr) = Caller::ffmpeg(&url).wait(Duration::from_secs(30)).await;
        assert!(ok, "ffmpeg failed with {pbkeylen:?}: {stderr}");
        let delivery = server
            .admission
            .wait_delivery(GOOD_KEY, i, Duration::from_secs(5))
            .await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !delivery.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(delivery.is_finished(), "the connection did not end");
        assert_about_clip_size(delivery.bytes());
    }
    let requests = server.admission.requests();
    assert_eq!(requests.len(), 4);
    assert!(requests
        .iter()
        .all(|r| r.stream_key == GOOD_KEY && r.protocol == IngestProtocol::Srt));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srt_live_transmit_publishes_with_access_control_streamid() {
    let server = TestServer::start().await;
    // `#!::r=KEY,m=publish`, percent-encoded in the URL as srt-live-transmit needs it.
    let url = server.url(&format!(
        "streamid=%23!::r={OTHER_KEY},m=publish&passphrase={OTHER_PASS}&pbkeylen=32"
    ));
    // srt-live-transmit 1.5.1 does not exit at the end of its standard input: wait for the
    // whole clip to arrive (ffmpeg paces it: 6 s), then stop it.
    let mut caller = Caller::srt_live_transmit(&url);
    let delivery = server
        .admission
        .wait_delivery(OTHER_KEY, 0, Duration::from_secs(5))
        .await;
    let (_, size) = ts_clip();
    let deadline = Instant::now() + Duration::from_secs(20);
    while delivery.bytes() < size * 98 / 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    caller.child.kill().await.unwrap();
    assert_about_clip_size(delivery.bytes());
    assert_eq!(server.admission.requests()[0].stream_key, OTHER_KEY);
    server.stop().await;
}

/// Waits for a caller that must be refused; returns how long it took to exit and what it
/// printed. (srt-live-transmit 1.5.1 exits with status 0 after a rejection, so the status is
/// not checked; that nothing was admitted is, by the test.)
async fn refused(caller: Caller, what: &str) -> (Duration, String) {
    let started = Instant::now();
    let (_, stderr) = caller.wait(Duration::from_secs(10)).await;
    let took = started.elapsed();
    eprintln!("{what}: refused after {took:?}: {}", stderr.trim());
    (took, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_callers_are_refused_while_another_stream_keeps_delivering() {
    let server = TestServer::start().await;
    let good = Caller::ffmpeg(&server.url(&format!("streamid={GOOD_KEY}&passphrase={GOOD_PASS}")));
    let delivery = server
        .admission
        .wait_delivery(GOOD_KEY, 0, Duration::from_secs(5))
        .await;

    let url = |query: String| server.url(&query);
    // (what, caller, what libsrt says about the refusal: srt-tokio's Core reasons by name,
    // its Server(...) reasons only as "application-defined")
    type StartCaller<'a> = Box<dyn Fn() -> Caller + 'a>;
    let cases: Vec<(&str, StartCaller, &str)> = vec![
        (
            "wrong passphrase (ffmpeg)",
            Box::new(|| {
                Caller::ffmpeg(&url(format!(
                    "streamid={OTHER_KEY}&passphrase=not-the-passphrase"
                )))
            }),
            "Incorrect passphrase",
        ),
        (
            "wrong passphrase (srt-live-transmit)",
            Box::new(|| {
                Caller::srt_live_transmit(&url(format!(
                    "streamid={OTHER_KEY}&passphrase=not-the-passphrase&pbkeylen=16"
                )))
            }),
            "Incorrect passphrase",
        ),
        (
            "no passphrase (ffmpeg)",
            Box::new(|| Caller::ffmpeg(&url(format!("streamid={OTHER_KEY}")))),
            "Password required",
        ),
        (
            "no passphrase (srt-live-transmit)",
            Box::new(|| Caller::srt_live_transmit(&url(format!("streamid={OTHER_KEY}")))),
            "Password required",
        ),
        (
            "unknown key",
            Box::new(|| {
                Caller::srt_live_transmit(&url(format!(
                    "streamid=no-such-key&passphrase={OTHER_PASS}"
                )))
            }),
            "Application-defined rejection reason",
        ),
        (
            "disabled stream",
            Box::new(|| {
                Caller::srt_live_transmit(&url(format!(
                    "streamid={DISABLED_KEY}&passphrase={OTHER_PASS}"
                )))
            }),
            "Application-defined rejection reason",
        ),
        (
            "already live",
            Box::new(|| {
                Caller::srt_live_transmit(&url(format!(
                    "streamid={GOOD_KEY}&passphrase={GOOD_PASS}"
                )))
            }),
            "Application-defined rejection reason",
        ),
        (
            "no streamid",
            Box::new(|| Caller::srt_live_transmit(&url(format!("passphrase={OTHER_PASS}")))),
            "Application-defined rejection reason",
        ),
        (
            "a packet filter (FEC)",
            Box::new(|| {
                Caller::srt_live_transmit(&url(format!(
                    "streamid={OTHER_KEY}&passphrase={OTHER_PASS}&pbkeylen=16&packetfilter=fec,cols:4,rows:2"
                )))
            }),
            "Packet Filter settings error",
        ),
        (
            "file mode (ffmpeg transtype=file)",
            Box::new(|| {
                Caller::ffmpeg(&url(format!(
                    "streamid={OTHER_KEY}&passphrase={OTHER_PASS}&transtype=file"
                )))
            }),
            "Congestion controller type collision",
        ),
    ];
    for (what, start, says) in &cases {
        let before = delivery.bytes();
        let (took, stderr) = refused(start(), what).await;
        assert!(
            took < Duration::from_secs(2),
            "{what}: refused only after {took:?}"
        );
        assert!(stderr.contains(says), "{what}: libsrt did not say {says:?}");
        assert!(
            !delivery.is_finished(),
            "the good stream ended during: {what}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            delivery.bytes() > before,
            "the good stream stopped delivering during: {what}"
        );
    }
    drop(cases);
    assert_eq!(server.admission.delivery_count(GOOD_KEY), 1);
    assert_eq!(
        server.admission.delivery_count(OTHER_KEY),
        0,
        "a refused caller was admitted"
    );
    // Only the good caller reached `publish`: refusals happen before it, without side effects.
    assert_eq!(server.admission.requests().len(), 1);

    let (ok, stderr) = good.wait(Duration::from_secs(30)).await;
    assert!(ok, "the good caller failed: {stderr}");
    server.stop().await;
}
