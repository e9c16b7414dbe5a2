//! The two kinds of UDT connection as types: a byte stream or whole
//! messages. They parameterise the one socket type ([`UdtSocket`](crate::UdtSocket)),
//! the listener and the [`Options`](crate::Options), so the kind is chosen
//! once, when the connection is opened, and the compiler knows it from then
//! on (no stream call on a message connection).

use std::fmt::Debug;

use udt_core::SocketType;

/// The kind of a connection: [`StreamMode`] or [`MessageMode`]. Sealed:
/// only these two exist.
pub trait Mode: sealed::Sealed + Debug + Send + Sync + 'static {}

/// A reliable byte stream (UDT's `SOCK_STREAM`): [`UdtStream`](crate::UdtStream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamMode {}

/// Whole messages with boundaries, optional time-to-live and ordering (UDT's
/// `SOCK_DGRAM`): [`UdtMessageSocket`](crate::UdtMessageSocket).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageMode {}

impl Mode for StreamMode {}
impl Mode for MessageMode {}

pub(crate) mod sealed {
    use super::SocketType;

    /// What the crate needs to know about a mode; not nameable outside.
    pub trait Sealed {
        /// The socket type the handshake offers for this mode.
        const SOCKET_TYPE: SocketType;
    }

    impl Sealed for super::StreamMode {
        const SOCKET_TYPE: SocketType = SocketType::Stream;
    }

    impl Sealed for super::MessageMode {
        const SOCKET_TYPE: SocketType = SocketType::Message;
    }
}
