//! The handshake body (control type 0): twelve big-endian words, and the
//! peer-IP field with UDT4's byte-order quirk (udt4-protocol.md §3, §3.1).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{put_u32, words, DecodeError, SocketId, HEADER_SIZE};
use crate::seq::SeqNumber;

/// The request-type field (word 5) of a handshake (udt4-protocol.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReqType {
    /// 1: a caller's request, and the listener's cookie reply that echoes it.
    Caller,
    /// −1: a caller's second request (with the cookie), the listener's final
    /// response, and a rendezvous side's second phase.
    Response,
    /// 0: the first phase of a rendezvous.
    Rendezvous,
    /// −2: the reply of a rendezvous socket that is already connected.
    RendezvousConnected,
    /// 1002: the listener refused the connection (UDT4 `ECONNREJ`).
    Rejected,
    /// Any other value. [`ReqType::from_wire`] never builds `Other` for a
    /// value that has a named variant.
    Other(i32),
}

impl ReqType {
    /// The signed 32-bit value carried in word 5.
    pub const fn to_wire(self) -> i32 {
        match self {
            ReqType::Caller => 1,
            ReqType::Response => -1,
            ReqType::Rendezvous => 0,
            ReqType::RendezvousConnected => -2,
            ReqType::Rejected => 1002,
            ReqType::Other(v) => v,
        }
    }

    /// Decodes word 5.
    pub const fn from_wire(v: i32) -> Self {
        match v {
            1 => ReqType::Caller,
            -1 => ReqType::Response,
            0 => ReqType::Rendezvous,
            -2 => ReqType::RendezvousConnected,
            1002 => ReqType::Rejected,
            other => ReqType::Other(other),
        }
    }
}

/// The 128-bit peer-IP field of a handshake, kept as its 16 wire bytes.
///
/// UDT4 fills it from host-order integers and then byte-swaps every word, so
/// on x86-64 the bytes inside each 32-bit word come out reversed: 127.0.0.1
/// travels as `01 00 00 7F` followed by twelve zeros (udt4-protocol.md §3.1).
/// [`PeerIp::from_addr`] reproduces that layout; [`PeerIp::to_addr`] reads
/// either layout.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PeerIp(pub [u8; 16]);

impl PeerIp {
    /// All zeros: what UDT4 sends when it does not fill the field (−2 replies).
    pub const ZERO: PeerIp = PeerIp([0; 16]);

    /// Encodes `ip` in UDT4's x86-64 layout.
    ///
    /// An IPv4-mapped IPv6 address is encoded as the IPv4 address, since a
    /// UDT4 peer on an IPv4 socket reads only the first word.
    pub fn from_addr(ip: IpAddr) -> Self {
        let mut bytes = [0u8; 16];
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let mut o = v4.octets();
                o.reverse();
                bytes[..4].copy_from_slice(&o);
            }
            IpAddr::V6(v6) => {
                bytes = v6.octets();
                reverse_words(&mut bytes);
            }
        }
        PeerIp(bytes)
    }

    /// Decodes the field as an IPv4 (`is_v6 == false`, first word only) or
    /// IPv6 address.
    ///
    /// Both layouts are tried: UDT4's (bytes reversed inside each word) and
    /// plain network order (tokio-udt and other implementations). If one of
    /// them equals `hint` (usually the address we expected), that one is
    /// returned; otherwise the UDT4 layout wins.
    pub fn to_addr(&self, is_v6: bool, hint: Option<IpAddr>) -> IpAddr {
        let plain = self.0;
        let mut swapped = self.0;
        reverse_words(&mut swapped);
        let (udt4, plain): (IpAddr, IpAddr) = if is_v6 {
            (Ipv6Addr::from(swapped).into(), Ipv6Addr::from(plain).into())
        } else {
            (
                Ipv4Addr::new(swapped[0], swapped[1], swapped[2], swapped[3]).into(),
                Ipv4Addr::new(plain[0], plain[1], plain[2], plain[3]).into(),
            )
        };
        match hint.map(|h| h.to_canonical()) {
            Some(h) if h == plain && h != udt4 => plain,
            _ => udt4,
        }
    }

    /// True when all 16 bytes are zero (the field was not filled in).
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Debug for PeerIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerIp(")?;
        for (i, chunk) in self.0.chunks_exact(4).enumerate() {
            if i > 0 {
                write!(f, " ")?;
            }
            for b in chunk {
                write!(f, "{b:02X}")?;
            }
        }
        write!(f, ")")
    }
}

