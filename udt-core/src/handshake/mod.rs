//! Connection set-up as sans-I/O state machines: [`Caller`], [`Listener`]
//! (stateless SYN cookie) and [`Rendezvous`] (udt4-protocol.md §4).
//!
//! Each machine turns datagrams and time into datagrams to send and, at the
//! end, a [`ConnectParams`] from which the driver builds the connection.
//! None of them reads a clock or touches a socket.
//!
//! # Driving a [`Caller`] or a [`Rendezvous`]
//!
//! Both have the shape of a connection. After `new`, loop:
//!
//! 1. `while let Some(to) = m.poll_transmit(now, &mut buf)`: send `buf` to `to`;
//! 2. `if let Some(result) = m.poll_result()`: build the connection (or
//!    report the error) and drop the machine;
//! 3. wait for a datagram or until `m.poll_timeout()`, then call
//!    `m.handle_datagram(now, from, &datagram)` or `m.handle_timeout(now)`.
//!
//! After the result, the connection (not these machines) answers further
//! handshakes from the peer (udt4-protocol.md §4.2 step 5).
//!
//! # Driving the [`Listener`]
//!
//! Feed it every handshake addressed to socket ID 0; it answers through a
//! caller-owned buffer and keeps no per-peer state until a caller proves,
//! with a valid cookie, that it receives at its address.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::config::{Config, SocketType, MIN_MSS};
use crate::packet::{decode, Control, ControlPacket, Handshake, Packet, PeerIp, ReqType};
use crate::seq::{SeqNumber, SocketId};

mod caller;
mod connecting;
mod cookie;
mod listener;
mod rendezvous;
mod rendezvous_secure;

pub use caller::Caller;
pub use connecting::Connecting;
pub use listener::{AcceptRequest, Listener, ListenerOutput};
pub use rendezvous::Rendezvous;

/// How often an unanswered handshake request is repeated (UDT4
/// `CUDT::connect` and `CRendezvousQueue::updateConnStatus`: 250 ms).
pub const REQUEST_INTERVAL: Duration = Duration::from_millis(250);

/// Width of a SYN-cookie time bucket. A cookie stays valid in the bucket it
/// was issued in and the next one, so for 60 to 120 s. (UDT4 uses minutes
/// since the listener opened too, but its previous-minute check never
/// matches, udt4-protocol.md §4.1.)
pub const COOKIE_BUCKET: Duration = Duration::from_secs(60);

/// Everything a connection needs from a finished handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectParams {
    /// Our socket ID: the destination of every packet the peer sends us.
    pub local_socket_id: SocketId,
    /// The peer's socket ID: the destination of every packet we send.
    pub peer_socket_id: SocketId,
    /// The peer's address; packets from any other address are not ours.
    pub peer_addr: SocketAddr,
    /// The first sequence number we send.
    pub send_isn: SeqNumber,
    /// The first sequence number we expect from the peer.
    pub recv_isn: SeqNumber,
    /// The negotiated MSS, IP and UDP headers included.
    pub mss: u32,
    /// The peer's flight flag size: our initial flow window, in packets.
    /// Raw from the wire; the connection bounds it by its own buffers.
    pub peer_flow_window: u32,
    /// Stream or message mode.
    pub socket_type: SocketType,
    /// True for a rendezvous connection (it answers late handshakes with −2).
    pub rendezvous: bool,
    /// Our own IP as the peer sees it (the peer-IP field of its handshake,
    /// what UDT4's `getsockname` reports); `None` when the peer sent zeros.
    pub self_ip: Option<IpAddr>,
    /// Listener side only: the −1 response we sent. The driver resends it
    /// when the caller repeats its −1 request (our response was lost).
    pub response: Option<Handshake>,
    /// Secure mode: the packet keys and the peer's identity; `None` for a
    /// plain connection.
    pub secure: Option<Box<SecureParams>>,
}

/// What a secure handshake leaves to its connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecureParams {
    /// Packet keys and the peer's verified identity.
    pub keys: crate::secure::SessionKeys,
    /// Listener side: the extension of our response, appended when the
    /// response is sent again (empty on the caller's side).
    pub response_ext: Vec<u8>,
}

