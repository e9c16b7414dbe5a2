//! Scripted tests of the orderly close (issue 15): the sender withholds the
//! ACK2 of an ACK that acknowledges everything while the peer still reports
//! unread data, sends the shutdown once the peer reports its buffer drained,
//! and reports an error when the linger time runs out first.
//!
//! The peer of these scripts is a UDT4 receiver with the default 8192-packet
//! buffer: empty, it advertises 8191 packets (`buffer − 1`, §9), and its
//! handshake flow window is 8192.

use std::time::Duration;

use super::scripted_tests::{
    ack, ack_in_with_window as ack_in, control_in, data_in, data_out, keepalive, ms, ts, window,
    Script, FULL, INITIAL_RATES, ISN, PEER, RTT0, VAR0,
};
use super::*;
use crate::packet::{self, Control, DataHeader, PacketPosition};
use crate::seq::{AckSeqNumber, MsgNumber, SeqNumber};

/// What an empty default UDT4 receiver advertises.
const DRAINED: u32 = 8191;

fn ack2_out(at: Duration, ack_seq: u32) -> Vec<u8> {
    super::scripted_tests::control(at, Control::Ack2(AckSeqNumber::new(ack_seq)))
}

/// Our shutdown after the one packet of [`one_packet_sent`]: it carries
/// the end of our data (the sequence number after that packet).
fn shutdown_out(at: Duration) -> Vec<u8> {
    let mut d = super::scripted_tests::control(at, Control::Shutdown);
    packet::set_shutdown_end(&mut d, ISN.next());
    d
}

/// A script with linger `linger` that has written one 100-byte packet and
/// sent it at 0 ms.
fn one_packet_sent(linger: Option<Duration>) -> Script {
    let mut s = Script::new(Config {
        linger,
        ..Config::default()
    });
    let payload = [0x33; 100];
    assert_eq!(s.conn.write(&payload), Ok(100));
    s.expect(ms(0), &[data_out(ms(0), ISN, &payload)]);
    s
}

#[test]
fn ack2_is_withheld_while_the_peer_reports_unread_data() {
    let mut s = one_packet_sent(Some(Duration::from_secs(180)));
    // The ACK of everything says 1 packet is still unread (8190 free): no
    // ACK2, so a UDT4 receiver keeps repeating its ACK (§6.4).
    s.feed(ms(5), &ack_in(1, ISN.next(), DRAINED - 1));
    s.expect(ms(5), &[]);
    assert!(s.conn.is_send_buffer_empty());
    let st = s.conn.stats();
    assert_eq!((st.ack2s_sent, st.ack2s_withheld), (0, 1));
    assert_eq!(st.peer_unread_packets, 1);
    // Its repeat reports the buffer drained: that one is confirmed.
    s.feed(ms(300), &ack_in(2, ISN.next(), DRAINED));
    s.expect(ms(300), &[ack2_out(ms(300), 2)]);
    let st = s.conn.stats();
    assert_eq!((st.ack2s_sent, st.ack2s_withheld), (1, 1));
    assert_eq!(st.peer_unread_packets, 0);
    // Nothing unread and nothing unacknowledged: close shuts down at once.
    s.conn.close(s.at(ms(301)));
    s.expect(ms(301), &[shutdown_out(ms(301))]);
    assert_eq!(
        s.conn.state(),
        State::Closed(ConnectionError::LocallyClosed)
    );
}

/// Writes a full packet and 100 bytes more (one stream write: the first
/// and last packet of one message) and sends them together at 0 ms.
fn send_two_packets(s: &mut Script, byte: u8) {
    let payload = [byte; FULL + 100];
    assert_eq!(s.conn.write(&payload), Ok(FULL + 100));
    let out = |at, seq, position, body: &[u8]| {
        let header = DataHeader {
            seq,
            position,
            in_order: false,
            msg: MsgNumber::FIRST,
            timestamp: ts(at),
            dest: PEER,
        };
        let mut d = Vec::new();
        packet::encode_data(&header, body, &mut d);
        d
    };
    // One pacing slot: the controller's send quantum is two packets.
    s.expect(
        ms(0),
        &[
            out(ms(0), ISN, PacketPosition::First, &payload[..FULL]),
            out(ms(0), ISN.next(), PacketPosition::Last, &payload[FULL..]),
        ],
    );
}

