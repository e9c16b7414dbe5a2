//! The listener side of caller ↔ listener set-up, with a stateless SYN
//! cookie (udt4-protocol.md §4.1; UDT4 `CUDT::listen(sockaddr*, CPacket&)`
//! and `CUDTUnited::newConnection`).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::{cookie, ConnectParams, COOKIE_BUCKET};
use crate::config::{Config, SocketType, MIN_MSS};
use crate::packet::{
    decode, put_header, Control, ControlPacket, Handshake, Packet, PeerIp, ReqType, CONTROL_FLAG,
    HEADER_SIZE,
};
use crate::secure::handshake_ext::{self, ExtError, ExtKind, RefuseReason};
use crate::secure::{keys, Security};
use crate::seq::{SeqNumber, SocketId};

/// Byte offset, inside a whole handshake datagram, of body word `i`.
const fn body_word(i: usize) -> std::ops::Range<usize> {
    HEADER_SIZE + 4 * i..HEADER_SIZE + 4 * i + 4
}

/// Body word 5: the request type.
const REQ_TYPE_WORD: usize = 5;
/// Body word 7: the SYN cookie.
const COOKIE_WORD: usize = 7;

/// Answers connection requests without keeping any state per peer until the
/// peer has echoed a valid cookie.
///
/// - A request of type 1 is answered with the request echoed, the cookie set
///   and the header addressed to the caller's ID (§4.1 step 4).
/// - A request of type −1 must carry a cookie of the current or previous
///   60 s bucket since the listener was created, else it is ignored. Then a
///   wrong version or socket type is answered with the request echoed as
///   type 1002; otherwise the caller is handed to the driver as an
///   [`AcceptRequest`].
/// - Everything else (other request types, bodies that are not exactly 48
///   bytes, destinations other than 0, non-handshakes) is ignored.
#[derive(Debug)]
pub struct Listener {
    /// Start of cookie bucket 0.
    start: Instant,
    /// The SipHash key of the cookies.
    secret: [u8; 16],
    socket_type: SocketType,
    mss: u32,
    /// Our own IP, if known: the hint for decoding the peer-IP field.
    local_ip: Option<IpAddr>,
    /// Secure mode: every caller must complete a secure handshake.
    security: Security,
}

/// What [`Listener::handle_datagram`] wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerOutput {
    /// Nothing to do; the datagram is dropped.
    Nothing,
    /// `out` holds one datagram to send back to the sender.
    Reply,
    /// A caller proved its address and wants a connection.
    Accept(AcceptRequest),
}

/// A verified connection request. The driver de-duplicates repeats by
/// [`AcceptRequest::key`], then either [`accept`](AcceptRequest::accept)s it
/// with a fresh socket ID or [`reject`](AcceptRequest::reject)s it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptRequest {
    /// The caller's address.
    pub peer_addr: SocketAddr,
    /// The caller's socket ID.
    pub peer_socket_id: SocketId,
    /// The caller's ISN: both directions start there (§4.1 step 8).
    pub peer_isn: SeqNumber,
    /// `min(caller's MSS, ours)`.
    pub mss: u32,
    /// The caller's flight flag size, raw.
    pub peer_flow_window: u32,
    /// The socket type both sides agreed on.
    pub socket_type: SocketType,
    /// Our IP as the caller addressed it (its peer-IP field), if non-zero.
    pub self_ip: Option<IpAddr>,
    /// The request as received, for the echoes.
    request: Handshake,
    /// Secure listener: what the key agreement needs (boxed: rare and
    /// large next to a plain request).
    secure: Option<Box<SecureRequest>>,
}

/// The secure part of a verified final request.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SecureRequest {
    /// The listener's security (its key or code).
    security: Security,
    /// The request's 48-byte body as received (in the Noise prologue).
    body: Vec<u8>,
    /// The request's extension: the caller's first message.
    ext: Vec<u8>,
}

/// A refused request; the rejection is in the output buffer.
struct Refused;

