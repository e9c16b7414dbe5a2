//! Key agreement: the two Noise messages of the final request and response,
//! with SPAKE2 in front of them for human codes. Produces the per-direction
//! packet keys and the peer's verified identity.
//!
//! Patterns (Noise revision 34, `25519_ChaChaPoly_BLAKE2s`):
//! - pre-shared key: `NNpsk0` (both ephemeral, PSK mixed before the first
//!   message: a caller with a wrong key is refused at once);
//! - static keys: `IK` (the caller knows the listener's key; the listener
//!   learns the caller's in message 1 and checks it against its list);
//! - code: SPAKE2 (Ed25519 group) runs in the same two messages, and its
//!   shared secret is the PSK of `NNpsk2`, mixed by the listener in
//!   message 2. An observer of one handshake learns nothing to test codes
//!   against offline; an active attacker gets one guess per handshake.
//!
//! Every pattern has ephemeral X25519 on both sides (forward secrecy). The
//! Noise prologue binds the protocol version, the method and the caller's
//! whole 48-byte request (socket ID, ISN, cookie, MSS...), and message 2
//! carries the listener's 48-byte response as its encrypted payload, which
//! the caller compares with the clear one: neither handshake body can be
//! altered on the path. The packet keys are Noise's `Split()` output.

use snow::params::NoiseParams;
use snow::{Builder, HandshakeState};
use spake2::{Ed25519Group, Identity, Password, Spake2};

use super::handshake_ext::{self, ExtKind, Extension, Method, RefuseReason};
use super::Security;
use crate::packet::Handshake;

const NN_PSK0: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
const IK: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
const NN_PSK2: &str = "Noise_NNpsk2_25519_ChaChaPoly_BLAKE2s";
/// Start of the Noise prologue of a caller/listener handshake; its
/// version is [`handshake_ext::VERSION`]'s.
const PROLOGUE_LABEL: &[u8] = b"UDT secure v2";
/// Start of the Noise prologue of a rendezvous handshake: a message of one
/// kind of set-up never verifies as the other's.
const PROLOGUE_LABEL_RENDEZVOUS: &[u8] = b"UDT secure v2 rendezvous";
/// SPAKE2 identities of the two roles.
const SPAKE_CALLER: &[u8] = b"udt caller";
const SPAKE_LISTENER: &[u8] = b"udt listener";
/// Bytes of a SPAKE2 message in the Ed25519 group.
pub const SPAKE_MSG_SIZE: usize = 33;
/// Room for any Noise message of these patterns.
const NOISE_BUF: usize = 256;

/// Who the peer proved to be.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    /// It knows the pre-shared key.
    PreSharedKey,
    /// It holds the private half of this X25519 public key.
    StaticKey([u8; 32]),
    /// It knows the code.
    Code,
}

/// What a finished secure handshake hands to the connection.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// The key of the packets we send.
    pub send_key: [u8; 32],
    /// The key of the packets we receive.
    pub recv_key: [u8; 32],
    /// The peer's verified identity.
    pub peer: PeerIdentity,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Which set-up a key agreement belongs to (it is bound in the Noise
/// prologue).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// Caller and listener: the caller initiates.
    CallerListener,
    /// Rendezvous: the side with the larger (socket ID, ISN) initiates
    /// (see `handshake::rendezvous`).
    Rendezvous,
}

/// Why a secure handshake failed on the caller's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The configuration cannot start a handshake (e.g. static keys without
    /// a peer key); a bug of the application.
    BadConfig,
    /// The listener's message did not authenticate: wrong key or code, or
    /// a forged or altered response.
    AuthFailed,
    /// The listener uses another method.
    MethodMismatch,
}

fn params(name: &str) -> Result<NoiseParams, HandshakeFailure> {
    name.parse().map_err(|_| HandshakeFailure::BadConfig)
}

fn prologue(setup: Setup, method: Method, request_body: &[u8]) -> Vec<u8> {
    let label = match setup {
        Setup::CallerListener => PROLOGUE_LABEL,
        Setup::Rendezvous => PROLOGUE_LABEL_RENDEZVOUS,
    };
    let mut p = Vec::with_capacity(label.len() + 1 + Handshake::BODY_SIZE);
    p.extend_from_slice(label);
    p.push(method.to_wire());
    p.extend_from_slice(request_body);
    p
}

fn normalise_code(code: &str) -> Vec<u8> {
    code.trim().to_lowercase().into_bytes()
}

fn split(hs: &mut HandshakeState, initiator: bool, peer: PeerIdentity) -> SessionKeys {
    let (i_to_r, r_to_i) = hs.dangerously_get_raw_split();
    let (send_key, recv_key) = if initiator {
        (i_to_r, r_to_i)
    } else {
        (r_to_i, i_to_r)
    };
    SessionKeys {
        send_key,
        recv_key,
        peer,
    }
}

