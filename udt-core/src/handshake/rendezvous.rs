//! Rendezvous set-up: two sockets that both connect to each other
//! (udt4-protocol.md §4.2; UDT4 `CUDT::connect(const CPacket&)` with
//! `m_bRendezvous`, and `CRendezvousQueue`).

use std::net::SocketAddr;
use std::time::Instant;

use super::rendezvous_secure::{self, Role, SecureRendezvous};
use super::{handshake_for, is_plausible, Attempt, ConnectError, ConnectParams, SecureParams};
use crate::config::{Config, SocketType};
use crate::packet::{Control, ControlPacket, Handshake, Packet, ReqType, HEADER_SIZE};
use crate::secure::handshake_ext::{ExtKind, Extension};
use crate::seq::{SeqNumber, SocketId};

/// One side of a rendezvous connection attempt.
///
/// The steps of §4.2, as UDT4 4.11 performs them:
///
/// 1. Send a request of type 0 (destination 0) at once and every 250 ms, for
///    up to `config.rendezvous_timeout` (UDT4: 30 s).
/// 2. While our type is 0, any handshake of type 0, −1 or −2 from the peer is
///    stored, our type becomes −1, and the request goes out at once with
///    destination = the peer's ID. (A type-0 handshake while we are at −1
///    also triggers an immediate resend.)
/// 3. While our type is −1, a handshake of type −1 or −2 completes the
///    connection. Type 1 (a normal caller) is ignored.
/// 4. With a peer handshake stored, a data packet or keep-alive from the peer
///    (it is connected already) completes the connection from the stored
///    handshake.
///
/// Negotiated: each side sends from its own ISN and expects the peer's; the
/// flow window is the peer's flight flag size. **MSS is `min(ours, peer's)`**,
/// where UDT4 adopts the peer's as is (and so may send datagrams the peer
/// truncates); configure equal MSS on both sides when talking to UDT4.
///
/// Other divergences: handshakes of type 1002 or unknown types are ignored
/// (UDT4 would complete on them in step 3 or advance in step 2).
///
/// **Third parties** (issue 10 item 5): anyone can send a destination-0
/// handshake from the peer's address, but only who saw one of our requests
/// knows our (random) socket ID. So a handshake addressed to 0 only names a
/// candidate peer to address our requests to; completing (step 3), or
/// completing on a keep-alive (step 4), needs a peer handshake addressed
/// to our socket ID, and once one arrived, handshakes addressed to 0 no
/// longer change the peer's ID and ISN. Step 4 on a data packet with only a
/// candidate also needs the data's sequence number to lie just after the
/// candidate's ISN. UDT4 addresses its −1 and −2 to our ID, so this costs
/// nothing against it.
///
/// **Secure mode** (`config.security` other than plain): the same steps,
/// with the key agreement of caller ↔ listener set-up in the "UDTS"
/// extension and roles assigned by comparing `(socket ID, ISN)`; step 4 is
/// off and completion needs the key agreement. See
/// `handshake::rendezvous_secure` and docs/security.md.
/// A plain rendezvous sends and accepts exactly what UDT4 does.
///
/// When [`Rendezvous::handle_datagram`] completes the connection through
/// step 4, the datagram that did it (data or keep-alive) also belongs to the
/// new connection: the driver should hand it over once the connection
/// exists.
#[derive(Debug)]
pub struct Rendezvous {
    attempt: Attempt,
    mss: u32,
    socket_type: SocketType,
    /// The latest plausible handshake from the peer (UDT4 `m_ConnRes`).
    peer_handshake: Option<Handshake>,
    /// `peer_handshake` came addressed to our socket ID: its sender saw one
    /// of our requests (see the type's documentation).
    authenticated: bool,
    /// Secure mode: the key agreement's state; `None` for plain UDT4.
    secure: Option<Box<SecureRendezvous>>,
}

/// How far after a candidate's ISN the first data packet from the peer may
/// lie and still complete the rendezvous (its first flight).
const MAX_FIRST_DATA_OFFSET: u32 = 1 << 16;

impl Rendezvous {
    /// Starts a rendezvous attempt from socket `local_id` to `peer`, sending
    /// from `isn`. The first request is due at `now`.
    pub fn new(
        config: &Config,
        local_id: SocketId,
        peer: SocketAddr,
        isn: SeqNumber,
        now: Instant,
    ) -> Self {
        let mut attempt = Attempt::new(
            config,
            local_id,
            peer,
            isn,
            ReqType::Rendezvous,
            now,
            config.rendezvous_timeout,
        );
        let secure = SecureRendezvous::new(&config.security).map(Box::new);
        if let Some(s) = &secure {
            // Our first requests say "secure, this method" to the peer.
            attempt.extension = s.offer();
        }
        Rendezvous {
            attempt,
            mss: config.mss,
            socket_type: config.socket_type,
            peer_handshake: None,
            authenticated: false,
            secure,
        }
    }

