//! Limits and timeouts of the SRT listener.

use std::time::Duration;

use session::PacingConfig;

/// The address the SRT listener binds by default (DESIGN: `--srt-addr`).
pub const DEFAULT_SRT_ADDR: &str = "0.0.0.0:6001";

/// The session manager must answer each step of an admission within this time, or the caller
/// is refused. Shorter than libsrt's default connect timeout (3 s), so a caller sees SRT's
/// reject reason rather than its own timeout.
pub const DEFAULT_ADMISSION_TIMEOUT: Duration = Duration::from_secs(2);

/// Callers handled at once (admissions in progress and connected publishers). Connection
/// requests beyond it are refused with `Server(Overload)`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;

/// Pause before binding again when the listener died or its port could not be bound.
pub const DEFAULT_REBIND_BACKOFF: Duration = Duration::from_millis(200);

/// Configuration of the SRT listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtConfig {
    /// See [`DEFAULT_ADMISSION_TIMEOUT`].
    pub admission_timeout: Duration,
    /// See [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`DEFAULT_REBIND_BACKOFF`].
    pub rebind_backoff: Duration,
    /// Real-time pacing of admitted callers (see [`session::pacing`]).
    pub pacing: PacingConfig,
}

impl Default for SrtConfig {
    fn default() -> Self {
        SrtConfig {
            admission_timeout: DEFAULT_ADMISSION_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            rebind_backoff: DEFAULT_REBIND_BACKOFF,
            pacing: PacingConfig::default(),
        }
    }
}

impl SrtConfig {
    /// Checks the values for consistency; the binary calls it once before binding a port.
    pub fn validate(&self) -> Result<(), String> {
        if self.admission_timeout.is_zero() {
            return Err("srt admission_timeout must be greater than zero".into());
        }
        if self.max_connections == 0 {
            return Err("srt max_connections must be at least 1".into());
        }
        if self.rebind_backoff.is_zero() {
            return Err("srt rebind_backoff must be greater than zero".into());
        }
        self.pacing.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(SrtConfig::default().validate(), Ok(()));
        assert!(DEFAULT_SRT_ADDR.parse::<std::net::SocketAddr>().is_ok());
    }

    #[test]
    fn refuses_zeroes() {
        let config = SrtConfig {
            max_connections: 0,
            ..SrtConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
