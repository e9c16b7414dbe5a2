//! Rendezvous set-up: two sockets that both connect to each other
//! (udt4-protocol.md §4.2; UDT4 `CUDT::connect(const CPacket&)` with
//! `m_bRendezvous`, and `CRendezvousQueue`).

use std::net::SocketAddr;
use std::time::Instant;

use super::{handshake_for, is_plausible, Attempt, ConnectError, ConnectParams};
use crate::config::{Config, SocketType};
use crate::packet::{Control, ControlPacket, Handshake, Packet, ReqType};
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
    /// The configuration asked for secure mode, which rendezvous lacks.
    refuse_secure: bool,
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
        Rendezvous {
            attempt: Attempt::new(
                config,
                local_id,
                peer,
                isn,
                ReqType::Rendezvous,
                now,
                config.rendezvous_timeout,
            ),
            mss: config.mss,
            socket_type: config.socket_type,
            peer_handshake: None,
            authenticated: false,
            refuse_secure: config.security.is_secure(),
        }
    }

    /// Secure mode has caller and listener roles; a rendezvous would
    /// silently be plain, so it fails at its first timer instead (the
    /// driver learns it like any other failure).
    fn check_secure(&mut self) {
        if self.refuse_secure {
            self.attempt.finish(Err(super::ConnectError::SecureConfig));
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
            self.on_handshake(now, hs, addressed);
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
            self.complete(&hs);
        }
    }

    fn on_handshake(&mut self, now: Instant, hs: Handshake, addressed: bool) {
        match hs.req_type {
            ReqType::Rendezvous | ReqType::Response | ReqType::RendezvousConnected => {}
            // Step 3: "regular connect should NOT communicate with rendezvous
            // connect" (UDT4). Rejections and unknown types: see type docs.
            ReqType::Caller | ReqType::Rejected | ReqType::Other(_) => return,
        }
        if !is_plausible(&hs) {
            log::debug!("implausible rendezvous handshake ignored: {hs:?}");
            return;
        }
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
            self.complete(&hs);
        } else {
            // A −1 or −2 to 0: a candidate to address, not proof.
            self.attempt.request_dest = hs.socket_id;
        }
    }

    fn complete(&mut self, hs: &Handshake) {
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
            response: None,
            secure: None,
        };
        self.attempt.finish(Ok(params));
    }

    /// Fails the attempt if the rendezvous timeout has passed; otherwise a
    /// no-op (resends happen in [`Rendezvous::poll_transmit`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.check_secure();
        self.attempt.check_deadline(now);
    }

    /// Writes the next handshake into `buf` and returns where to send it, or
    /// returns `None` when nothing is due (or the attempt finished).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        if self.refuse_secure {
            // Nothing goes out; the next timer fails the attempt.
            return None;
        }
        self.attempt.poll_transmit(now, buf)
    }

    /// When to call [`Rendezvous::handle_timeout`] and
    /// [`Rendezvous::poll_transmit`] next. `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.attempt.poll_timeout()
    }

    /// The outcome, returned exactly once when the attempt has finished.
    /// The only failure is [`ConnectError::TimedOut`].
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