    /// Processes one datagram. Anything not from the peer's exact address
    /// (UDT4 matches IP and port) is ignored, as is everything once the
    /// attempt has finished.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Some(packet) = self.attempt.incoming(now, from, datagram) else {
            return;
        };
        let local_id = self.attempt.local_id;
        if let Some(hs) = handshake_for(&packet, local_id) {
            let addressed = matches!(
                packet,
                Packet::Control(ControlPacket { dest, .. }) if dest == local_id
            );
            self.on_handshake(now, hs, addressed, datagram);
            return;
        }
        if self.secure.is_some() {
            // Step 4 would complete without keys: a secure peer's data
            // can only be read once our own key agreement has finished.
            return;
        }
        // Step 4: the peer already counts as connected and sends us data or a
        // keep-alive (UDT4 connect(const CPacket&): "a data packet or a
        // keep-alive packet comes, which means the peer side is already
        // connected").
        let Some(hs) = self.peer_handshake else {
            return;
        };
        let from_connected_peer = match packet {
            Packet::Data { header, .. } => {
                header.dest == local_id && (self.authenticated || is_first_flight(&hs, header.seq))
            }
            Packet::Control(ControlPacket {
                dest,
                control: Control::KeepAlive,
                ..
            }) => dest == local_id && self.authenticated,
            Packet::Control(_) => false,
        };
        if from_connected_peer {
            self.complete(&hs, None, None);
        }
    }

    fn on_handshake(&mut self, now: Instant, hs: Handshake, addressed: bool, datagram: &[u8]) {
        match hs.req_type {
            ReqType::Rendezvous | ReqType::Response | ReqType::RendezvousConnected => {}
            ReqType::Rejected if addressed && self.is_refused(datagram) => {
                // Secure: the peer's key agreement failed against ours.
                log::info!(
                    "[{}] {} refused the secure rendezvous: wrong key or code",
                    self.attempt.local_id,
                    self.attempt.peer
                );
                return self.attempt.finish(Err(ConnectError::AuthFailed));
            }
            // Step 3: "regular connect should NOT communicate with rendezvous
            // connect" (UDT4). Rejections and unknown types: see type docs.
            ReqType::Caller | ReqType::Rejected | ReqType::Other(_) => return,
        }
        if !is_plausible(&hs) {
            log::debug!("implausible rendezvous handshake ignored: {hs:?}");
            return;
        }
        let ext = match self
            .secure
            .as_deref()
            .map(|s| s.check(datagram, hs.req_type, addressed))
        {
            None => None,
            Some(Ok(ext)) => Some(ext),
            Some(Err(e)) => {
                log::info!(
                    "[{}] secure rendezvous with {} refused: {e}",
                    self.attempt.local_id,
                    self.attempt.peer
                );
                self.attempt.finish(Err(e));
                return;
            }
        };
        if self.authenticated {
            let known = self.peer_handshake.as_ref();
            let same_peer = known.is_some_and(|k| k.socket_id == hs.socket_id && k.isn == hs.isn);
            if !addressed || !same_peer {
                // The peer is known from a handshake addressed to us: no
                // one may change its ID or ISN now. A request to 0 still
                // means our answer was lost: repeat it.
                log::debug!(
                    "[{}] rendezvous handshake not matching the peer ignored: {hs:?}",
                    self.attempt.local_id
                );
                if hs.req_type == ReqType::Rendezvous {
                    self.attempt.send_now(now);
                }
                return;
            }
        }
        self.peer_handshake = Some(hs);
        self.authenticated = addressed;
        if let Some(ext) = ext {
            self.secure_step(now, &hs, addressed, datagram, ext.as_ref());
            return;
        }
        let own = self.attempt.request.req_type;
        if own == ReqType::Rendezvous || hs.req_type == ReqType::Rendezvous {
            // Step 2: answer with −1, addressed to the peer's ID, at once.
            if own == ReqType::Rendezvous {
                log::debug!(
                    "[{}] rendezvous peer {} seen, second phase",
                    self.attempt.local_id,
                    hs.socket_id
                );
            }
            self.attempt.request.req_type = ReqType::Response;
            self.attempt.request_dest = hs.socket_id;
            self.attempt.send_now(now);
        } else if addressed {
            // Step 3: we are at −1 and the peer sent −1 or −2 to our ID.
            self.complete(&hs, None, None);
        } else {
            // A −1 or −2 to 0: a candidate to address, not proof.
            self.attempt.request_dest = hs.socket_id;
        }
    }

    /// Secure mode's steps 2 and 3 (see
    /// [`rendezvous_secure`](super::rendezvous_secure)): answer with −1 and
    /// the extension of our role; complete on the key agreement only.
    fn secure_step(
        &mut self,
        now: Instant,
        hs: &Handshake,
        addressed: bool,
        datagram: &[u8],
        ext: Option<&Extension<'_>>,
    ) {
        let local_id = self.attempt.local_id;
        let Some(role) =
            rendezvous_secure::role(local_id, self.attempt.request.isn, hs.socket_id, hs.isn)
        else {
            log::debug!("[{local_id}] rendezvous handshake with our own ID and ISN ignored");
            return;
        };
        let first_contact = self.attempt.request.req_type == ReqType::Rendezvous
            || hs.req_type == ReqType::Rendezvous;
        self.attempt.request.req_type = ReqType::Response;
        self.attempt.request_dest = hs.socket_id;
        let mut body = Vec::with_capacity(Handshake::BODY_SIZE);
        self.attempt.request.write_body(&mut body);
        let peer_body = datagram
            .get(HEADER_SIZE..HEADER_SIZE + Handshake::BODY_SIZE)
            .unwrap_or_default();
        let Some(secure) = self.secure.as_deref_mut() else {
            return;
        };
        let kind = ext.map(|e| e.kind);
        let mut send_now = first_contact;
        match role {
            Role::Initiator => {
                match secure.init_ext(&body) {
                    Ok(init) => self.attempt.extension = init,
                    Err(e) => return self.attempt.finish(Err(e)),
                }
                if let Some(ext) = ext.filter(|e| addressed && e.kind == ExtKind::Resp) {
                    match secure.finish(peer_body, ext) {
                        Ok(params) => self.complete(hs, Some(params), None),
                        Err(e) => self.fail_auth(now, hs.socket_id, e),
                    }
                    return;
                }
                // The responder waits for our Init: send it at once.
                send_now |= addressed && kind == Some(ExtKind::Offer);
            }
            Role::Responder => {
                if let Some(ext) = ext.filter(|e| addressed && e.kind == ExtKind::Init) {
                    match secure.respond(peer_body, ext, &body) {
                        Ok(params) => {
                            self.attempt.extension = params.response_ext.clone();
                            let response = self.attempt.request;
                            self.complete(hs, Some(params), Some(response));
                        }
                        Err(e) => self.fail_auth(now, hs.socket_id, e),
                    }
                    return;
                }
                self.attempt.extension = secure.offer();
            }
        }
        if send_now {
            self.attempt.send_now(now);
        }
    }

    /// Fails a secure attempt whose key agreement did not authenticate,
    /// telling the peer (which may have completed) so that it fails fast.
    fn fail_auth(&mut self, now: Instant, peer_id: SocketId, e: ConnectError) {
        log::info!(
            "[{}] secure rendezvous with {} failed: {e}",
            self.attempt.local_id,
            self.attempt.peer
        );
        if e == ConnectError::AuthFailed {
            let method = self.secure.as_deref().map(SecureRendezvous::method);
            self.attempt.refuse_and_fail(now, peer_id, method, e);
        } else {
            self.attempt.finish(Err(e));
        }
    }

    /// A secure attempt and a rejection whose extension says the peer's
    /// key agreement failed (a plain attempt ignores rejections).
    fn is_refused(&self, datagram: &[u8]) -> bool {
        self.secure
            .as_deref()
            .is_some_and(|s| s.is_refusal(datagram))
    }

    /// Finishes the attempt from the peer's handshake `hs`; a secure
    /// responder also hands over its −1 (`response`) for the connection to
    /// repeat with its Resp until the initiator has it.
    fn complete(
        &mut self,
        hs: &Handshake,
        secure: Option<Box<SecureParams>>,
        response: Option<Handshake>,
    ) {
        let params = ConnectParams {
            local_socket_id: self.attempt.local_id,
            peer_socket_id: hs.socket_id,
            peer_addr: self.attempt.peer,
            send_isn: self.attempt.request.isn,
            recv_isn: hs.isn,
            mss: self.mss.min(hs.mss),
            peer_flow_window: hs.flow_window,
            socket_type: self.socket_type,
            rendezvous: true,
            self_ip: self.attempt.self_ip(hs),
            response,
            secure,
        };
        self.attempt.finish(Ok(params));
    }

    /// Fails the attempt if the rendezvous timeout has passed; otherwise a
    /// no-op (resends happen in [`Rendezvous::poll_transmit`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.attempt.check_deadline(now);
    }

    /// Writes the next handshake into `buf` and returns where to send it, or
    /// returns `None` when nothing is due (or the attempt finished).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        self.attempt.poll_transmit(now, buf)
    }

    /// When to call [`Rendezvous::handle_timeout`] and
    /// [`Rendezvous::poll_transmit`] next. `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.attempt.poll_timeout()
    }

    /// The outcome, returned exactly once when the attempt has finished.
    /// A plain attempt fails only with [`ConnectError::TimedOut`]; a secure
    /// one also with `PeerNotSecure`, `SecurityMismatch`, `AuthFailed` or
    /// `SecureConfig`.
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

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.attempt.peer
    }
}

/// True when `seq` could be among the first data packets of the peer that
/// sent `hs` (it starts at its ISN).
fn is_first_flight(hs: &Handshake, seq: SeqNumber) -> bool {
    hs.isn.is_comparable(seq)
        && !seq.is_before(hs.isn)
        && (seq.offset_from(hs.isn) as u32) < MAX_FIRST_DATA_OFFSET
}