#[test]
fn an_ack_that_leaves_data_unacknowledged_is_confirmed_as_usual() {
    let mut s = Script::new(Config::default());
    send_two_packets(&mut s, 0x44);
    // Only the first packet acknowledged: the peer's buffer is beside the
    // point while data is outstanding.
    s.feed(ms(5), &ack_in(1, ISN.next(), 10));
    s.expect(ms(5), &[ack2_out(ms(5), 1)]);
    assert_eq!(s.conn.stats().ack2s_withheld, 0);
}

#[test]
fn close_sends_the_shutdown_only_once_the_peer_has_read_everything() {
    let mut s = one_packet_sent(Some(Duration::from_secs(180)));
    s.conn.close(s.at(ms(1)));
    assert!(matches!(s.conn.state(), State::Closing { .. }));
    s.expect(ms(1), &[]);
    // Acknowledged but not read: no ACK2, no shutdown.
    s.feed(ms(5), &ack_in(1, ISN.next(), 5000));
    s.expect(ms(5), &[]);
    assert!(matches!(s.conn.state(), State::Closing { .. }));
    // A repeat: the reader is catching up, still not done.
    s.feed(ms(300), &ack_in(2, ISN.next(), DRAINED - 3));
    s.expect(ms(300), &[]);
    assert!(matches!(s.conn.state(), State::Closing { .. }));
    assert_eq!(s.conn.stats().peer_unread_packets, 3);
    // Drained: ACK2 (so the peer stops repeating) and then the shutdown.
    s.feed(ms(600), &ack_in(3, ISN.next(), DRAINED));
    s.expect(ms(600), &[ack2_out(ms(600), 3), shutdown_out(ms(600))]);
    assert_eq!(
        s.conn.state(),
        State::Closed(ConnectionError::LocallyClosed)
    );
    let st = s.conn.stats();
    assert_eq!((st.ack2s_sent, st.ack2s_withheld), (1, 2));
}

#[test]
fn linger_expiry_with_data_unread_is_an_error_and_still_sends_the_shutdown() {
    let mut s = one_packet_sent(Some(Duration::from_secs(2)));
    s.conn.close(s.at(ms(0)));
    s.feed(ms(5), &ack_in(1, ISN.next(), 100));
    s.expect(ms(5), &[]);
    // The peer keeps reporting the same unread data; we keep not confirming.
    s.feed(ms(900), &ack_in(2, ISN.next(), 100));
    s.expect(ms(900), &[]);
    assert_eq!(s.conn.timer_deadline(Timer::Linger), Some(s.at(ms(2000))));
    // Only a keep-alive after 1 s of silence on our side.
    s.expect(ms(999), &[]);
    s.expect(ms(1000), &[keepalive(ms(1000))]);
    s.expect(ms(1999), &[]);
    s.expect(ms(2000), &[shutdown_out(ms(2000))]);
    assert_eq!(s.conn.state(), State::Closed(ConnectionError::PeerUnread));
    assert_eq!(s.conn.stats().peer_unread_packets, DRAINED - 100);
    let e: std::io::Error = ConnectionError::PeerUnread.into();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
}

#[test]
fn linger_expiry_with_data_unacknowledged_stays_linger_expired() {
    let mut s = one_packet_sent(Some(Duration::from_secs(2)));
    s.conn.close(s.at(ms(0)));
    // No ACK at all: EXP retransmissions, then the linger deadline.
    let mut out = Vec::new();
    let end = s.at(ms(2000));
    while !s.conn.is_closed() {
        let Some(next) = s.conn.poll_timeout() else {
            break;
        };
        assert!(next <= end, "no timer fired by the linger deadline");
        s.conn.handle_timeout(next);
        while s.conn.poll_transmit(next, &mut out).is_some() {}
    }
    assert_eq!(
        s.conn.state(),
        State::Closed(ConnectionError::LingerExpired)
    );
}

