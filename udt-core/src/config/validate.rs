//! The limits a [`Config`] must respect, checked in one place so that a bad
//! value is reported when a connection is set up, not found later as a
//! stalled transfer or an arithmetic overflow deep in a timer.

use std::fmt;
use std::time::Duration;

use super::{Config, MAX_MSS, MIN_MSS};

/// The smallest send or receive buffer, in packets: a connection needs room
/// for one packet in flight and one more to make progress (the engine never
/// goes below this).
pub const MIN_BUFFER_PACKETS: u32 = 2;

/// The largest send or receive buffer (and flow window), in packets: half
/// the 31-bit sequence space. Beyond it, "before" and "after" between two
/// sequence numbers in the buffer become ambiguous.
pub const MAX_BUFFER_PACKETS: u32 = 0x3FFF_FFFF;

/// The shortest timeout: shorter ones expire before a single handshake
/// request or timer tick could do anything.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// The longest timeout or linger time. Longer values are certainly a
/// mistake, and bounding them keeps every `now + timeout` from overflowing.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A configuration value outside what the protocol supports. The message
/// names the field and the allowed range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A number is outside its allowed range.
    OutOfRange {
        /// The field, as `Type.field`.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The smallest allowed value.
        min: u64,
        /// The largest allowed value.
        max: u64,
    },
    /// A duration is outside its allowed range (timeouts must not be zero).
    DurationOutOfRange {
        /// The field, as `Type.field`.
        field: &'static str,
        /// The value given.
        value: Duration,
        /// The shortest allowed value.
        min: Duration,
        /// The longest allowed value.
        max: Duration,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::OutOfRange {
                field,
                value,
                min,
                max,
            } => write!(
                f,
                "invalid configuration: {field} = {value}, but it must be between {min} and {max}"
            ),
            ConfigError::DurationOutOfRange {
                field,
                value,
                min,
                max,
            } => write!(
                f,
                "invalid configuration: {field} = {value:?}, but it must be between {min:?} and {max:?}"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Checks that `value` is in `min..=max`.
fn check_range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

fn check_duration(field: &'static str, value: Duration, min: Duration) -> Result<(), ConfigError> {
    if (min..=MAX_DURATION).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::DurationOutOfRange {
            field,
            value,
            min,
            max: MAX_DURATION,
        })
    }
}

impl Config {
    /// Checks every field against the protocol's limits: the MSS between
    /// [`MIN_MSS`] and [`MAX_MSS`]; buffers and flow window between
    /// [`MIN_BUFFER_PACKETS`] and [`MAX_BUFFER_PACKETS`]; timeouts between
    /// 1 ms and a year (not zero); the linger time at most a year; a
    /// bandwidth cap of at least 1 byte per second.
    ///
    /// # Errors
    /// The first field out of range, with its allowed range.
    ///
    /// ```
    /// use udt_core::config::{Config, ConfigError};
    ///
    /// let mut config = Config::default();
    /// config.mss = 20;
    /// let err = config.validate().unwrap_err();
    /// assert!(matches!(err, ConfigError::OutOfRange { field: "Config.mss", value: 20, .. }));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let buffers = (u64::from(MIN_BUFFER_PACKETS), u64::from(MAX_BUFFER_PACKETS));
        check_range(
            "Config.mss",
            self.mss.into(),
            MIN_MSS.into(),
            MAX_MSS.into(),
        )?;
        check_range(
            "Config.send_buffer_packets",
            self.send_buffer_packets.into(),
            buffers.0,
            buffers.1,
        )?;
        check_range(
            "Config.recv_buffer_packets",
            self.recv_buffer_packets.into(),
            buffers.0,
            buffers.1,
        )?;
        check_range(
            "Config.flow_window",
            self.flow_window.into(),
            buffers.0,
            buffers.1,
        )?;
        if let Some(linger) = self.linger {
            check_duration("Config.linger", linger, Duration::ZERO)?;
        }
        check_duration("Config.connect_timeout", self.connect_timeout, MIN_TIMEOUT)?;
        check_duration(
            "Config.rendezvous_timeout",
            self.rendezvous_timeout,
            MIN_TIMEOUT,
        )?;
        check_duration(
            "Config.peer_idle_timeout",
            self.peer_idle_timeout,
            MIN_TIMEOUT,
        )?;
        if let Some(rate) = self.max_bandwidth {
            check_range("Config.max_bandwidth", rate, 1, u64::MAX)?;
        }
        if let crate::secure::Security::StaticKeys { peer_keys, .. } = &self.security {
            // A caller needs the listener's key; a listener with none
            // would refuse everyone.
            check_range(
                "Config.security.peer_keys",
                peer_keys.len() as u64,
                1,
                u64::MAX,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn each_limit_is_enforced_at_its_edge() {
        let ok = |f: &dyn Fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate()
        };
        assert_eq!(ok(&|c| c.mss = MIN_MSS), Ok(()));
        assert_eq!(ok(&|c| c.mss = MAX_MSS), Ok(()));
        assert_eq!(
            ok(&|c| c.mss = MIN_MSS - 1),
            Err(ConfigError::OutOfRange {
                field: "Config.mss",
                value: u64::from(MIN_MSS - 1),
                min: MIN_MSS.into(),
                max: MAX_MSS.into(),
            })
        );
        assert_eq!(ok(&|c| c.send_buffer_packets = MIN_BUFFER_PACKETS), Ok(()));
        assert!(matches!(
            ok(&|c| c.send_buffer_packets = 1),
            Err(ConfigError::OutOfRange {
                field: "Config.send_buffer_packets",
                ..
            })
        ));
        assert!(matches!(
            ok(&|c| c.recv_buffer_packets = MAX_BUFFER_PACKETS + 1),
            Err(ConfigError::OutOfRange {
                field: "Config.recv_buffer_packets",
                ..
            })
        ));
        assert!(matches!(
            ok(&|c| c.flow_window = 0),
            Err(ConfigError::OutOfRange {
                field: "Config.flow_window",
                ..
            })
        ));
        assert!(matches!(
            ok(&|c| c.connect_timeout = Duration::ZERO),
            Err(ConfigError::DurationOutOfRange {
                field: "Config.connect_timeout",
                ..
            })
        ));
        assert!(matches!(
            ok(&|c| c.rendezvous_timeout = Duration::MAX),
            Err(ConfigError::DurationOutOfRange {
                field: "Config.rendezvous_timeout",
                ..
            })
        ));
        assert!(matches!(
            ok(&|c| c.peer_idle_timeout = Duration::from_micros(999)),
            Err(ConfigError::DurationOutOfRange {
                field: "Config.peer_idle_timeout",
                ..
            })
        ));
        assert_eq!(ok(&|c| c.linger = Some(Duration::ZERO)), Ok(()));
        assert_eq!(ok(&|c| c.linger = None), Ok(()));
        assert!(matches!(
            ok(&|c| c.linger = Some(Duration::MAX)),
            Err(ConfigError::DurationOutOfRange {
                field: "Config.linger",
                ..
            })
        ));
        assert_eq!(ok(&|c| c.max_bandwidth = Some(1)), Ok(()));
        assert!(matches!(
            ok(&|c| c.max_bandwidth = Some(0)),
            Err(ConfigError::OutOfRange {
                field: "Config.max_bandwidth",
                ..
            })
        ));
    }

    #[test]
    fn the_message_names_the_field_and_the_range() {
        let c = Config {
            mss: 10,
            ..Config::default()
        };
        let text = c.validate().unwrap_err().to_string();
        assert!(text.contains("Config.mss = 10"), "{text}");
        assert!(text.contains("between 76 and 65535"), "{text}");
    }
}
