//! The receive low-water mark of a publisher's socket (`SO_RCVLOWAT`): the kernel wakes the
//! connection only once the publisher has sent about [`GATHER`] of media at its own rate,
//! instead of for every write (an encoder writes each audio and video frame on its own: about
//! 77 writes a second for 30 fps video with AAC, and each woke the ingest thread).
//!
//! The mark follows the rate measured over the last second. Once a second without reads, the
//! mark is recomputed from what did arrive, so a publisher that slows down or stops gets a
//! lower mark, down to 1 byte: Linux signals the socket readable again when its mark is
//! lowered below what is queued, so a last small message (`deleteStream`, the tail of a
//! stalled stream) waits at most about a second, and a keyframe (larger than the mark) is
//! never held. Only admitted publishers get a mark: commands before that are small and must be
//! answered at once.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use tokio::time::Instant;

/// How much of the publisher's media the kernel gathers before it wakes the connection.
pub(crate) const GATHER: Duration = Duration::from_millis(10);

/// The highest mark set. Linux clamps a socket's receive window to its mark when the buffer
/// the mark needs (about twice the mark) exceeds the socket's receive buffer at that moment
/// (`tcp_set_rcvlowat`), which would throttle a distant high-bitrate encoder; 16 KiB needs
/// 32 KiB, below any initial receive buffer (`tcp_rmem`'s default: 87,380 bytes on old
/// kernels, 131,072 since). Above about 13 Mbit/s the mark is less than 10 ms, but such
/// encoders write frames larger than it anyway.
const MAX_MARK: usize = 16 * 1024;

/// How often the mark is recomputed from the measured rate.
const INTERVAL: Duration = Duration::from_secs(1);

/// One socket's mark.
#[derive(Debug)]
pub(crate) struct ReceiveMark {
    /// The connection's socket; open for as long as the connection (which owns both) runs.
    fd: RawFd,
    /// The mark set now (1: the kernel's default).
    mark: usize,
    /// Bytes read since `since`.
    bytes: u64,
    since: Instant,
    /// Setting it failed once: left alone from then on (the connection works as without it).
    failed: bool,
}

impl ReceiveMark {
    /// A mark of 1 (the default) until the first second of media is measured.
    pub(crate) fn new(fd: RawFd, now: Instant) -> Self {
        ReceiveMark {
            fd,
            mark: 1,
            bytes: 0,
            since: now,
            failed: false,
        }
    }

    /// The mark set now.
    #[cfg(test)]
    pub(crate) fn mark(&self) -> usize {
        self.mark
    }

    /// Counts `n` bytes read at `now`; recomputes the mark once a second.
    pub(crate) fn handle_read(&mut self, n: usize, now: Instant) {
        self.bytes += n as u64;
        if now >= self.since + INTERVAL {
            self.update(now);
        }
    }

    /// When the mark must be recomputed even if nothing is read (only while it is above 1).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        (self.mark > 1 && !self.failed).then_some(self.since + INTERVAL)
    }

    /// The deadline passed: recomputes the mark from what arrived.
    pub(crate) fn handle_deadline(&mut self, now: Instant) {
        if now >= self.since + INTERVAL {
            self.update(now);
        }
    }

    fn update(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.since).as_secs_f64();
        let rate = if elapsed > 0.0 {
            self.bytes as f64 / elapsed
        } else {
            0.0
        };
        self.bytes = 0;
        self.since = now;
        let want = ((rate * GATHER.as_secs_f64()) as usize).clamp(1, MAX_MARK);
        // Moved only when it changes by more than a quarter, or must come down to 1: at most
        // one system call a second, usually none.
        let changed = (want == 1 && self.mark != 1)
            || want.saturating_mul(4) < self.mark.saturating_mul(3)
            || want.saturating_mul(4) > self.mark.saturating_mul(5);
        if !changed || self.failed {
            return;
        }
        match set_receive_low_water(self.fd, want) {
            Ok(()) => self.mark = want,
            Err(e) => {
                tracing::debug!(error = %e, "cannot set SO_RCVLOWAT; reading as without it");
                self.failed = true;
            }
        }
    }
}

/// `setsockopt(SO_RCVLOWAT)`: neither rustix nor socket2 has it.
#[allow(unsafe_code)]
fn set_receive_low_water(fd: RawFd, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>())
        .map_err(|_| io::Error::other("socklen_t"))?;
    // SAFETY: `fd` is an open socket for the whole life of the `ReceiveMark` (the connection
    // owns the socket and the mark, and drops the mark with it); the option value is a
    // `c_int` on this stack frame, and `len` is its size.
    let result = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            std::ptr::from_ref(&value).cast(),
            len,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Whether `socket` becomes readable within 200 ms.
    async fn readable(socket: &TcpStream) -> bool {
        tokio::time::timeout(Duration::from_millis(200), socket.readable())
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// What the mark is for, checked against the kernel: a socket whose mark is above what is
    /// queued is not readable, and lowering the mark makes it readable without new data.
    #[tokio::test]
    async fn the_kernel_wakes_the_reader_at_the_mark_and_when_it_is_lowered() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let start = Instant::now();
        let mut mark = ReceiveMark::new(server.as_raw_fd(), start);
        // 100 kB in the first second: a mark of 1000 bytes (10 ms of it).
        mark.handle_read(100_000, start + INTERVAL);
        assert_eq!(mark.mark(), 1000);
        assert_eq!(mark.deadline(), Some(start + INTERVAL * 2));
        let mut buf = [0u8; 2000];
        // Whatever tokio assumed of the new socket: an empty read makes it wait for the kernel.
        assert!(server.try_read(&mut buf).is_err());
        client.write_all(&[0; 10]).await.unwrap();
        assert!(!readable(&server).await, "woken below the mark");
        client.write_all(&[0; 1000]).await.unwrap();
        assert!(readable(&server).await);
        assert_eq!(server.try_read(&mut buf).unwrap(), 1010);
        // Nothing left: tokio forgets the readiness.
        assert!(server.try_read(&mut buf).is_err());
        // A quiet second: the mark comes down to 1, and what is queued is readable at once.
        client.write_all(&[0; 10]).await.unwrap();
        assert!(!readable(&server).await, "woken below the mark");
        mark.handle_deadline(start + INTERVAL * 2);
        assert_eq!(mark.mark(), 1);
        assert_eq!(mark.deadline(), None);
        assert!(readable(&server).await);
        assert_eq!(server.try_read(&mut buf).unwrap(), 10);
    }

    #[test]
    fn the_mark_follows_the_rate_and_moves_only_by_more_than_a_quarter() {
        let start = Instant::now();
        // A descriptor that is not a socket: every set fails, and the mark stays put.
        let mut failing = ReceiveMark::new(-1, start);
        failing.handle_read(1_000_000, start + INTERVAL);
        assert_eq!(failing.mark(), 1);
        assert_eq!(failing.deadline(), None);

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut mark = ReceiveMark::new(socket.as_raw_fd(), start);
        let mut now = start;
        let mut second = |mark: &mut ReceiveMark, bytes: usize| {
            now += INTERVAL;
            mark.handle_read(bytes, now);
            mark.mark()
        };
        assert_eq!(second(&mut mark, 375_000), 3750); // 3 Mbit/s
        assert_eq!(second(&mut mark, 400_000), 3750); // within a quarter: unchanged
        assert_eq!(second(&mut mark, 500_000), 5000);
        assert_eq!(second(&mut mark, 100_000_000), MAX_MARK);
        assert_eq!(second(&mut mark, 50), 1);
    }
}