impl Listener {
    /// A listener for sockets of `config.socket_type`, whose cookies are keyed
    /// with `secret` (draw it from the operating system's random source) and
    /// bucketed from `now`.
    pub fn new(config: &Config, secret: [u8; 16], now: Instant) -> Self {
        Listener {
            start: now,
            secret,
            socket_type: config.socket_type,
            mss: config.mss,
            local_ip: None,
            security: config.security.clone(),
        }
    }

    /// Tells the listener its own IP (when bound to a specific address), so
    /// the peer-IP field of requests decodes correctly in either byte order.
    pub fn set_local_ip(&mut self, ip: Option<IpAddr>) {
        self.local_ip = ip;
    }

    /// Processes one datagram addressed to socket ID 0 from `from`. When the
    /// result is [`ListenerOutput::Reply`], `out` holds the datagram to send
    /// back to `from`; otherwise `out`'s contents are unspecified.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut Vec<u8>,
    ) -> ListenerOutput {
        // UDT4 ignores a handshake whose body is not exactly 48 bytes [X];
        // a secure listener also takes the secure extension after it.
        let plain_len = HEADER_SIZE + Handshake::BODY_SIZE;
        let secure = self.security.is_secure();
        if datagram.len() != plain_len && !(secure && datagram.len() > plain_len) {
            return ListenerOutput::Nothing;
        }
        let hs = match decode(datagram) {
            Ok(Packet::Control(ControlPacket {
                dest: SocketId::HANDSHAKE,
                control: Control::Handshake(hs),
                ..
            })) => hs,
            _ => return ListenerOutput::Nothing,
        };
        if hs.socket_id == SocketId::HANDSHAKE {
            // We could not address a reply to it.
            return ListenerOutput::Nothing;
        }
        let bucket = self.bucket(now);
        match hs.req_type {
            ReqType::Caller => {
                // §4.1 step 4: echo the same 48 bytes with the cookie set.
                // Nothing is stored.
                let c = cookie::cookie(&self.secret, from, bucket);
                echo(datagram, hs.socket_id, COOKIE_WORD, c, out);
                if secure {
                    // The offer: a secure caller refuses an echo without it.
                    out.truncate(plain_len);
                    handshake_ext::write(out, ExtKind::Offer, self.security.method(), None, &[]);
                }
                ListenerOutput::Reply
            }
            ReqType::Response => {
                // The cookie must come from this bucket or the previous one.
                let valid = hs.cookie == cookie::cookie(&self.secret, from, bucket)
                    || (bucket > 0 && hs.cookie == cookie::cookie(&self.secret, from, bucket - 1));
                if !valid {
                    log::debug!("handshake from {from} with a wrong cookie ignored");
                    return ListenerOutput::Nothing;
                }
                let socket_type =
                    SocketType::from_wire(hs.socket_type).filter(|t| *t == self.socket_type);
                let socket_type = match socket_type {
                    Some(t) if hs.version == Handshake::VERSION && hs.mss >= MIN_MSS => t,
                    _ => {
                        // UDT4 answers a version or type mismatch with the
                        // request echoed as 1002 [X]; we also refuse an MSS
                        // below UDT4's minimum rather than use it.
                        log::debug!("handshake from {from} rejected: {hs:?}");
                        echo(
                            datagram,
                            hs.socket_id,
                            REQ_TYPE_WORD,
                            ReqType::Rejected.to_wire() as u32,
                            out,
                        );
                        return ListenerOutput::Reply;
                    }
                };
                let secure_request = match self.check_extension(from, datagram, &hs, out) {
                    Ok(s) => s,
                    Err(Refused) => return ListenerOutput::Reply,
                };
                let is_v6 = from.ip().to_canonical().is_ipv6();
                let self_ip =
                    (!hs.peer_ip.is_zero()).then(|| hs.peer_ip.to_addr(is_v6, self.local_ip));
                ListenerOutput::Accept(AcceptRequest {
                    peer_addr: from,
                    peer_socket_id: hs.socket_id,
                    peer_isn: hs.isn,
                    mss: self.mss.min(hs.mss),
                    peer_flow_window: hs.flow_window,
                    socket_type,
                    self_ip,
                    request: hs,
                    secure: secure_request,
                })
            }
            // Rendezvous requests, stray replies and unknown types: UDT4
            // would run them through the cookie check and accept them as
            // −1; we only accept −1.
            _ => ListenerOutput::Nothing,
        }
    }

    /// Secure listener: checks that a verified final request carries a
    /// secure extension of our method, and returns what
    /// [`AcceptRequest::accept`] needs to complete the key agreement. A
    /// plain request or one of another method is refused with a
    /// rejection that says why (the caller reports it). `Ok(None)` for a
    /// plain listener.
    fn check_extension(
        &self,
        from: SocketAddr,
        datagram: &[u8],
        hs: &Handshake,
        out: &mut Vec<u8>,
    ) -> Result<Option<Box<SecureRequest>>, Refused> {
        let Some(method) = self.security.method() else {
            return Ok(None);
        };
        let reason = match handshake_ext::parse_datagram(datagram) {
            Ok(ext) if ext.kind == ExtKind::Init && ext.method == Some(method) => {
                let body = datagram
                    .get(HEADER_SIZE..HEADER_SIZE + Handshake::BODY_SIZE)
                    .unwrap_or_default()
                    .to_vec();
                let ext_bytes = datagram
                    .get(HEADER_SIZE + Handshake::BODY_SIZE..)
                    .unwrap_or_default()
                    .to_vec();
                return Ok(Some(Box::new(SecureRequest {
                    security: self.security.clone(),
                    body,
                    ext: ext_bytes,
                })));
            }
            Ok(ext) if ext.kind == ExtKind::Init => RefuseReason::MethodMismatch,
            Err(ExtError::Absent) => RefuseReason::PlainRefused,
            Err(ExtError::Version(_)) => RefuseReason::Version,
            _ => RefuseReason::Malformed,
        };
        log::info!(
            "secure listener refused the caller at {from}: {}",
            match reason {
                RefuseReason::PlainRefused =>
                    "it connected in plain UDT4 mode (or its offer was stripped on the path)",
                RefuseReason::MethodMismatch => "it uses another authentication method",
                RefuseReason::Version => "it speaks another version of secure mode",
                _ => "its secure extension is malformed",
            }
        );
        refuse(hs, self.security.method(), reason, out);
        Err(Refused)
    }

    /// The cookie bucket `now` falls in: whole 60 s periods since creation.
    fn bucket(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_secs() / COOKIE_BUCKET.as_secs()
    }
}

