//! The caller side of caller ↔ listener set-up (udt4-protocol.md §4.1,
//! UDT4 `CUDT::connect(const sockaddr*)` and `connect(const CPacket&)`).

use std::net::SocketAddr;
use std::time::Instant;

use super::{handshake_for, is_plausible, Attempt, ConnectError, ConnectParams};
use crate::config::{Config, SocketType};
use crate::packet::ReqType;
use crate::seq::{SeqNumber, SocketId};

/// A connection attempt to a listener.
///
/// Sends a request (type 1, destination 0) at once and every 250 ms; adopts
/// the cookie from the listener's echo and switches to a type −1 request;
/// completes on the listener's final response. Fails after
/// `config.connect_timeout` (UDT4: 3 s) with [`ConnectError::TimedOut`].
/// See the [module docs](super) for the call order.
#[derive(Debug)]
pub struct Caller {
    attempt: Attempt,
    mss: u32,
    socket_type: SocketType,
}

impl Caller {
    /// Starts an attempt from socket `local_id` to the listener at `peer`,
    /// with `isn` as the initial sequence number of both directions
    /// (§4.1 step 8). The first request is due at `now`.
    pub fn new(
        config: &Config,
        local_id: SocketId,
        peer: SocketAddr,
        isn: SeqNumber,
        now: Instant,
    ) -> Self {
        Caller {
            attempt: Attempt::new(
                config,
                local_id,
                peer,
                isn,
                ReqType::Caller,
                now,
                config.connect_timeout,
            ),
            mss: config.mss,
            socket_type: config.socket_type,
        }
    }

    /// Processes one datagram. Anything not from the listener's address,
    /// not a handshake, or not addressed to ID 0 or to us is ignored, as is
    /// everything once the attempt has finished.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Some(packet) = self.attempt.incoming(now, from, datagram) else {
            return;
        };
        let Some(hs) = handshake_for(&packet, self.attempt.local_id) else {
            return;
        };
        let isn = self.attempt.request.isn;
        match hs.req_type {
            ReqType::Caller => {
                let request = &mut self.attempt.request;
                // §4.1 step 5: the listener's echo carries our cookie. Copy
                // it, switch to −1 and send at once. A duplicate echo changes
                // nothing and triggers no extra send.
                let changed = request.req_type != ReqType::Response || request.cookie != hs.cookie;
                request.cookie = hs.cookie;
                request.req_type = ReqType::Response;
                if changed {
                    log::debug!(
                        "[{}] cookie {:#010x} received",
                        self.attempt.local_id,
                        hs.cookie
                    );
                    self.attempt.send_now(now);
                }
            }
            ReqType::Rejected => self.attempt.finish(Err(ConnectError::Rejected)),
            ReqType::Response | ReqType::RendezvousConnected => {
                // §4.1 step 7: UDT4's only check is the ISN (ESECFAIL). It
                // does not look at version or socket type, which a connected
                // socket's reply leaves at 0.
                if hs.isn != isn {
                    self.attempt.finish(Err(ConnectError::IsnMismatch));
                    return;
                }
                if !is_plausible(&hs) {
                    log::debug!("implausible handshake response ignored: {hs:?}");
                    return;
                }
                let params = ConnectParams {
                    local_socket_id: self.attempt.local_id,
                    peer_socket_id: hs.socket_id,
                    peer_addr: self.attempt.peer,
                    send_isn: isn,
                    recv_isn: isn,
                    // UDT4 adopts the reply's MSS, which a listener computes as
                    // min(ours, its own); the min guards against one that
                    // does not.
                    mss: self.mss.min(hs.mss),
                    peer_flow_window: hs.flow_window,
                    socket_type: self.socket_type,
                    rendezvous: false,
                    self_ip: self.attempt.self_ip(&hs),
                    response: None,
                };
                self.attempt.finish(Ok(params));
            }
            // A rendezvous peer (req 0) never talks to a caller; other values
            // mean nothing to us.
            ReqType::Rendezvous | ReqType::Other(_) => {}
        }
    }

    /// Fails the attempt if the connect timeout has passed; otherwise a
    /// no-op (resends happen in [`Caller::poll_transmit`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.attempt.check_deadline(now);
    }

    /// Writes the next handshake request into `buf` and returns where to send
    /// it, or returns `None` when nothing is due (or the attempt finished).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        self.attempt.poll_transmit(now, buf)
    }

    /// When to call [`Caller::handle_timeout`] and [`Caller::poll_transmit`]
    /// next: the next resend or the deadline. `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.attempt.poll_timeout()
    }

    /// The outcome, returned exactly once when the attempt has finished.
    pub fn poll_result(&mut self) -> Option<Result<ConnectParams, ConnectError>> {
        self.attempt.poll_result()
    }

    /// True once the attempt has succeeded or failed.
    pub fn is_finished(&self) -> bool {
        !self.attempt.is_pending()
    }

    /// Our socket ID.
    pub fn local_socket_id(&self) -> SocketId {
        self.attempt.local_id
    }

    /// The listener's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.attempt.peer
    }
}