/// The caller's half of a secure handshake, from its final request until
/// the listener's response.
pub struct Initiator {
    method: Method,
    noise: HandshakeState,
    spake: Option<Spake2<Ed25519Group>>,
    /// The listener's key (static-key method).
    peer_static: Option<[u8; 32]>,
    /// The whole extension of our final request.
    extension: Vec<u8>,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl Initiator {
    /// Starts the handshake of `setup` for the request whose 48-byte body
    /// is `request_body` (a caller's final request, a rendezvous
    /// initiator's −1). `None` for [`Security::Plain`].
    ///
    /// # Errors
    /// [`HandshakeFailure::BadConfig`] when the configuration cannot start
    /// (static keys with no peer key, or a key the curve refuses).
    pub fn start(
        setup: Setup,
        security: &Security,
        request_body: &[u8],
    ) -> Result<Option<Self>, HandshakeFailure> {
        let Some(method) = security.method() else {
            return Ok(None);
        };
        let prologue = prologue(setup, method, request_body);
        let mut spake = None;
        let mut peer_static = None;
        let mut first = Vec::new();
        let mut noise = match security {
            Security::Plain => return Ok(None),
            Security::PreSharedKey(psk) => Builder::new(params(NN_PSK0)?)
                .prologue(&prologue)
                .and_then(|b| b.psk(0, psk))
                .and_then(|b| b.build_initiator()),
            Security::StaticKeys {
                private_key,
                peer_keys,
            } => {
                let Some(peer) = peer_keys.first() else {
                    return Err(HandshakeFailure::BadConfig);
                };
                peer_static = Some(*peer);
                Builder::new(params(IK)?)
                    .prologue(&prologue)
                    .and_then(|b| b.local_private_key(private_key))
                    .and_then(|b| b.remote_public_key(peer))
                    .and_then(|b| b.build_initiator())
            }
            Security::Code(code) => {
                let (state, msg) = Spake2::<Ed25519Group>::start_a(
                    &Password::new(normalise_code(code)),
                    &Identity::new(SPAKE_CALLER),
                    &Identity::new(SPAKE_LISTENER),
                );
                spake = Some(state);
                first = msg;
                Builder::new(params(NN_PSK2)?)
                    .prologue(&prologue)
                    .and_then(|b| b.build_initiator())
            }
        }
        .map_err(|_| HandshakeFailure::BadConfig)?;
        let mut msg = [0u8; NOISE_BUF];
        let n = noise
            .write_message(&[], &mut msg)
            .map_err(|_| HandshakeFailure::BadConfig)?;
        first.extend_from_slice(&msg[..n]);
        let mut extension = Vec::new();
        handshake_ext::write(&mut extension, ExtKind::Init, Some(method), None, &first);
        Ok(Some(Initiator {
            method,
            noise,
            spake,
            peer_static,
            extension,
        }))
    }

    /// The extension to append to the final request.
    pub fn extension(&self) -> &[u8] {
        &self.extension
    }

