//! Secure mode for the rendezvous handshake (issue 11): the key agreement
//! of caller ↔ listener set-up carried in the same "UDTS" extension, with
//! the roles a symmetric rendezvous lacks assigned from what both sides see.
//!
//! - **Roles.** The side whose `(socket ID, ISN)` is the larger, compared
//!   as unsigned integers in that order, *initiates* (Noise initiator,
//!   SPAKE2 side A); the other *responds*. Both sides learn both pairs from
//!   the first handshake they receive, so they agree without a message of
//!   their own. Equal pairs (our own request reflected back) are ignored.
//! - **Messages.** Every secure rendezvous handshake carries an extension:
//!   the responder's type 0 and −1 requests an **Offer** (its method), the
//!   initiator's −1 the **Init** (first Noise message, for codes after the
//!   SPAKE2 message), and the responder's −1 once it has read the Init the
//!   **Resp** (second message). The initiator's type 0 carries an Offer too.
//! - **Binding.** The Noise prologue is `"UDT secure v2 rendezvous" |
//!   method | the initiator's 48-byte −1 body`; message 2 carries the
//!   responder's 48-byte −1 body as its encrypted payload, which the
//!   initiator compares with the clear one.
//! - **Completion.** The responder completes on reading a valid Init
//!   addressed to its socket ID; its connection then answers the
//!   initiator's repeated −1 with the same −1 + Resp (as a listener repeats
//!   its response). The initiator completes on a valid Resp. Neither
//!   completes on data or keep-alives (UDT4 step 4): without the keys they
//!   cannot be authentic.
//! - **Refusals.** A handshake addressed to our socket ID (its sender saw
//!   one of our requests) with no extension is a plain peer or a downgrade
//!   (`PeerNotSecure`), with another method `SecurityMismatch`, of another
//!   version of secure mode `SecureVersion`. Such
//!   handshakes addressed to 0 only name candidates (as in plain mode):
//!   they are answered, so that the peer sees our extension and refuses
//!   at once, but they cannot fail the attempt, so a spoofer cannot blind.
//! - **Failed authentication.** The side that cannot authenticate the
//!   other's message (the initiator for a wrong code, the responder for a
//!   wrong pre-shared key or static key) sends a rejection with a Refuse
//!   extension to the peer's socket ID and fails with `AuthFailed`; the
//!   peer's machine fails on it, or, if it already completed, its
//!   connection ends with `ConnectionError::AuthFailed`.

use super::{ConnectError, SecureParams};
use crate::packet::{Handshake, ReqType};
use crate::secure::handshake_ext::{self, ExtError, ExtKind, Extension, Method};
use crate::secure::keys::{self, HandshakeFailure, Initiator, Setup};
use crate::secure::Security;
use crate::seq::{SeqNumber, SocketId};

/// Which half of the key agreement a side runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// Sends the first message (Init), completes on the second.
    Initiator,
    /// Answers the Init with the Resp and completes at once.
    Responder,
}

/// The role of the side with `(local_id, local_isn)` against a peer with
/// `(peer_id, peer_isn)`; `None` when the pairs are equal.
pub(super) fn role(
    local_id: SocketId,
    local_isn: SeqNumber,
    peer_id: SocketId,
    peer_isn: SeqNumber,
) -> Option<Role> {
    let ours = (local_id.0, local_isn.value());
    let theirs = (peer_id.0, peer_isn.value());
    match ours.cmp(&theirs) {
        std::cmp::Ordering::Greater => Some(Role::Initiator),
        std::cmp::Ordering::Less => Some(Role::Responder),
        std::cmp::Ordering::Equal => None,
    }
}

/// The secure state of one rendezvous attempt.
pub(super) struct SecureRendezvous {
    security: Security,
    method: Method,
    /// Our first message, started when we first act as initiator.
    initiator: Option<Box<Initiator>>,
}