/// Reverses the bytes inside each 32-bit word (UDT4's `htonl` of host-order
/// little-endian words).
fn reverse_words(bytes: &mut [u8; 16]) {
    for chunk in bytes.chunks_exact_mut(4) {
        chunk.reverse();
    }
}

/// A decoded handshake body (udt4-protocol.md §3).
///
/// Fields are kept raw where UDT4 peers send values we must tolerate:
/// version and socket type are 0 in the −2 reply of a connected socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// Word 0: UDT version, 4 (0 in a −2 reply).
    pub version: u32,
    /// Word 1: socket type, raw; see [`crate::config::SocketType::from_wire`].
    pub socket_type: u32,
    /// Word 2: the sender's initial sequence number.
    pub isn: SeqNumber,
    /// Word 3: MSS in bytes, IP and UDP headers included.
    pub mss: u32,
    /// Word 4: flight flag size, the largest flow window in packets.
    pub flow_window: u32,
    /// Word 5: the request type.
    pub req_type: ReqType,
    /// Word 6: the sender's own socket ID.
    pub socket_id: SocketId,
    /// Word 7: the SYN cookie, 0 until a listener sets it.
    pub cookie: u32,
    /// Words 8–11: the address the sender is sending to, without the port.
    pub peer_ip: PeerIp,
}

impl Handshake {
    /// Length of a handshake body: 12 words (UDT4 `m_iContentSize`).
    pub const BODY_SIZE: usize = 48;
    /// The UDT version UDT4 speaks.
    pub const VERSION: u32 = 4;

