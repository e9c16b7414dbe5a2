//! The secure-mode extension: bytes appended after UDT4's 48-byte
//! handshake body.
//!
//! ```text
//! | "UDTS" | version 2 | kind | method | reason | payload length, u16 BE | payload |
//! ```
//!
//! The version names the whole construction, packet protection included
//! (version 2: AES-128-GCM with TLS 1.3's key and IV per epoch, the header
//! alone as associated data, payloads of whole AES blocks; version 1 sealed
//! with AES-256-GCM, over header and counter, and a receiver of version 2
//! would cut its payloads). Magic and version
//! keep their place in every version; an endpoint speaks exactly one and
//! refuses the others with [`ExtError::Version`] (a listener answers an
//! Init of another version with a [`RefuseReason::Version`] refusal): a
//! secure connection never opens between two constructions.
//!
//! A UDT4 peer never sees one unless it talks to a secure endpoint: a
//! secure caller's first request is plain 48 bytes, and only a secure
//! listener's answers carry the extension. Kinds:
//! - [`ExtKind::Offer`]: the listener's cookie echo says "secure, method m"
//!   (no payload). A secure caller whose echo lacks it refuses to go on.
//! - [`ExtKind::Init`]: the caller's final request carries the first Noise
//!   message (for codes, preceded by the SPAKE2 message).
//! - [`ExtKind::Resp`]: the listener's response carries the second one.
//! - [`ExtKind::Refuse`]: a rejection (request type 1002) says why.

use crate::packet::{Handshake, HEADER_SIZE};

/// The four bytes that start every extension.
pub const MAGIC: [u8; 4] = *b"UDTS";
/// The version of the extension and of the whole construction.
pub const VERSION: u8 = 2;
/// Bytes before the payload.
pub const EXT_HEADER_SIZE: usize = 10;
/// The largest payload accepted (the biggest real one is ~130 bytes).
pub const MAX_PAYLOAD: usize = 512;

/// What an extension is for (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtKind {
    /// The listener's cookie echo: it requires secure mode with a method.
    Offer,
    /// The caller's final request: the first handshake message.
    Init,
    /// The listener's final response: the second handshake message.
    Resp,
    /// A rejection, with its reason.
    Refuse,
}

impl ExtKind {
    fn to_wire(self) -> u8 {
        match self {
            ExtKind::Offer => 1,
            ExtKind::Init => 2,
            ExtKind::Resp => 3,
            ExtKind::Refuse => 4,
        }
    }

    fn from_wire(v: u8) -> Option<Self> {
        Some(match v {
            1 => ExtKind::Offer,
            2 => ExtKind::Init,
            3 => ExtKind::Resp,
            4 => ExtKind::Refuse,
            _ => return None,
        })
    }
}

/// How the two sides authenticate each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// A 32-byte pre-shared key: Noise NNpsk0.
    PreSharedKey,
    /// Static X25519 keys pinned on both sides: Noise IK.
    StaticKeys,
    /// A short human code: SPAKE2, whose key is the PSK of Noise NNpsk2.
    Code,
}

impl Method {
    /// The byte on the wire.
    pub fn to_wire(self) -> u8 {
        match self {
            Method::PreSharedKey => 1,
            Method::StaticKeys => 2,
            Method::Code => 3,
        }
    }

    /// Decodes the byte on the wire.
    pub fn from_wire(v: u8) -> Option<Self> {
        Some(match v {
            1 => Method::PreSharedKey,
            2 => Method::StaticKeys,
            3 => Method::Code,
            _ => return None,
        })
    }
}

/// Why a secure listener refused a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseReason {
    /// The caller offered no secure extension (a plain or UDT4 peer, or a
    /// downgrade by someone on the path).
    PlainRefused,
    /// The caller uses another authentication method.
    MethodMismatch,
    /// The first handshake message did not authenticate (wrong key).
    AuthFailed,
    /// The extension could not be parsed.
    Malformed,
    /// The caller speaks another version of secure mode.
    Version,
}

impl RefuseReason {
    fn to_wire(self) -> u8 {
        match self {
            RefuseReason::PlainRefused => 1,
            RefuseReason::MethodMismatch => 2,
            RefuseReason::AuthFailed => 3,
            RefuseReason::Malformed => 4,
            RefuseReason::Version => 5,
        }
    }

    fn from_wire(v: u8) -> Self {
        match v {
            1 => RefuseReason::PlainRefused,
            2 => RefuseReason::MethodMismatch,
            3 => RefuseReason::AuthFailed,
            5 => RefuseReason::Version,
            _ => RefuseReason::Malformed,
        }
    }
}

