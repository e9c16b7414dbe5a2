//! The caller side of caller ↔ listener set-up (udt4-protocol.md §4.1,
//! UDT4 `CUDT::connect(const sockaddr*)` and `connect(const CPacket&)`).

use std::net::SocketAddr;
use std::time::Instant;

use super::{handshake_for, is_plausible, Attempt, ConnectError, ConnectParams};
use crate::config::{Config, SocketType};
use crate::packet::{ReqType, HEADER_SIZE};
use crate::secure::handshake_ext::{self, ExtError, ExtKind, RefuseReason};
use crate::secure::keys::{HandshakeFailure, Initiator, Setup};
use crate::secure::Security;
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
    /// Secure mode wanted by this caller (plain: UDT4 exactly).
    security: Security,
    /// The key agreement started with our final request.
    initiator: Option<Box<Initiator>>,
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
            security: config.security.clone(),
            initiator: None,
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
                if let Err(e) = self.check_offer(datagram) {
                    self.attempt.finish(Err(e));
                    return;
                }
                let request = &mut self.attempt.request;
                // §4.1 step 5: the listener's echo carries our cookie. Copy
                // it, switch to −1 and send at once. A duplicate echo changes
                // nothing and triggers no extra send.
                let changed = request.req_type != ReqType::Response || request.cookie != hs.cookie;
                request.cookie = hs.cookie;
                request.req_type = ReqType::Response;
                if changed {
                    if let Err(e) = self.start_key_agreement() {
                        self.attempt.finish(Err(e));
                        return;
                    }
                    log::debug!(
                        "[{}] cookie {:#010x} received",
                        self.attempt.local_id,
                        hs.cookie
                    );
                    self.attempt.send_now(now);
                }
            }
            ReqType::Rejected => {
                let e = refusal_reason(datagram, self.security.is_secure());
                self.attempt.finish(Err(e));
            }
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
                let secure = match self.finish_key_agreement(datagram) {
                    Ok(s) => s,
                    Err(e) => {
                        log::info!(
                            "[{}] secure handshake with {} failed: {e}",
                            self.attempt.local_id,
                            self.attempt.peer
                        );
                        if e == ConnectError::AuthFailed {
                            // The listener accepted (a code cannot be
                            // checked before message 2): tell its new
                            // connection, so that it fails fast too.
                            let method = self.security.method();
                            self.attempt.refuse_and_fail(now, hs.socket_id, method, e);
                        } else {
                            self.attempt.finish(Err(e));
                        }
                        return;
                    }
                };
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
                    secure,
                };
                self.attempt.finish(Ok(params));
            }
            // A rendezvous peer (req 0) never talks to a caller; other values
            // mean nothing to us.
            ReqType::Rendezvous | ReqType::Other(_) => {}
        }
    }

    /// Secure caller: the listener's cookie echo must offer secure mode
    /// with our method. A plain caller ignores any extension.
    fn check_offer(&self, datagram: &[u8]) -> Result<(), ConnectError> {
        let Some(method) = self.security.method() else {
            return Ok(());
        };
        match handshake_ext::parse_datagram(datagram) {
            Ok(ext) if ext.kind == ExtKind::Offer && ext.method == Some(method) => Ok(()),
            Ok(ext) if ext.kind == ExtKind::Offer => Err(ConnectError::SecurityMismatch),
            Err(ExtError::Version(v)) => {
                log::info!(
                    "[{}] {} offers secure mode version {v}, we speak {}: refusing",
                    self.attempt.local_id,
                    self.attempt.peer,
                    handshake_ext::VERSION
                );
                Err(ConnectError::SecureVersion)
            }
            _ => {
                log::info!(
                    "[{}] {} answered as a plain UDT4 listener: secure mode refuses to go on",
                    self.attempt.local_id,
                    self.attempt.peer
                );
                Err(ConnectError::PeerNotSecure)
            }
        }
    }

    /// Starts (or, when the cookie changed, restarts) the key agreement
    /// for the final request as it now stands: its body is in the Noise
    /// prologue, and the first message goes in the extension.
    fn start_key_agreement(&mut self) -> Result<(), ConnectError> {
        let mut body = Vec::with_capacity(crate::packet::Handshake::BODY_SIZE);
        self.attempt.request.write_body(&mut body);
        match Initiator::start(Setup::CallerListener, &self.security, &body) {
            Ok(Some(init)) => {
                self.attempt.extension = init.extension().to_vec();
                self.initiator = Some(Box::new(init));
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(_) => Err(ConnectError::SecureConfig),
        }
    }

    /// Secure caller: completes the key agreement with the listener's
    /// response. `Ok(None)` for a plain caller.
    fn finish_key_agreement(
        &mut self,
        datagram: &[u8],
    ) -> Result<Option<Box<super::SecureParams>>, ConnectError> {
        if !self.security.is_secure() {
            return Ok(None);
        }
        let Some(init) = self.initiator.take() else {
            // A response before our final request: nothing was agreed.
            return Err(ConnectError::AuthFailed);
        };
        let ext = match handshake_ext::parse_datagram(datagram) {
            Ok(ext) => ext,
            Err(ExtError::Absent) => return Err(ConnectError::PeerNotSecure),
            Err(ExtError::Malformed) => return Err(ConnectError::AuthFailed),
            Err(ExtError::Version(_)) => return Err(ConnectError::SecureVersion),
        };
        let body = datagram
            .get(HEADER_SIZE..HEADER_SIZE + crate::packet::Handshake::BODY_SIZE)
            .unwrap_or_default();
        let keys = init.finish(body, &ext).map_err(|e| match e {
            HandshakeFailure::MethodMismatch => ConnectError::SecurityMismatch,
            HandshakeFailure::BadConfig => ConnectError::SecureConfig,
            HandshakeFailure::AuthFailed => ConnectError::AuthFailed,
        })?;
        Ok(Some(Box::new(super::SecureParams {
            keys,
            response_ext: Vec::new(),
        })))
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

/// What a rejection means, from the refusal extension a secure listener
/// adds (UDT4's rejections carry none).
fn refusal_reason(datagram: &[u8], we_are_secure: bool) -> ConnectError {
    match handshake_ext::parse_datagram(datagram) {
        Ok(ext) if ext.kind == ExtKind::Refuse => match ext.reason {
            RefuseReason::PlainRefused if !we_are_secure => ConnectError::SecureRequired,
            RefuseReason::MethodMismatch => ConnectError::SecurityMismatch,
            RefuseReason::AuthFailed => ConnectError::AuthFailed,
            RefuseReason::Version => ConnectError::SecureVersion,
            _ => ConnectError::Rejected,
        },
        _ => ConnectError::Rejected,
    }
}
