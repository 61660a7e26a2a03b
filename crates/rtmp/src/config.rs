//! Limits and timeouts of the RTMP listeners.

use std::time::Duration;

use session::PacingConfig;

/// A peer must finish the TLS handshake (RTMPS) and the RTMP handshake within this time.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// After the handshake, a peer must ask to publish within this time (connect, createStream,
/// publish). Keeps peers that talk but never publish from holding connection slots.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(15);

/// The session manager must answer a publish request within this time; otherwise the
/// publisher is refused (`NetStream.Publish.Denied`) rather than left waiting.
pub const DEFAULT_ADMISSION_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection that receives no byte for this long is closed. Encoders send media many times
/// a second, so a silent publisher is a dead one (a half-open TCP connection, a frozen encoder).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most connections per listener. When it is reached, a new connection closes the
/// oldest connection that is not admitted yet (so silent or slow peers cannot lock encoders
/// out); when every connection is an admitted publisher, the new one is closed instead.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;

/// The largest RTMP message accepted (a video frame is one message). RTMP's own limit is
/// 16 MiB - 1; 8 MiB is several times the largest keyframe of a 4K stream at 50 Mbit/s.
/// A larger message closes the connection.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 8 * 1024 * 1024;

/// The most bytes of incomplete messages held for one connection, summed over its chunk
/// streams (messages of different chunk streams interleave, so several can be in progress).
pub const DEFAULT_MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;

/// The most bytes of incomplete messages (and unparsed input) held for one connection until
/// its publish is admitted: enough for any real `connect`/`publish` (a few hundred bytes;
/// commands are limited to 64 KiB), small enough that connections which never authenticate
/// cost little. After admission [`DEFAULT_MAX_PENDING_BYTES`] and
/// [`DEFAULT_MAX_MESSAGE_SIZE`] apply.
pub const DEFAULT_MAX_PENDING_BYTES_BEFORE_PUBLISH: usize = 64 * 1024;

/// The most bytes of incomplete messages held by all connections of a listener that are not
/// admitted yet. When it is exceeded, the oldest unadmitted connections are closed until it
/// is not (an encoder's `connect` completes within milliseconds, a parked connection is old).
pub const DEFAULT_MAX_UNADMITTED_BYTES: usize = 16 * 1024 * 1024;

/// The most connections from one IP address that are not admitted yet (handshake, `connect`,
/// waiting for `publish`). A new one beyond it closes that address's oldest unadmitted
/// connection. Admitted publishers do not count: one host may publish many streams.
pub const DEFAULT_MAX_UNADMITTED_PER_ADDRESS: usize = 16;

/// The largest chunk size a peer may announce with Set Chunk Size: the protocol's own maximum
/// (31 bits). Any value is safe to accept, because chunk payloads are appended to their
/// message as they arrive: memory is bounded by the message limits, not by the chunk size.
pub const DEFAULT_MAX_CHUNK_SIZE: u32 = 0x7fff_ffff;

/// The most chunk stream ids one connection may use. Encoders use fewer than ten.
pub const DEFAULT_MAX_CHUNK_STREAMS: usize = 64;

/// The chunk size OnAir announces and uses for what it sends (replies only: small).
pub const DEFAULT_OUTGOING_CHUNK_SIZE: u32 = 4096;

/// The acknowledgement window OnAir announces: the peer acknowledges after this many bytes.
pub const DEFAULT_WINDOW_ACK_SIZE: u32 = 2_500_000;

