//! Secure mode at the connection's edge: every datagram but handshakes is
//! sealed right after it is encoded and opened right before it is decoded,
//! so the protocol logic in between is the same as in plain mode.

use std::time::Instant;

use super::Connection;
use crate::error::ConnectionError;
use crate::packet::{self, Control, Packet};
use crate::secure::SealError;

/// True when the datagram is a handshake (control type 0). Handshakes are
/// never sealed: they carry their own Noise protection, and a listener's
/// repeated response must reach a caller that has no keys yet.
fn is_handshake(datagram: &[u8]) -> bool {
    packet::is_control(datagram) && datagram.get(..2).is_some_and(|w| w == [0x80, 0x00])
}

impl Connection {
    /// Seals the encoded packet in `buf` in secure mode (a no-op in plain
    /// mode and for handshakes). Returns false when nothing may be sent:
    /// the key's counters are exhausted, and the connection is now closed.
    pub(super) fn seal_outgoing(&mut self, now: Instant, buf: &mut Vec<u8>) -> bool {
        let Some(seal) = self.seal.as_mut() else {
            return true;
        };
        if is_handshake(buf) {
            return true;
        }
        match seal.seal(buf) {
            Ok(()) => true,
            Err(e) => {
                log::error!("{} cannot seal a packet: {e}", self.local_id);
                buf.clear();
                self.control.clear();
                self.enter_closed(now, ConnectionError::KeysExhausted);
                false
            }
        }
    }

    /// A datagram of a secure connection from its peer's address, opened
    /// where it lies (its body is overwritten).
    pub(super) fn on_secure_datagram(&mut self, now: Instant, datagram: &mut [u8]) {
        if self.unconfirmed {
            self.on_unconfirmed_datagram(now, datagram);
        } else {
            self.on_sealed_datagram(now, datagram);
        }
    }

    /// Opens one datagram of a secure connection in place and processes
    /// it. A packet that fails authentication or replays a counter is
    /// dropped and counted; it changes nothing else (no liveness, no
    /// timers), so forged or replayed packets cannot reset, truncate or
    /// keep alive a secure connection.
    pub(super) fn on_sealed_datagram(&mut self, now: Instant, datagram: &mut [u8]) {
        if is_handshake(datagram) {
            // Unauthenticated: only the listener's answer to a repeated
            // final request is taken from it (the same response again,
            // useless to anyone but the caller that holds its ephemeral
            // key). It proves nothing about the peer being alive.
            if let Ok(Packet::Control(c)) = packet::decode(datagram) {
                if let Control::Handshake(hs) = c.control {
                    self.on_handshake(&hs);
                }
            }
            return;
        }
        let Some(seal) = self.seal.as_mut() else {
            return;
        };
        match seal.open_in_place(datagram) {
            Ok(len) => self.on_datagram(now, datagram.get(..len).unwrap_or_default()),
            Err(SealError::Replayed) => {
                self.counters.dropped.replayed += 1;
                log::debug!("{} dropped a replayed packet", self.local_id);
            }
            Err(e) => {
                self.counters.dropped.unauthenticated += 1;
                log::debug!("{} dropped a packet: {e}", self.local_id);
            }
        }
    }
}