/// Writes `request` back with a fresh header addressed to `dest` and body
/// word `word` replaced by `value`, the rest of the body untouched.
fn echo(request: &[u8], dest: SocketId, word: usize, value: u32, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(HEADER_SIZE + Handshake::BODY_SIZE);
    put_header(out, CONTROL_FLAG, 0, 0, dest);
    out.extend_from_slice(request.get(HEADER_SIZE..).unwrap_or_default());
    if let Some(w) = out.get_mut(body_word(word)) {
        w.copy_from_slice(&value.to_be_bytes());
    }
}

/// Writes a rejection of `request` (type 1002, addressed to the caller)
/// with a refusal extension saying why. A UDT4 caller reads the 48 bytes
/// and reports `ECONNREJ`; ours reports the reason.
fn refuse(
    request: &Handshake,
    method: Option<handshake_ext::Method>,
    reason: RefuseReason,
    out: &mut Vec<u8>,
) {
    let reply = Handshake {
        req_type: ReqType::Rejected,
        ..*request
    };
    reply.encode(0, request.socket_id, out);
    handshake_ext::write(out, ExtKind::Refuse, method, Some(reason), &[]);
}

impl AcceptRequest {
    /// The key by which the driver recognises a repeated request for a
    /// connection it already accepted (UDT4 `newConnection` looks sockets up
    /// by peer address, caller socket ID and caller ISN). A repeat should be
    /// answered by resending [`ConnectParams::response`].
    pub fn key(&self) -> (SocketAddr, SocketId, SeqNumber) {
        (self.peer_addr, self.peer_socket_id, self.peer_isn)
    }