impl std::fmt::Debug for SecureRendezvous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureRendezvous")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl SecureRendezvous {
    /// The secure state for `security`; `None` for plain UDT4.
    pub(super) fn new(security: &Security) -> Option<Self> {
        Some(SecureRendezvous {
            security: security.clone(),
            method: security.method()?,
            initiator: None,
        })
    }

    /// Our authentication method.
    pub(super) fn method(&self) -> Method {
        self.method
    }

    /// True for a rejection whose extension says the peer's key agreement
    /// failed (wrong key or code on one side).
    pub(super) fn is_refusal(&self, datagram: &[u8]) -> bool {
        handshake_ext::is_auth_refusal(datagram)
    }

    /// The Offer extension: "secure, with this method".
    pub(super) fn offer(&self) -> Vec<u8> {
        let mut out = Vec::new();
        handshake_ext::write(&mut out, ExtKind::Offer, Some(self.method), None, &[]);
        out
    }

    /// The secure extension of a peer handshake of our method, `None`
    /// when it has none (or another method, or garbage): such a handshake
    /// addressed to 0 still names a candidate to answer (so that the peer
    /// hears our extension and refuses a downgrade or mismatch itself),
    /// but it never completes anything.
    ///
    /// # Errors
    /// For a handshake addressed to our socket ID: `PeerNotSecure` without
    /// an extension (a plain peer, or a downgrade on the path),
    /// `SecurityMismatch` for another method, `SecureVersion` for another
    /// version of secure mode.
    pub(super) fn check<'a>(
        &self,
        datagram: &'a [u8],
        req_type: ReqType,
        addressed: bool,
    ) -> Result<Option<Extension<'a>>, ConnectError> {
        let error = match handshake_ext::parse_datagram(datagram) {
            Ok(ext) if ext.method == Some(self.method) && ext.kind != ExtKind::Refuse => {
                return Ok(Some(ext))
            }
            Ok(ext) if ext.method.is_some() && ext.kind != ExtKind::Refuse => {
                ConnectError::SecurityMismatch
            }
            // A plain "−2, connected" is what a connected rendezvous
            // answers to a stray (duplicated, late) type-0 request, ours
            // included: it proves nothing about the peer's mode.
            Err(ExtError::Absent) if req_type == ReqType::RendezvousConnected => return Ok(None),
            Err(ExtError::Absent) => ConnectError::PeerNotSecure,
            Err(ExtError::Version(_)) => ConnectError::SecureVersion,
            // Garbage after the body proves nothing either way.
            _ => return Ok(None),
        };
        if addressed {
            Err(error)
        } else {
            log::debug!("rendezvous candidate without our secure offer: {error}");
            Ok(None)
        }
    }

    /// Initiator: the Init extension for our −1 request whose body is
    /// `request_body`, started on first use and the same bytes after.
    ///
    /// # Errors
    /// `SecureConfig` when the configuration cannot start a handshake.
    pub(super) fn init_ext(&mut self, request_body: &[u8]) -> Result<Vec<u8>, ConnectError> {
        if self.initiator.is_none() {
            let init = Initiator::start(Setup::Rendezvous, &self.security, request_body)
                .map_err(|_| ConnectError::SecureConfig)?
                .ok_or(ConnectError::SecureConfig)?;
            self.initiator = Some(Box::new(init));
        }
        Ok(self
            .initiator
            .as_ref()
            .map(|i| i.extension().to_vec())
            .unwrap_or_default())
    }

    /// Initiator: completes with the responder's −1 (`response_body`, as
    /// received) and its Resp extension.
    ///
    /// # Errors
    /// `AuthFailed` (wrong code or key, or an altered response),
    /// `SecurityMismatch`.
    pub(super) fn finish(
        &mut self,
        response_body: &[u8],
        ext: &Extension<'_>,
    ) -> Result<Box<SecureParams>, ConnectError> {
        let init = self.initiator.take().ok_or(ConnectError::AuthFailed)?;
        let keys = init.finish(response_body, ext).map_err(|e| match e {
            HandshakeFailure::MethodMismatch => ConnectError::SecurityMismatch,
            HandshakeFailure::BadConfig => ConnectError::SecureConfig,
            HandshakeFailure::AuthFailed => ConnectError::AuthFailed,
        })?;
        Ok(Box::new(SecureParams {
            keys,
            response_ext: Vec::new(),
        }))
    }

    /// Responder: reads the initiator's Init (its −1 body `request_body`
    /// as received) and writes the Resp for our −1 body `response_body`.
    /// The returned parameters keep the Resp extension, which the
    /// connection appends whenever it repeats our −1.
    ///
    /// # Errors
    /// `AuthFailed` (a wrong pre-shared key or a static key not allowed
    /// shows here; a wrong code only at the initiator), `SecurityMismatch`.
    pub(super) fn respond(
        &self,
        request_body: &[u8],
        ext: &Extension<'_>,
        response_body: &[u8],
    ) -> Result<Box<SecureParams>, ConnectError> {
        let body = request_body
            .get(..Handshake::BODY_SIZE)
            .ok_or(ConnectError::AuthFailed)?;
        let (keys, response_ext) =
            keys::respond(Setup::Rendezvous, &self.security, body, ext, response_body).map_err(
                |reason| match reason {
                    handshake_ext::RefuseReason::MethodMismatch => ConnectError::SecurityMismatch,
                    _ => ConnectError::AuthFailed,
                },
            )?;
        Ok(Box::new(SecureParams { keys, response_ext }))
    }
}
