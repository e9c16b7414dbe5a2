//! Datagrams on the port that are not UDT: STUN messages (NAT traversal,
//! RFC 8489) and whatever else a registered [`DatagramHandler`] claims.
//!
//! A UDT data packet also starts with a zero bit, so the first bit alone
//! cannot tell STUN from UDT. A STUN message is recognised by three facts
//! together: the two top bits are zero, bytes 4..8 hold the magic cookie
//! `0x2112A442`, and bytes 2..4 give the length of the attributes, a
//! multiple of 4 equal to the datagram's length minus the 20-byte header.
//! The endpoint still offers a datagram to the handler only after it failed
//! to match an established connection by socket ID *and* source address:
//! a data packet misread as STUN would be lost for good (its retransmission
//! looks the same), while a STUN message misread as UDT is retried by STUN.

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

/// The STUN magic cookie (RFC 8489 §5).
pub const STUN_MAGIC_COOKIE: u32 = 0x2112_A442;

/// Size of the STUN message header (RFC 8489 §5).
pub const STUN_HEADER_SIZE: usize = 20;

/// True when `datagram` has the shape of a STUN message: top two bits zero,
/// the magic cookie, and a length field that matches the datagram.
pub fn is_stun(datagram: &[u8]) -> bool {
    let Some(header) = datagram.first_chunk::<STUN_HEADER_SIZE>() else {
        return false;
    };
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let cookie = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    header[0] & 0xC0 == 0
        && cookie == STUN_MAGIC_COOKIE
        && length % 4 == 0
        && length == datagram.len() - STUN_HEADER_SIZE
}

/// A sans-I/O handler for datagrams that are not UDT, registered with
/// [`Endpoint::set_datagram_handler`](super::Endpoint::set_datagram_handler)
/// (the NAT-punch engine, a STUN responder). The driver calls it through the
/// endpoint with the same clock as everything else; it sends through
/// [`poll_transmit`](Self::poll_transmit), never by itself.
pub trait DatagramHandler: Send + fmt::Debug {
    /// True when this handler wants `datagram`. The default claims STUN
    /// messages ([`is_stun`]).
    fn recognises(&self, datagram: &[u8]) -> bool {
        is_stun(datagram)
    }

    /// A datagram it recognised arrived from `from`.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]);

    /// Writes the next datagram to send into `buf` (empty on entry) and
    /// returns its destination, or `None` when there is nothing to send.
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr>;

    /// When the handler next wants [`handle_timeout`](Self::handle_timeout).
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Its timer fired (extra calls must be harmless).
    fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(attr_len: u16) -> Vec<u8> {
        let mut d = vec![0x00, 0x01];
        d.extend_from_slice(&attr_len.to_be_bytes());
        d.extend_from_slice(&STUN_MAGIC_COOKIE.to_be_bytes());
        d.extend_from_slice(&[7u8; 12]);
        d.resize(STUN_HEADER_SIZE + usize::from(attr_len), 0);
        d
    }

    #[test]
    fn a_binding_request_is_stun() {
        assert!(is_stun(&stun(0)));
        assert!(is_stun(&stun(8)));
    }

    #[test]
    fn the_cookie_length_and_top_bits_all_count() {
        let mut wrong_len = stun(8);
        wrong_len.push(0);
        assert!(!is_stun(&wrong_len));
        let mut odd = stun(0);
        odd[3] = 2;
        odd.extend_from_slice(&[0, 0]);
        assert!(!is_stun(&odd), "attribute length not a multiple of 4");
        let mut control = stun(0);
        control[0] |= 0x80;
        assert!(!is_stun(&control), "a UDT control packet");
        let mut no_cookie = stun(0);
        no_cookie[4] ^= 1;
        assert!(!is_stun(&no_cookie));
        assert!(!is_stun(&stun(0)[..19]));
    }

    #[test]
    fn a_udt_data_packet_is_not_stun() {
        // Sequence 5, message number 1 (first and last), timestamp, dest.
        let mut d = Vec::new();
        for w in [5u32, 0xC000_0001, 1234, 77] {
            d.extend_from_slice(&w.to_be_bytes());
        }
        d.extend_from_slice(&[0u8; 100]);
        assert!(!is_stun(&d));
    }
}