#[test]
fn the_drain_target_is_the_largest_free_space_ever_reported() {
    // A peer whose receive buffer (200) is larger than its handshake window
    // (100): UDT4 advertises min(buffer, flight flag size) in the handshake
    // but its real free space in ACKs.
    let mut s = Script::with_peer_window(Config::default(), 100);
    send_two_packets(&mut s, 0x55);
    s.feed(ms(5), &ack_in(1, ISN.next(), 199));
    s.expect(ms(5), &[ack2_out(ms(5), 1)]);
    // Above handshake − 1, but below the 199 it reported before: one
    // packet is still unread.
    s.feed(ms(6), &ack_in(2, ISN.add(2), 198));
    s.expect(ms(6), &[]);
    assert_eq!(s.conn.stats().peer_unread_packets, 1);
    s.feed(ms(300), &ack_in(3, ISN.add(2), 199));
    s.expect(ms(300), &[ack2_out(ms(300), 3)]);
}

#[test]
fn the_peer_closing_first_ends_the_wait_and_leaves_the_unread_count() {
    let mut s = one_packet_sent(Some(Duration::from_secs(180)));
    s.conn.close(s.at(ms(0)));
    s.feed(ms(5), &ack_in(1, ISN.next(), DRAINED - 7));
    s.feed(ms(6), &control_in(Control::Shutdown));
    assert_eq!(s.conn.state(), State::Closed(ConnectionError::PeerClosed));
    assert!(s.conn.is_send_buffer_empty());
    // Whether the peer's application read those 7 packets before it closed
    // is unknown: the count says so to whoever reports the close.
    assert_eq!(s.conn.stats().peer_unread_packets, 7);
}

#[test]
fn our_receiver_reports_its_drain_in_the_acks_it_repeats() {
    // The receiving side of the mechanism: while the sender withholds the
    // ACK2, our receiver repeats its ACK every RTT + 4·RTTVar, each with the
    // free space at that time; once the application has read everything it
    // advertises buffer − 1, the drained value our own sender waits for
    // (its handshake window is min(buffer, flow window) = 8192).
    let mut s = Script::new(Config::default());
    assert_eq!(Config::default().advertised_window(), DRAINED + 1);
    s.feed(ms(1), &data_in(ISN, FULL));
    let first = ack(
        ms(10),
        1,
        ISN.next(),
        (RTT0, VAR0),
        window(1),
        Some(INITIAL_RATES),
    );
    s.expect(ms(10), &[first]);
    let mut buf = vec![0u8; FULL];
    assert_eq!(s.conn.read(&mut buf), Ok(FULL));
    s.expect(ms(309), &[]);
    s.expect(
        ms(310),
        &[ack(
            ms(310),
            2,
            ISN.next(),
            (RTT0, VAR0),
            DRAINED,
            Some(INITIAL_RATES),
        )],
    );
}

#[test]
fn an_older_ack_arriving_last_does_not_bring_back_unread_data() {
    // The peer reported one packet unread (ACK 1), its reader drained the
    // buffer, and its next ACK (2) said so; the network delivers 2 first.
    // Before the fix the stale free space of ACK 1 won, the sender
    // confirmed ACK 2 (so the peer stopped repeating) and its close
    // lingered for the whole linger time.
    let mut s = one_packet_sent(Some(Duration::from_secs(180)));
    s.feed(ms(5), &ack_in(2, ISN.next(), DRAINED));
    s.expect(ms(5), &[ack2_out(ms(5), 2)]);
    s.feed(ms(6), &ack_in(1, ISN.next(), DRAINED - 1));
    // Confirming the old ACK is harmless; what counts is the room.
    s.expect(ms(6), &[ack2_out(ms(6), 1)]);
    assert_eq!(s.conn.stats().peer_unread_packets, 0);
    s.conn.close(s.at(ms(7)));
    s.expect(ms(7), &[shutdown_out(ms(7))]);
    assert_eq!(
        s.conn.state(),
        State::Closed(ConnectionError::LocallyClosed)
    );
}