/// Why a connection attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectError {
    /// No answer within the connect (or rendezvous) timeout (UDT4
    /// `ENOSERVER`, 1001).
    TimedOut,
    /// The listener refused: wrong version or socket type, or its backlog is
    /// full (handshake request type 1002, UDT4 `ECONNREJ`).
    Rejected,
    /// The listener's response carried another initial sequence number than
    /// ours (UDT4 `ESECFAIL`, 1004): a stale or forged response.
    IsnMismatch,
    /// Secure mode is required here but the listener answered as a plain
    /// UDT4 endpoint (or someone on the path stripped its offer).
    PeerNotSecure,
    /// We called in plain mode and the listener requires secure mode.
    SecureRequired,
    /// The two sides use different authentication methods (e.g. a code
    /// against a pre-shared key).
    SecurityMismatch,
    /// The peer did not prove it knows the key or code (wrong code, wrong
    /// key, a key not in the allowed list, or a forged response).
    AuthFailed,
    /// The secure configuration cannot start a handshake (static keys
    /// without the peer's key).
    SecureConfig,
    /// The peer speaks another version of secure mode (another release of
    /// ours): the two constructions do not interoperate.
    SecureVersion,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::TimedOut => {
                write!(
                    f,
                    "connection timed out: the peer did not answer the handshake"
                )
            }
            ConnectError::Rejected => write!(
                f,
                "connection rejected by the peer (version or socket type mismatch, or backlog full)"
            ),
            ConnectError::IsnMismatch => write!(
                f,
                "handshake response carried a wrong initial sequence number (stale or forged)"
            ),
            ConnectError::PeerNotSecure => write!(
                f,
                "the peer does not speak secure mode (a plain UDT4 endpoint, or a downgrade on the path); \
                 refusing to connect without encryption"
            ),
            ConnectError::SecureRequired => write!(
                f,
                "the peer requires secure mode (give it the code or key), and this side connected in plain mode"
            ),
            ConnectError::SecurityMismatch => write!(
                f,
                "the peer uses another authentication method (code, pre-shared key or static keys)"
            ),
            ConnectError::AuthFailed => write!(
                f,
                "authentication failed: wrong code or key (or the handshake was tampered with)"
            ),
            ConnectError::SecureConfig => write!(
                f,
                "secure mode cannot start with this configuration (static keys need the peer's key)"
            ),
            ConnectError::SecureVersion => write!(
                f,
                "the peer speaks another version of secure mode: run the same release on both sides"
            ),
        }
    }
}

impl std::error::Error for ConnectError {}

