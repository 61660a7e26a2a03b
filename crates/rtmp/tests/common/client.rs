//! A hand-made RTMP client: handshake, chunks and AMF0 written byte by byte as the test says,
//! so conformance tests can send what real encoders send (and what they should not).

use std::net::SocketAddr;
use std::time::Duration;

use media::amf0::Amf0Value;
use rtmp::chunk::{ChunkDecoder, ChunkLimits, Message};
use rtmp::command::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Raw AMF0 values, so tests can write types OnAir's own encoder never writes.
pub mod amf {
    pub fn number(n: f64) -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&n.to_be_bytes());
        v
    }

    pub fn boolean(b: bool) -> Vec<u8> {
        vec![1, u8::from(b)]
    }

    pub fn string(s: &str) -> Vec<u8> {
        let mut v = vec![2];
        v.extend_from_slice(&(s.len() as u16).to_be_bytes());
        v.extend_from_slice(s.as_bytes());
        v
    }

    pub fn long_string(s: &str) -> Vec<u8> {
        let mut v = vec![12];
        v.extend_from_slice(&(s.len() as u32).to_be_bytes());
        v.extend_from_slice(s.as_bytes());
        v
    }

    pub fn date(ms: f64) -> Vec<u8> {
        let mut v = vec![11];
        v.extend_from_slice(&ms.to_be_bytes());
        v.extend_from_slice(&0u16.to_be_bytes());
        v
    }

    pub fn null() -> Vec<u8> {
        vec![5]
    }

    pub fn object(props: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut v = vec![3];
        for (k, value) in props {
            v.extend_from_slice(&(k.len() as u16).to_be_bytes());
            v.extend_from_slice(k.as_bytes());
            v.extend_from_slice(value);
        }
        v.extend_from_slice(&[0, 0, 9]);
        v
    }

    /// A command message body: name, transaction id, then the given values.
    pub fn command(name: &str, tid: f64, values: &[Vec<u8>]) -> Vec<u8> {
        let mut v = string(name);
        v.extend(number(tid));
        for value in values {
            v.extend_from_slice(value);
        }
        v
    }

    /// The connect command object ffmpeg sends.
    pub fn connect_object(app: &str, port: u16) -> Vec<u8> {
        object(&[
            ("app", string(app)),
            ("type", string("nonprivate")),
            ("flashVer", string("FMLE/3.0 (compatible; Lavf59.27.100)")),
            ("tcUrl", string(&format!("rtmp://127.0.0.1:{port}/{app}"))),
        ])
    }
}

/// Chunks of one message: a type-0 header, then type-3 continuations.
pub fn chunks(
    csid: u8,
    ts: u32,
    type_id: u8,
    msid: u32,
    payload: &[u8],
    chunk_size: usize,
) -> Vec<u8> {
    let mut v = vec![csid];
    v.extend_from_slice(&ts.min(0xff_ffff).to_be_bytes()[1..]);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    v.push(type_id);
    v.extend_from_slice(&msid.to_le_bytes());
    if ts >= 0xff_ffff {
        v.extend_from_slice(&ts.to_be_bytes());
    }
    for (i, part) in payload.chunks(chunk_size).enumerate() {
        if i > 0 {
            v.push(0xc0 | csid);
            if ts >= 0xff_ffff {
                v.extend_from_slice(&ts.to_be_bytes());
            }
        }
        v.extend_from_slice(part);
    }
    v
}

/// A raw client connection.
pub struct RawClient {
    pub stream: TcpStream,
    decoder: ChunkDecoder,
    /// Write every byte in its own `write` call (the server must not care).
    pub bytewise: bool,
    pub port: u16,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            decoder: ChunkDecoder::new(ChunkLimits::default()),
            bytewise: false,
            port: addr.port(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        if self.bytewise {
            for b in bytes {
                self.stream
                    .write_all(std::slice::from_ref(b))
                    .await
                    .unwrap();
            }
        } else {
            self.stream.write_all(bytes).await.unwrap();
        }
    }