/// One decoded extension, borrowing its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extension<'a> {
    /// What it is for.
    pub kind: ExtKind,
    /// The authentication method, if the byte is a known one.
    pub method: Option<Method>,
    /// The reason of a [`ExtKind::Refuse`].
    pub reason: RefuseReason,
    /// The handshake message(s).
    pub payload: &'a [u8],
}

/// Why the bytes after a handshake body are not a valid extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtError {
    /// No bytes after the 48-byte body: a plain handshake.
    Absent,
    /// Bytes that are not a well-formed extension.
    Malformed,
    /// An extension of another version of secure mode (the version byte
    /// it carries): the peer runs another release.
    Version(u8),
}

/// Appends an extension to `out` (normally right after a handshake body).
///
/// # Panics
/// Never; a payload longer than [`MAX_PAYLOAD`] is a bug of ours and is
/// truncated to keep the length field honest.
pub fn write(
    out: &mut Vec<u8>,
    kind: ExtKind,
    method: Option<Method>,
    reason: Option<RefuseReason>,
    payload: &[u8],
) {
    let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind.to_wire());
    out.push(method.map_or(0, Method::to_wire));
    out.push(reason.map_or(0, RefuseReason::to_wire));
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

/// The extension of a whole handshake datagram (header included).
///
/// # Errors
/// [`ExtError::Absent`] for a plain 64-byte handshake,
/// [`ExtError::Version`] for an extension of another [`VERSION`],
/// [`ExtError::Malformed`] for other trailing bytes that are not a whole
/// extension.
pub fn parse_datagram(datagram: &[u8]) -> Result<Extension<'_>, ExtError> {
    parse(
        datagram
            .get(HEADER_SIZE + Handshake::BODY_SIZE..)
            .unwrap_or_default(),
    )
}

/// True when `datagram` is a handshake whose extension is a refusal for
/// failed authentication (the caller's answer to a response that did not
/// authenticate, or a rendezvous peer's).
pub fn is_auth_refusal(datagram: &[u8]) -> bool {
    matches!(
        parse_datagram(datagram),
        Ok(ext) if ext.kind == ExtKind::Refuse && ext.reason == RefuseReason::AuthFailed
    )
}

/// Parses `bytes` (what follows the 48-byte body). Never panics.
///
/// # Errors
/// As [`parse_datagram`].
pub fn parse(bytes: &[u8]) -> Result<Extension<'_>, ExtError> {
    if bytes.is_empty() {
        return Err(ExtError::Absent);
    }
    if let (Some(magic), Some(&version)) = (bytes.get(..4), bytes.get(4)) {
        if magic == MAGIC && version != VERSION {
            // Only magic and version keep their place across versions.
            return Err(ExtError::Version(version));
        }
    }
    let Some((head, rest)) = bytes.split_first_chunk::<EXT_HEADER_SIZE>() else {
        return Err(ExtError::Malformed);
    };
    if head[..4] != MAGIC {
        return Err(ExtError::Malformed);
    }
    let kind = ExtKind::from_wire(head[5]).ok_or(ExtError::Malformed)?;
    let len = usize::from(u16::from_be_bytes([head[8], head[9]]));
    if len > MAX_PAYLOAD || rest.len() != len {
        return Err(ExtError::Malformed);
    }
    Ok(Extension {
        kind,
        method: Method::from_wire(head[6]),
        reason: RefuseReason::from_wire(head[7]),
        payload: rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let mut out = Vec::new();
        write(
            &mut out,
            ExtKind::Init,
            Some(Method::Code),
            None,
            &[7u8; 81],
        );
        let ext = parse(&out).expect("parse");
        assert_eq!(ext.kind, ExtKind::Init);
        assert_eq!(ext.method, Some(Method::Code));
        assert_eq!(ext.payload, &[7u8; 81][..]);
        assert_eq!(parse(&[]), Err(ExtError::Absent));
        for len in 1..out.len() {
            assert_eq!(parse(&out[..len]), Err(ExtError::Malformed), "{len}");
        }
        let mut long = out.clone();
        long.push(0);
        assert_eq!(parse(&long), Err(ExtError::Malformed));
        let mut other = out.clone();
        other[4] = 1;
        assert_eq!(parse(&other), Err(ExtError::Version(1)));
        assert_eq!(parse(&other[..5]), Err(ExtError::Version(1)));
        let mut bad = out.clone();
        bad[0] = b'X';
        assert_eq!(parse(&bad), Err(ExtError::Malformed));
        let mut refuse = Vec::new();
        write(
            &mut refuse,
            ExtKind::Refuse,
            Some(Method::PreSharedKey),
            Some(RefuseReason::AuthFailed),
            &[],
        );
        let r = parse(&refuse).expect("parse");
        assert_eq!(r.reason, RefuseReason::AuthFailed);
    }
}