#[test]
fn ack_sequence_numbers_order_acks_across_the_wrap() {
    // The newest of two ACKs with the same number is the later one by ACK
    // sequence number, also where that number wraps at 2^31.
    let last = SeqNumber::MAX;
    let mut s = one_packet_sent(Some(Duration::from_secs(180)));
    s.feed(ms(5), &ack_in(last, ISN.next(), DRAINED - 1));
    s.expect(ms(5), &[]);
    s.feed(ms(6), &ack_in(0, ISN.next(), DRAINED));
    s.expect(ms(6), &[ack2_out(ms(6), 0)]);
    assert_eq!(s.conn.stats().peer_unread_packets, 0);
    // The one before the wrap, delivered late, is older.
    s.feed(ms(7), &ack_in(last - 1, ISN.next(), DRAINED - 2));
    assert_eq!(s.conn.stats().peer_unread_packets, 0);
}

#[test]
fn an_ack_sequence_number_far_ahead_cannot_hold_a_close() {
    // A stray or forged ACK with the current number, little room and a
    // sequence number far ahead must not make the peer's real reports
    // (older by number) count for nothing: more room is always news.
    let mut s = one_packet_sent(Some(Duration::from_secs(180)));
    s.feed(ms(5), &ack_in(1, ISN.next(), DRAINED - 1));
    s.expect(ms(5), &[]);
    s.feed(ms(6), &ack_in(1 << 29, ISN.next(), DRAINED - 5));
    assert_eq!(s.conn.stats().peer_unread_packets, 5);
    s.feed(ms(300), &ack_in(2, ISN.next(), DRAINED));
    s.expect(ms(300), &[ack2_out(ms(300), 2)]);
    assert_eq!(s.conn.stats().peer_unread_packets, 0);
    s.conn.close(s.at(ms(301)));
    s.expect(ms(301), &[shutdown_out(ms(301))]);
}

#[test]
fn a_repeated_ack_cannot_raise_the_drain_target() {
    // A stray or forged repeat of an old ACK number with an absurd free
    // space must not make every later close wait for it.
    let mut s = one_packet_sent(Some(Duration::from_secs(180)));
    s.feed(ms(5), &ack_in(1, ISN.next(), DRAINED));
    s.expect(ms(5), &[ack2_out(ms(5), 1)]);
    s.feed(ms(6), &ack_in(2, ISN.next(), 1_000_000));
    s.expect(ms(6), &[ack2_out(ms(6), 2)]);
    s.feed(ms(7), &ack_in(3, ISN.next(), DRAINED));
    s.expect(ms(7), &[ack2_out(ms(7), 3)]);
    s.conn.close(s.at(ms(8)));
    s.expect(ms(8), &[shutdown_out(ms(8))]);
    assert_eq!(
        s.conn.state(),
        State::Closed(ConnectionError::LocallyClosed)
    );
}

#[test]
fn an_orderly_close_acknowledges_what_arrived_before_the_shutdown() {
    // The peer's last packet arrived but the ACK timer has not fired yet:
    // the close must acknowledge it, or the peer, closing right after us,
    // finds it unacknowledged and its own close fails.
    let mut s = Script::new(Config::default());
    s.feed(ms(1), &data_in(ISN, FULL));
    s.conn.close(s.at(ms(2)));
    let mut shutdown = super::scripted_tests::control(ms(2), Control::Shutdown);
    packet::set_shutdown_end(&mut shutdown, ISN);
    s.expect(
        ms(2),
        &[
            // A connection's first ACKs carry the rates
            // (`Config::early_rate_reports`).
            ack(
                ms(2),
                1,
                ISN.next(),
                (RTT0, VAR0),
                window(1),
                Some(INITIAL_RATES),
            ),
            shutdown,
        ],
    );
    assert_eq!(
        s.conn.state(),
        State::Closed(ConnectionError::LocallyClosed)
    );
}