    /// The method this handshake uses.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Completes the handshake with the listener's response: its 48-byte
    /// body as received (`response_body`) and its extension.
    ///
    /// # Errors
    /// [`HandshakeFailure::MethodMismatch`] or [`HandshakeFailure::AuthFailed`].
    pub fn finish(
        mut self,
        response_body: &[u8],
        ext: &Extension<'_>,
    ) -> Result<SessionKeys, HandshakeFailure> {
        if ext.kind != ExtKind::Resp {
            return Err(HandshakeFailure::AuthFailed);
        }
        if ext.method != Some(self.method) {
            return Err(HandshakeFailure::MethodMismatch);
        }
        let mut noise_msg = ext.payload;
        if let Some(spake) = self.spake.take() {
            let (spake_msg, rest) = noise_msg
                .split_at_checked(SPAKE_MSG_SIZE)
                .ok_or(HandshakeFailure::AuthFailed)?;
            let key = spake
                .finish(spake_msg)
                .map_err(|_| HandshakeFailure::AuthFailed)?;
            self.noise
                .set_psk(2, &key)
                .map_err(|_| HandshakeFailure::AuthFailed)?;
            noise_msg = rest;
        }
        let mut payload = [0u8; NOISE_BUF];
        let n = self
            .noise
            .read_message(noise_msg, &mut payload)
            .map_err(|_| HandshakeFailure::AuthFailed)?;
        // The listener's clear response must be the one it authenticated.
        if payload.get(..n) != response_body.get(..Handshake::BODY_SIZE) {
            return Err(HandshakeFailure::AuthFailed);
        }
        if !self.noise.is_handshake_finished() {
            return Err(HandshakeFailure::AuthFailed);
        }
        let peer = match self.method {
            Method::PreSharedKey => PeerIdentity::PreSharedKey,
            Method::Code => PeerIdentity::Code,
            Method::StaticKeys => {
                PeerIdentity::StaticKey(self.peer_static.ok_or(HandshakeFailure::AuthFailed)?)
            }
        };
        Ok(split(&mut self.noise, true, peer))
    }
}

/// The listener's (or rendezvous responder's) half: reads the initiator's
/// first message from its request and writes the second into the response.
///
/// `setup` is the kind of set-up (bound in the prologue), `request_body` is the caller's 48-byte body as received, `ext` its
/// extension, `response_body` the 48-byte body of our response. Returns
/// the session keys and the whole extension to append to the response.
///
/// # Errors
/// The [`RefuseReason`] to send back in a rejection.
pub fn respond(
    setup: Setup,
    security: &Security,
    request_body: &[u8],
    ext: &Extension<'_>,
    response_body: &[u8],
) -> Result<(SessionKeys, Vec<u8>), RefuseReason> {
    let Some(method) = security.method() else {
        return Err(RefuseReason::Malformed);
    };
    if ext.kind != ExtKind::Init {
        return Err(RefuseReason::Malformed);
    }
    if ext.method != Some(method) {
        return Err(RefuseReason::MethodMismatch);
    }
    let prologue = prologue(setup, method, request_body);
    let params = |name| params(name).map_err(|_| RefuseReason::Malformed);
    let mut reply = Vec::new();
    let mut first = ext.payload;
    let built = match security {
        Security::Plain => return Err(RefuseReason::Malformed),
        Security::PreSharedKey(psk) => Builder::new(params(NN_PSK0)?)
            .prologue(&prologue)
            .and_then(|b| b.psk(0, psk))
            .and_then(|b| b.build_responder()),
        Security::StaticKeys { private_key, .. } => Builder::new(params(IK)?)
            .prologue(&prologue)
            .and_then(|b| b.local_private_key(private_key))
            .and_then(|b| b.build_responder()),
        Security::Code(code) => {
            let (spake_msg, rest) = first
                .split_at_checked(SPAKE_MSG_SIZE)
                .ok_or(RefuseReason::Malformed)?;
            first = rest;
            let (state, msg) = Spake2::<Ed25519Group>::start_b(
                &Password::new(normalise_code(code)),
                &Identity::new(SPAKE_CALLER),
                &Identity::new(SPAKE_LISTENER),
            );
            reply = msg;
            let key = state
                .finish(spake_msg)
                .map_err(|_| RefuseReason::Malformed)?;
            let key: [u8; 32] = key.try_into().map_err(|_| RefuseReason::Malformed)?;
            Builder::new(params(NN_PSK2)?)
                .prologue(&prologue)
                .and_then(|b| b.psk(2, &key))
                .and_then(|b| b.build_responder())
        }
    };
    let mut noise = built.map_err(|_| RefuseReason::Malformed)?;
    let mut scratch = [0u8; NOISE_BUF];
    noise
        .read_message(first, &mut scratch)
        .map_err(|_| RefuseReason::AuthFailed)?;
    let peer = match security {
        Security::StaticKeys { peer_keys, .. } => {
            let remote: [u8; 32] = noise
                .get_remote_static()
                .and_then(|k| k.try_into().ok())
                .ok_or(RefuseReason::AuthFailed)?;
            if !peer_keys.contains(&remote) {
                return Err(RefuseReason::AuthFailed);
            }
            PeerIdentity::StaticKey(remote)
        }
        Security::Code(_) => PeerIdentity::Code,
        _ => PeerIdentity::PreSharedKey,
    };
    let mut msg = [0u8; NOISE_BUF];
    let n = noise
        .write_message(
            response_body
                .get(..Handshake::BODY_SIZE)
                .unwrap_or_default(),
            &mut msg,
        )
        .map_err(|_| RefuseReason::Malformed)?;
    reply.extend_from_slice(&msg[..n]);
    let mut extension = Vec::new();
    handshake_ext::write(&mut extension, ExtKind::Resp, Some(method), None, &reply);
    Ok((split(&mut noise, false, peer), extension))
}

/// A fresh X25519 key pair `(private, public)` for the static-key method,
/// from the operating system's random source.
///
/// # Errors
/// When the random source fails.
pub fn generate_keypair() -> Result<([u8; 32], [u8; 32]), snow::Error> {
    let kp = Builder::new(
        IK.parse()
            .map_err(|_| snow::Error::Init(snow::error::InitStage::ParameterOverwrite))?,
    )
    .generate_keypair()?;
    let private: [u8; 32] = kp
        .private
        .as_slice()
        .try_into()
        .map_err(|_| snow::Error::Input)?;
    Ok((private, public_key(&private)))
}

/// The X25519 public key of `private`.
pub fn public_key(private: &[u8; 32]) -> [u8; 32] {
    use snow::resolvers::{CryptoResolver, DefaultResolver};
    let mut out = [0u8; 32];
    if let Some(mut dh) = DefaultResolver.resolve_dh(&snow::params::DHChoice::Curve25519) {
        dh.set(private);
        out.copy_from_slice(dh.pubkey());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prologue_labels_name_the_extension_version() {
        // Keys of one version of the construction never verify in another.
        let v = format!("UDT secure v{}", handshake_ext::VERSION);
        assert_eq!(PROLOGUE_LABEL, v.as_bytes());
        assert_eq!(
            PROLOGUE_LABEL_RENDEZVOUS,
            format!("{v} rendezvous").as_bytes()
        );
    }
}