    /// The plain RTMP handshake (C0 C1, S0 S1 S2, C2).
    pub async fn handshake(&mut self) {
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[0u8; 8]);
        c0c1.extend((0..1528u32).map(|i| (i * 7 % 256) as u8));
        self.send(&c0c1).await;
        let mut s = vec![0u8; 1 + 1536 + 1536];
        tokio::time::timeout(Duration::from_secs(5), self.stream.read_exact(&mut s))
            .await
            .expect("no handshake reply within 5 s")
            .unwrap();
        assert_eq!(s[0], 3, "S0 version");
        let c2 = s[1..1537].to_vec();
        self.send(&c2).await;
    }

    pub async fn send_message(
        &mut self,
        csid: u8,
        ts: u32,
        type_id: u8,
        msid: u32,
        payload: &[u8],
    ) {
        let bytes = chunks(csid, ts, type_id, msid, payload, 128);
        self.send(&bytes).await;
    }

    pub async fn send_command(&mut self, msid: u32, body: &[u8]) {
        self.send_message(3, 0, 20, msid, body).await;
    }

    /// The next message from the server; `None` on EOF or after `within`.
    pub async fn next_message(&mut self, within: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(m) = self.decoder.poll_message().expect("server sent bad chunks") {
                return Some(m);
            }
            let mut buf = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.decoder.push(&buf[..n]),
            }
        }
    }

    /// Reads until a command named `name`; panics on EOF or timeout.
    pub async fn expect_command(&mut self, name: &str) -> Command {
        loop {
            let Some(m) = self.next_message(Duration::from_secs(5)).await else {
                panic!("connection closed or silent while waiting for {name}");
            };
            if m.type_id == 20 {
                let c = Command::decode(20, m.payload).unwrap();
                if c.name == name {
                    return c;
                }
            }
        }
    }

    /// Reads until a message of `type_id`; `None` on EOF or timeout.
    pub async fn wait_for_type(&mut self, type_id: u8, within: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.next_message(left).await?;
            if m.type_id == type_id {
                return Some(m);
            }
        }
    }

    /// `connect` to `app` and expect `NetConnection.Connect.Success`.
    pub async fn connect_app(&mut self, app: &str) {
        let body = amf::command("connect", 1.0, &[amf::connect_object(app, self.port)]);
        self.send_command(0, &body).await;
        let reply = self.expect_command("_result").await;
        assert_eq!(
            status_code(&reply),
            Some("NetConnection.Connect.Success".into())
        );
    }

    /// `createStream`, returning the stream id.
    pub async fn create_stream(&mut self) -> u32 {
        self.send_command(0, &amf::command("createStream", 2.0, &[amf::null()]))
            .await;
        let reply = self.expect_command("_result").await;
        match reply.args.first() {
            Some(Amf0Value::Number(n)) => *n as u32,
            other => panic!("createStream result {other:?}"),
        }
    }

    /// `publish(name, kind)` on `msid`; returns the first `onStatus` or `_error` reply.
    pub async fn publish(&mut self, msid: u32, name: &str, kind: &str) -> Command {
        let body = amf::command(
            "publish",
            5.0,
            &[amf::null(), amf::string(name), amf::string(kind)],
        );
        self.send_message(8, 0, 20, msid, &body).await;
        loop {
            let Some(m) = self.next_message(Duration::from_secs(5)).await else {
                panic!("connection closed or silent after publish");
            };
            if m.type_id == 20 {
                let c = Command::decode(20, m.payload).unwrap();
                if c.name == "onStatus" || c.name == "_error" {
                    return c;
                }
            }
        }
    }

    /// Handshake, connect, createStream, publish `name` with `kind`; asserts
    /// `NetStream.Publish.Start` and returns the stream id.
    pub async fn start_publish(&mut self, name: &str, kind: &str) -> u32 {
        self.handshake().await;
        self.connect_app("app").await;
        let msid = self.create_stream().await;
        let status = self.publish(msid, name, kind).await;
        assert_eq!(
            status_code(&status).as_deref(),
            Some("NetStream.Publish.Start"),
            "{status:?}"
        );
        msid
    }

    /// Whether the server closes the connection within `within` (data is read and dropped).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        let mut buf = [0u8; 8192];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// The `code` of the status object in a reply's arguments.
pub fn status_code(command: &Command) -> Option<String> {
    command
        .args
        .iter()
        .find_map(|a| a.get("code").and_then(Amf0Value::as_str).map(str::to_owned))
}