/// Configuration of an RTMP or RTMPS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpConfig {
    /// See [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// See [`DEFAULT_PUBLISH_TIMEOUT`].
    pub publish_timeout: Duration,
    /// See [`DEFAULT_ADMISSION_TIMEOUT`].
    pub admission_timeout: Duration,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub max_message_size: usize,
    /// See [`DEFAULT_MAX_PENDING_BYTES`].
    pub max_pending_bytes: usize,
    /// See [`DEFAULT_MAX_PENDING_BYTES_BEFORE_PUBLISH`].
    pub max_pending_bytes_before_publish: usize,
    /// See [`DEFAULT_MAX_UNADMITTED_BYTES`].
    pub max_unadmitted_bytes: usize,
    /// See [`DEFAULT_MAX_UNADMITTED_PER_ADDRESS`].
    pub max_unadmitted_per_address: usize,
    /// Real-time pacing of admitted publishers.
    pub pacing: PacingConfig,
    /// How far FLV timestamps may leap or step back before they are rebased.
    pub timestamps: media::timestamp::TimestampConfig,
    /// See [`DEFAULT_MAX_CHUNK_SIZE`].
    pub max_chunk_size: u32,
    /// See [`DEFAULT_MAX_CHUNK_STREAMS`].
    pub max_chunk_streams: usize,
    /// See [`DEFAULT_OUTGOING_CHUNK_SIZE`].
    pub outgoing_chunk_size: u32,
    /// See [`DEFAULT_WINDOW_ACK_SIZE`].
    pub window_ack_size: u32,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
            admission_timeout: DEFAULT_ADMISSION_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            max_pending_bytes_before_publish: DEFAULT_MAX_PENDING_BYTES_BEFORE_PUBLISH,
            max_unadmitted_bytes: DEFAULT_MAX_UNADMITTED_BYTES,
            max_unadmitted_per_address: DEFAULT_MAX_UNADMITTED_PER_ADDRESS,
            pacing: PacingConfig::default(),
            timestamps: media::timestamp::TimestampConfig::default(),
            max_chunk_size: DEFAULT_MAX_CHUNK_SIZE,
            max_chunk_streams: DEFAULT_MAX_CHUNK_STREAMS,
            outgoing_chunk_size: DEFAULT_OUTGOING_CHUNK_SIZE,
            window_ack_size: DEFAULT_WINDOW_ACK_SIZE,
        }
    }
}

impl RtmpConfig {
    /// Checks the values for consistency; the binary calls it once before binding a port.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("handshake_timeout", self.handshake_timeout.is_zero()),
            ("publish_timeout", self.publish_timeout.is_zero()),
            ("admission_timeout", self.admission_timeout.is_zero()),
            ("idle_timeout", self.idle_timeout.is_zero()),
        ];
        for (name, zero) in positive {
            if zero {
                return Err(format!("rtmp {name} must be greater than zero"));
            }
        }
        if self.max_connections == 0 {
            return Err("rtmp max_connections must be at least 1".into());
        }
        if self.max_message_size < 1024 || self.max_message_size > 0xff_ffff {
            return Err(format!(
                "rtmp max_message_size must be between 1 KiB and 16 MiB - 1 (RTMP's limit), not {}",
                self.max_message_size
            ));
        }
        if self.max_pending_bytes < self.max_message_size {
            return Err("rtmp max_pending_bytes must be at least max_message_size".into());
        }
        if self.max_pending_bytes_before_publish < 4096
            || self.max_pending_bytes_before_publish > self.max_pending_bytes
        {
            return Err(
                "rtmp max_pending_bytes_before_publish must be between 4 KiB and max_pending_bytes"
                    .into(),
            );
        }
        if self.max_unadmitted_bytes < self.max_pending_bytes_before_publish {
            return Err(
                "rtmp max_unadmitted_bytes must be at least max_pending_bytes_before_publish"
                    .into(),
            );
        }
        if self.max_unadmitted_per_address == 0 {
            return Err("rtmp max_unadmitted_per_address must be at least 1".into());
        }
        self.pacing.validate()?;
        if !(128..=0x7fff_ffff).contains(&self.max_chunk_size) {
            return Err("rtmp max_chunk_size must be between 128 and 2^31 - 1".into());
        }
        if self.max_chunk_streams < 4 {
            return Err("rtmp max_chunk_streams must be at least 4".into());
        }
        if !(128..=65536).contains(&self.outgoing_chunk_size) {
            return Err("rtmp outgoing_chunk_size must be between 128 and 65536".into());
        }
        if self.window_ack_size == 0 {
            return Err("rtmp window_ack_size must be greater than zero".into());
        }
        Ok(())
    }
}

/// An [`RtmpConfig`] that can be replaced while its listeners run (a configuration reload):
/// each new connection takes the one current when it is accepted, and keeps it to its end.
/// `serve` accepts a plain [`RtmpConfig`] too.
pub type SharedRtmpConfig = session::Reloadable<RtmpConfig>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(RtmpConfig::default().validate(), Ok(()));
    }

    #[test]
    fn refuses_inconsistent_values() {
        let config = RtmpConfig {
            max_pending_bytes: 1024,
            ..RtmpConfig::default()
        };
        assert!(config.validate().is_err());
        let config = RtmpConfig {
            idle_timeout: Duration::ZERO,
            ..RtmpConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