    /// Decodes a handshake body; bytes beyond the first 48 are ignored.
    ///
    /// # Errors
    ///
    /// [`DecodeError::BadLength`] if `body` is shorter than 48 bytes.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let too_short = DecodeError::BadLength {
            type_code: 0,
            len: body.len(),
        };
        let ip = body
            .get(32..Self::BODY_SIZE)
            .and_then(|s| <[u8; 16]>::try_from(s).ok());
        let (Some(w), Some(ip_bytes)) = (words::<8>(body), ip) else {
            return Err(too_short);
        };
        Ok(Handshake {
            version: w[0],
            socket_type: w[1],
            isn: SeqNumber::new(w[2]),
            mss: w[3],
            flow_window: w[4],
            req_type: ReqType::from_wire(w[5] as i32),
            socket_id: SocketId(w[6]),
            cookie: w[7],
            peer_ip: PeerIp(ip_bytes),
        })
    }

    /// Appends the 48-byte body to `out`.
    pub fn write_body(&self, out: &mut Vec<u8>) {
        put_u32(out, self.version);
        put_u32(out, self.socket_type);
        put_u32(out, self.isn.value());
        put_u32(out, self.mss);
        put_u32(out, self.flow_window);
        put_u32(out, self.req_type.to_wire() as u32);
        put_u32(out, self.socket_id.0);
        put_u32(out, self.cookie);
        // The peer IP is stored as wire bytes already.
        out.extend_from_slice(&self.peer_ip.0);
    }

    /// Writes a whole handshake packet (64 bytes) to `out`, replacing its
    /// contents: header word 0 = `0x80000000`, word 1 = 0, then `timestamp`
    /// (UDT4 sends 0) and `dest`.
    pub fn encode(&self, timestamp: u32, dest: SocketId, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(HEADER_SIZE + Self::BODY_SIZE);
        super::put_header(out, super::CONTROL_FLAG, 0, timestamp, dest);
        self.write_body(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn req_type_round_trips() {
        for v in [1, -1, 0, -2, 1002, 7, i32::MIN, i32::MAX, -3] {
            assert_eq!(ReqType::from_wire(v).to_wire(), v);
        }
        assert_eq!(ReqType::from_wire(1), ReqType::Caller);
        assert_eq!(ReqType::from_wire(-1), ReqType::Response);
        assert_eq!(ReqType::from_wire(0), ReqType::Rendezvous);
        assert_eq!(ReqType::from_wire(-2), ReqType::RendezvousConnected);
        assert_eq!(ReqType::from_wire(1002), ReqType::Rejected);
        assert_eq!(ReqType::from_wire(5), ReqType::Other(5));
    }

    #[test]
    fn loopback_v4_uses_udt4_layout() {
        // udt4-protocol.md §3.1 / §14 vector 2: 127.0.0.1 is `01 00 00 7F 0…`.
        let ip = PeerIp::from_addr(Ipv4Addr::LOCALHOST.into());
        let mut expected = [0u8; 16];
        expected[..4].copy_from_slice(&[0x01, 0x00, 0x00, 0x7F]);
        assert_eq!(ip.0, expected);
        assert_eq!(ip.to_addr(false, None), IpAddr::from(Ipv4Addr::LOCALHOST));
        // A v4-mapped v6 address encodes as the v4 address.
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        assert_eq!(PeerIp::from_addr(mapped), ip);
    }

    #[test]
    fn either_layout_is_accepted_with_a_hint() {
        let addr = IpAddr::from(Ipv4Addr::new(10, 1, 2, 3));
        // Plain network order, as tokio-udt writes it.
        let mut plain = [0u8; 16];
        plain[..4].copy_from_slice(&[10, 1, 2, 3]);
        let plain = PeerIp(plain);
        assert_eq!(plain.to_addr(false, Some(addr)), addr);
        // Without a matching hint the UDT4 layout wins.
        assert_eq!(
            plain.to_addr(false, None),
            IpAddr::from(Ipv4Addr::new(3, 2, 1, 10))
        );
        assert_eq!(PeerIp::from_addr(addr).to_addr(false, Some(addr)), addr);
        assert_eq!(PeerIp::from_addr(addr).to_addr(false, None), addr);
    }

    #[test]
    fn v6_reverses_each_word() {
        let v6 = Ipv6Addr::new(
            0x2001, 0x0db8, 0x0102, 0x0304, 0x0506, 0x0708, 0x090a, 0x0b0c,
        );
        let ip = PeerIp::from_addr(v6.into());
        assert_eq!(
            ip.0,
            [
                0xb8, 0x0d, 0x01, 0x20, 0x04, 0x03, 0x02, 0x01, 0x08, 0x07, 0x06, 0x05, 0x0c, 0x0b,
                0x0a, 0x09
            ]
        );
        assert_eq!(ip.to_addr(true, None), IpAddr::from(v6));
        let plain = PeerIp(v6.octets());
        assert_eq!(plain.to_addr(true, Some(v6.into())), IpAddr::from(v6));
    }

    #[test]
    fn short_bodies_are_rejected_and_extra_ignored() {
        let hs = Handshake {
            version: 4,
            socket_type: 1,
            isn: SeqNumber::new(0x7FFF_FFFF),
            mss: 1500,
            flow_window: 8192,
            req_type: ReqType::Response,
            socket_id: SocketId(9),
            cookie: 0xDEAD_BEEF,
            peer_ip: PeerIp::from_addr(Ipv4Addr::new(192, 0, 2, 1).into()),
        };
        let mut body = Vec::new();
        hs.write_body(&mut body);
        assert_eq!(body.len(), Handshake::BODY_SIZE);
        for len in 0..Handshake::BODY_SIZE {
            assert_eq!(
                Handshake::decode(&body[..len]),
                Err(DecodeError::BadLength { type_code: 0, len })
            );
        }
        assert_eq!(Handshake::decode(&body), Ok(hs));
        body.extend_from_slice(&[1, 2, 3, 4, 5]);
        assert_eq!(Handshake::decode(&body), Ok(hs));
    }
}