impl From<ConnectError> for io::Error {
    fn from(e: ConnectError) -> Self {
        let kind = match e {
            ConnectError::TimedOut => io::ErrorKind::TimedOut,
            ConnectError::Rejected => io::ErrorKind::ConnectionRefused,
            ConnectError::IsnMismatch => io::ErrorKind::ConnectionAborted,
            ConnectError::PeerNotSecure
            | ConnectError::SecureRequired
            | ConnectError::SecurityMismatch
            | ConnectError::SecureVersion
            | ConnectError::AuthFailed => io::ErrorKind::PermissionDenied,
            ConnectError::SecureConfig => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}

/// Where an attempt stands.
#[derive(Debug)]
enum Outcome {
    /// Still trying.
    Pending,
    /// Finished; the result waits for `poll_result`.
    Ready(Result<ConnectParams, ConnectError>),
    /// Finished and the result was handed out.
    Taken,
}

/// The part [`Caller`] and [`Rendezvous`] share: one handshake request,
/// repeated every [`REQUEST_INTERVAL`] until an answer or the deadline.
#[derive(Debug)]
struct Attempt {
    local_id: SocketId,
    peer: SocketAddr,
    /// The request as it is (re)sent now.
    request: Handshake,
    /// Header destination of the request: 0 until the peer's ID is known.
    request_dest: SocketId,
    /// Bytes sent after the request's 48-byte body: the secure extension
    /// of a secure caller's final request, else nothing.
    extension: Vec<u8>,
    /// A secure refusal to send before the failure is reported: the peer
    /// completed its side (a listener, a rendezvous responder) and its
    /// connection ends on it instead of waiting for its idle timeout.
    farewell: Option<(Vec<u8>, ConnectError)>,
    /// The farewell went out and finished the attempt: a timer is due so
    /// that the driver collects the result.
    farewell_sent: bool,
    /// When the request goes out next.
    next_send: Instant,
    /// The attempt fails with `TimedOut` at this instant; `None` when the
    /// configured timeout is too large to represent (never times out).
    deadline: Option<Instant>,
    outcome: Outcome,
}

impl Attempt {
    /// The first request of an attempt: §4.1 step 2 / §4.2 step 1.
    fn new(
        config: &Config,
        local_id: SocketId,
        peer: SocketAddr,
        isn: SeqNumber,
        req_type: ReqType,
        now: Instant,
        timeout: Duration,
    ) -> Self {
        let request = Handshake {
            version: Handshake::VERSION,
            socket_type: config.socket_type.to_wire(),
            isn,
            mss: config.mss,
            flow_window: config.advertised_window(),
            req_type,
            socket_id: local_id,
            cookie: 0,
            // The address we send to (§3.1).
            peer_ip: PeerIp::from_addr(peer.ip()),
        };
        Attempt {
            local_id,
            peer,
            request,
            request_dest: SocketId::HANDSHAKE,
            extension: Vec::new(),
            farewell: None,
            farewell_sent: false,
            next_send: now,
            deadline: now.checked_add(timeout),
            outcome: Outcome::Pending,
        }
    }

    fn is_pending(&self) -> bool {
        matches!(self.outcome, Outcome::Pending)
    }

    /// Secure mode: fails with `error` after sending the peer's socket
    /// `dest` a rejection (type 1002) whose extension says the key
    /// agreement failed (`method` is ours). The peer's connection, which
    /// has not heard an authentic packet yet, ends with an error on it.
    fn refuse_and_fail(
        &mut self,
        now: Instant,
        dest: SocketId,
        method: Option<crate::secure::Method>,
        error: ConnectError,
    ) {
        if !self.is_pending() || self.farewell.is_some() {
            return;
        }
        let refusal = Handshake {
            req_type: ReqType::Rejected,
            ..self.request
        };
        let mut buf = Vec::new();
        refusal.encode(0, dest, &mut buf);
        crate::secure::handshake_ext::write(
            &mut buf,
            crate::secure::handshake_ext::ExtKind::Refuse,
            method,
            Some(crate::secure::RefuseReason::AuthFailed),
            &[],
        );
        self.farewell = Some((buf, error));
        self.next_send = now;
    }

    /// Fails the attempt once the deadline has passed.
    fn check_deadline(&mut self, now: Instant) {
        if self.is_pending() && self.deadline.is_some_and(|d| now >= d) {
            log::debug!("[{}] handshake with {} timed out", self.local_id, self.peer);
            self.outcome = Outcome::Ready(Err(ConnectError::TimedOut));
        }
    }

    fn finish(&mut self, result: Result<ConnectParams, ConnectError>) {
        if self.is_pending() {
            log::debug!(
                "[{}] handshake with {} finished: {:?}",
                self.local_id,
                self.peer,
                result.as_ref().map(|p| p.peer_socket_id)
            );
            self.outcome = Outcome::Ready(result);
        }
    }

    /// Schedules the request to go out at the next `poll_transmit`.
    fn send_now(&mut self, now: Instant) {
        self.next_send = now;
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        if let Some((refusal, error)) = self.farewell.take() {
            buf.clear();
            buf.extend_from_slice(&refusal);
            self.finish(Err(error));
            self.farewell_sent = true;
            return Some(self.peer);
        }
        self.check_deadline(now);
        if !self.is_pending() || now < self.next_send {
            return None;
        }
        // UDT4 sends handshakes with timestamp 0 (§2.2).
        self.request.encode(0, self.request_dest, buf);
        buf.extend_from_slice(&self.extension);
        self.next_send = now + REQUEST_INTERVAL;
        Some(self.peer)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.farewell_sent && matches!(self.outcome, Outcome::Ready(_)) {
            // Finished by a transmission (the farewell): the driver's next
            // timer call hands the result over.
            return Some(self.next_send);
        }
        let deadline = self.deadline.unwrap_or(self.next_send);
        self.is_pending().then(|| self.next_send.min(deadline))
    }

    fn poll_result(&mut self) -> Option<Result<ConnectParams, ConnectError>> {
        match std::mem::replace(&mut self.outcome, Outcome::Taken) {
            Outcome::Ready(r) => Some(r),
            Outcome::Pending => {
                self.outcome = Outcome::Pending;
                None
            }
            Outcome::Taken => None,
        }
    }

    /// The handshake in `datagram` if it comes from our peer, is addressed to
    /// us (destination 0 or our ID, as UDT4's `CRendezvousQueue::retrieve`
    /// matches connecting sockets) and we are still connecting.
    fn incoming<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &'a [u8],
    ) -> Option<Packet<'a>> {
        self.check_deadline(now);
        if !self.is_pending() || self.farewell.is_some() || from != self.peer {
            return None;
        }
        decode(datagram).ok()
    }

    /// Our IP as the peer reported it, decoded for the peer's family.
    fn self_ip(&self, hs: &Handshake) -> Option<IpAddr> {
        let is_v6 = self.peer.ip().to_canonical().is_ipv6();
        (!hs.peer_ip.is_zero()).then(|| hs.peer_ip.to_addr(is_v6, None))
    }
}

/// The handshake body of `packet` if it is a handshake addressed to socket
/// ID 0 or to `local_id`.
fn handshake_for(packet: &Packet<'_>, local_id: SocketId) -> Option<Handshake> {
    match packet {
        Packet::Control(ControlPacket {
            dest,
            control: Control::Handshake(hs),
            ..
        }) if *dest == SocketId::HANDSHAKE || *dest == local_id => Some(*hs),
        _ => None,
    }
}

/// Values from a peer's handshake that no correct peer sends: socket ID 0
/// (reserved for requests) and an MSS below UDT4's minimum. Such handshakes
/// are dropped rather than trusted.
fn is_plausible(hs: &Handshake) -> bool {
    hs.socket_id != SocketId::HANDSHAKE && hs.mss >= MIN_MSS
}

#[cfg(test)]
mod tests;