    /// The handshake as the caller sent it.
    pub fn request(&self) -> &Handshake {
        &self.request
    }

    /// Secure listener: the caller's first key-agreement message (the
    /// extension's payload), fresh in every honest handshake; `None` for a
    /// plain request.
    pub fn secure_init(&self) -> Option<&[u8]> {
        let req = self.secure.as_ref()?;
        req.ext.get(handshake_ext::EXT_HEADER_SIZE..)
    }

    /// Accepts the connection as our socket `local_socket_id`: writes the −1
    /// response to `out` (send it to `peer_addr`) and returns the
    /// connection's parameters, with that response in
    /// [`ConnectParams::response`]. A secure listener completes the key
    /// agreement here and appends its half to the response.
    ///
    /// # Errors
    /// Secure mode only: the caller's key-agreement message did not
    /// authenticate (wrong key, a static key not allowed) or was
    /// malformed. `out` then holds a rejection saying why, to send to
    /// `peer_addr`.
    ///
    /// The response (§4.1 step 6): version 4, our type, ISN = the caller's,
    /// MSS = the minimum, flight flag size = our advertised window, type −1,
    /// our new ID, the cookie echoed, peer IP = the caller's address as we
    /// see it; header destination = the caller's ID.
    pub fn accept(
        &self,
        local_socket_id: SocketId,
        config: &Config,
        out: &mut Vec<u8>,
    ) -> Result<ConnectParams, RefuseReason> {
        let mss = self.mss.min(config.mss);
        let response = Handshake {
            version: Handshake::VERSION,
            socket_type: self.socket_type.to_wire(),
            isn: self.peer_isn,
            mss,
            flow_window: config.advertised_window(),
            req_type: ReqType::Response,
            socket_id: local_socket_id,
            cookie: self.request.cookie,
            peer_ip: PeerIp::from_addr(self.peer_addr.ip()),
        };
        response.encode(0, self.peer_socket_id, out);
        let secure = match &self.secure {
            None => None,
            Some(req) => {
                let SecureRequest {
                    security,
                    body: request_body,
                    ext: ext_bytes,
                } = &**req;
                let body = out
                    .get(HEADER_SIZE..HEADER_SIZE + Handshake::BODY_SIZE)
                    .unwrap_or_default()
                    .to_vec();
                let result = handshake_ext::parse(ext_bytes)
                    .map_err(|_| RefuseReason::Malformed)
                    .and_then(|ext| {
                        keys::respond(
                            keys::Setup::CallerListener,
                            security,
                            request_body,
                            &ext,
                            &body,
                        )
                    });
                match result {
                    Ok((keys, response_ext)) => {
                        out.extend_from_slice(&response_ext);
                        Some(Box::new(super::SecureParams { keys, response_ext }))
                    }
                    Err(reason) => {
                        log::info!(
                            "secure listener refused the caller at {}: {reason:?} \
                             (wrong key or code, or a key not in the allowed list)",
                            self.peer_addr
                        );
                        refuse(&self.request, security.method(), reason, out);
                        return Err(reason);
                    }
                }
            }
        };
        Ok(ConnectParams {
            local_socket_id,
            peer_socket_id: self.peer_socket_id,
            peer_addr: self.peer_addr,
            send_isn: self.peer_isn,
            recv_isn: self.peer_isn,
            mss,
            peer_flow_window: self.peer_flow_window,
            socket_type: self.socket_type,
            rendezvous: false,
            self_ip: self.self_ip,
            response: Some(response),
            secure,
        })
    }

    /// Refuses the connection (backlog full, shutting down): writes the
    /// request echoed with type 1002 to `out`, to send to `peer_addr`. The
    /// caller fails with [`ConnectError::Rejected`](super::ConnectError::Rejected).
    pub fn reject(&self, out: &mut Vec<u8>) {
        let reply = Handshake {
            req_type: ReqType::Rejected,
            ..self.request
        };
        reply.encode(0, self.peer_socket_id, out);
    }
}
