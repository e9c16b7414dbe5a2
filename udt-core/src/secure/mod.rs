//! Secure mode (issue 11): an opt-in, authenticated and encrypted UDT for
//! connections between two of ours. Plain mode stays byte-for-byte UDT4.
//!
//! - [`handshake_ext`]: the extension after UDT4's 48-byte handshake body
//!   that negotiates secure mode and carries the key-agreement messages;
//! - [`keys`]: the Noise handshakes (and SPAKE2 for codes) that produce the
//!   packet keys and the peer's verified identity;
//! - [`seal`]: per-packet AES-128-GCM with a transmission counter;
//! - [`epoch`]: the one-way key chain that gives each epoch of 2^22
//!   counters its own key;
//! - [`replay`]: the receive window over those counters.
//!
//! The construction, its threat model and what it does not hide are in
//! docs/security.md.

pub mod epoch;
pub mod handshake_ext;
pub mod keys;
pub mod replay;
pub mod seal;

pub use handshake_ext::{Method, RefuseReason};
pub use keys::{generate_keypair, public_key, PeerIdentity, SessionKeys};
pub use seal::{sealed_payload_size, SealError, SealState, Sealer, SEAL_OVERHEAD};

/// How a connection protects itself; part of [`Config`](crate::Config).
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Security {
    /// UDT4 as it is: no encryption, no authentication (the default, and
    /// the only mode a UDT4 peer speaks).
    #[default]
    Plain,
    /// Both sides hold the same 32 random bytes. Not for passwords: use
    /// [`Security::Code`] for anything a human types.
    PreSharedKey([u8; 32]),
    /// Pinned X25519 keys, as WireGuard does. A caller authenticates the
    /// listener as `peer_keys[0]`; a listener accepts any caller whose key
    /// is in `peer_keys`.
    StaticKeys {
        /// Our private key (see [`generate_keypair`]).
        private_key: [u8; 32],
        /// The public keys we accept.
        peer_keys: Vec<[u8; 32]>,
    },
    /// A short code both humans know (e.g. `7-amber-falcon-river`), through
    /// a PAKE: a wrong guess costs the attacker one online handshake.
    /// Compared after trimming and lower-casing.
    Code(String),
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        match self {
            Security::Plain => f.write_str("Plain"),
            Security::PreSharedKey(_) => f.write_str("PreSharedKey(..)"),
            Security::StaticKeys { peer_keys, .. } => f
                .debug_struct("StaticKeys")
                .field("peer_keys", &peer_keys.len())
                .finish_non_exhaustive(),
            Security::Code(_) => f.write_str("Code(..)"),
        }
    }
}

impl Security {
    /// The authentication method, `None` for plain.
    pub fn method(&self) -> Option<Method> {
        match self {
            Security::Plain => None,
            Security::PreSharedKey(_) => Some(Method::PreSharedKey),
            Security::StaticKeys { .. } => Some(Method::StaticKeys),
            Security::Code(_) => Some(Method::Code),
        }
    }

    /// True for every mode but [`Security::Plain`].
    pub fn is_secure(&self) -> bool {
        self.method().is_some()
    }
}
