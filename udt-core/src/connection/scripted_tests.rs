//! Scripted packet-in / packets-out tests: each one feeds encoded packets to
//! one [`Connection`] at given virtual times and asserts the exact datagrams
//! it sends back, byte for byte (the style of smoltcp's socket tests).
//!
//! Times are offsets from the connection's creation, which is also the epoch
//! of its wire timestamps, so an expected packet's timestamp is the time of
//! the step that sends it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::packet::{self, Ack, AckRates, Control, ControlPacket, DataHeader, PacketPosition};
use crate::seq::{AckSeqNumber, MsgNumber, SeqNumber};

pub(super) const LOCAL: SocketId = SocketId(0x1111);
pub(super) const PEER: SocketId = SocketId(0x2222);

/// Both directions start here (an arbitrary number, away from the wrap).
pub(super) const ISN: SeqNumber = SeqNumber::new(1000);

/// Payload of a full data packet at the default MSS of 1500.
pub(super) const FULL: usize = 1456;

/// The RTT and variance a connection starts with (UDT4's defaults), in µs,
/// as ACKs carry them until a sample arrives.
pub(super) const RTT0: u32 = 100_000;
pub(super) const VAR0: u32 = 50_000;

/// The rate fields of a full ACK while the arrival estimators are still at
/// their initial values (intervals of 1 s, probe intervals of 1 ms) or have
/// only seen intervals the median filter discards.
pub(super) const INITIAL_RATES: AckRates = AckRates {
    recv_rate: 1,
    link_capacity: 1000,
};

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

pub(super) use crate::time::test_epoch as epoch;

/// A connection under test and its virtual clock.
pub(super) struct Script {
    pub(super) conn: Connection,
    pub(super) t0: Instant,
    pub(super) buf: Vec<u8>,
}

impl Script {
    /// A caller-side stream connection (no first-data hold) with `config`.
    pub(super) fn new(config: Config) -> Self {
        Self::with_peer_window(config, 8192)
    }

    /// As [`new`](Self::new), with the peer's handshake flow window.
    pub(super) fn with_peer_window(config: Config, peer_flow_window: u32) -> Self {
        Self::build(config, peer_flow_window, SocketType::Stream)
    }

    /// As [`new`](Self::new), a message connection.
    pub(super) fn message(config: Config) -> Self {
        Self::build(config, 8192, SocketType::Message)
    }

    fn build(config: Config, peer_flow_window: u32, socket_type: SocketType) -> Self {
        let t0 = epoch();
        let params = ConnectParams {
            local_socket_id: LOCAL,
            peer_socket_id: PEER,
            peer_addr: peer_addr(),
            send_isn: ISN,
            recv_isn: ISN,
            mss: 1500,
            peer_flow_window,
            socket_type,
            rendezvous: false,
            self_ip: None,
            response: None,
            secure: None,
        };
        Script {
            conn: Connection::new(params, Arc::new(config), t0),
            t0,
            buf: Vec::new(),
        }
    }

    /// The instant `at` after the script's epoch.
    pub(super) fn at(&self, at: Duration) -> Instant {
        self.t0 + at
    }

    /// The peer's datagram `datagram` arrives at `at`.
    pub(super) fn feed(&mut self, at: Duration, datagram: &[u8]) {
        self.conn
            .handle_datagram(self.t0 + at, peer_addr(), datagram);
    }

    /// At `at`, the timers due fire and everything the connection wants to
    /// send is drained through `poll_transmit`: it must be exactly
    /// `expected`, in order.
    #[track_caller]
    pub(super) fn expect(&mut self, at: Duration, expected: &[Vec<u8>]) {
        let now = self.t0 + at;
        self.conn.handle_timeout(now);
        let mut out = Vec::new();
        while let Some(t) = self.conn.poll_transmit(now, &mut self.buf) {
            assert_eq!(t.destination, peer_addr());
            assert_eq!(t.size, self.buf.len());
            out.push(self.buf.clone());
            assert!(out.len() <= 1000, "poll_transmit never returns None");
        }
        assert_same(at, &out, expected);
    }

    /// As [`expect`](Self::expect), through `poll_transmit_control`.
    #[track_caller]
    pub(super) fn expect_control(&mut self, at: Duration, expected: &[Vec<u8>]) {
        let out = self.controls(at);
        assert_same(at, &out, expected);
    }

    /// At `at`, the timers due fire and the control packets the connection
    /// wants to send are drained through `poll_transmit_control`.
    #[track_caller]
    pub(super) fn controls(&mut self, at: Duration) -> Vec<Vec<u8>> {
        let now = self.t0 + at;
        self.conn.handle_timeout(now);
        let mut out = Vec::new();
        while let Some(t) = self.conn.poll_transmit_control(now, &mut self.buf) {
            assert_eq!(t.kind, TransmitKind::Control);
            out.push(self.buf.clone());
            assert!(
                out.len() <= 1000,
                "poll_transmit_control never returns None"
            );
        }
        out
    }
}

pub(super) fn peer_addr() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 9000).into()
}

/// Compares datagrams byte for byte; on a mismatch shows both lists decoded.
#[track_caller]
fn assert_same(at: Duration, got: &[Vec<u8>], want: &[Vec<u8>]) {
    if got != want {
        let show = |list: &[Vec<u8>]| {
            list.iter()
                .map(|d| format!("  {:?}", packet::decode(d)))
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "at {at:?}:\n sent:\n{}\n expected:\n{}",
            show(got),
            show(want)
        );
    }
}

/// Microseconds since the connection started, as a wire timestamp.
pub(super) fn ts(at: Duration) -> u32 {
    at.as_micros() as u32
}

pub(super) fn control(at: Duration, control: Control<'_>) -> Vec<u8> {
    let mut d = Vec::new();
    ControlPacket {
        timestamp: ts(at),
        dest: PEER,
        control,
    }
    .encode(&mut d);
    d
}

/// A data packet from the peer: `len` bytes, one message of its own.
pub(super) fn data_in(seq: SeqNumber, len: usize) -> Vec<u8> {
    let header = DataHeader {
        seq,
        position: PacketPosition::Only,
        in_order: false,
        msg: MsgNumber::FIRST,
        timestamp: 0,
        dest: LOCAL,
    };
    let mut d = Vec::new();
    packet::encode_data(&header, &vec![0xAB; len], &mut d);
    d
}

/// Our data packet carrying `payload`, the first message of a stream.
pub(super) fn data_out(at: Duration, seq: SeqNumber, payload: &[u8]) -> Vec<u8> {
    let header = DataHeader {
        seq,
        position: PacketPosition::Only,
        in_order: false,
        msg: MsgNumber::FIRST,
        timestamp: ts(at),
        dest: PEER,
    };
    let mut d = Vec::new();
    packet::encode_data(&header, payload, &mut d);
    d
}

/// An ACK2 from the peer.
pub(super) fn ack2_in(ack_seq: u32) -> Vec<u8> {
    let mut d = Vec::new();
    ControlPacket {
        timestamp: 0,
        dest: LOCAL,
        control: Control::Ack2(AckSeqNumber::new(ack_seq)),
    }
    .encode(&mut d);
    d
}

/// A full (with `rates`) or medium ACK we send.
pub(super) fn ack(
    at: Duration,
    ack_seq: u32,
    ack: SeqNumber,
    (rtt_us, rtt_var_us): (u32, u32),
    available_buffer: u32,
    rates: Option<AckRates>,
) -> Vec<u8> {
    control(
        at,
        Control::Ack(Ack {
            ack_seq: AckSeqNumber::new(ack_seq),
            ack,
            rtt_us,
            rtt_var_us,
            available_buffer,
            rates,
        }),
    )
}

pub(super) fn light_ack(at: Duration, ack: SeqNumber) -> Vec<u8> {
    control(at, Control::LightAck { ack })
}

pub(super) fn keepalive(at: Duration) -> Vec<u8> {
    control(at, Control::KeepAlive)
}

/// A NAK we send, reporting the inclusive `ranges` (at most one full
/// payload of words).
pub(super) fn nak(at: Duration, ranges: &[(SeqNumber, SeqNumber)]) -> Vec<u8> {
    let mut d = Vec::new();
    let written = packet::encode_nak(ts(at), PEER, ranges.iter().copied(), FULL / 4, &mut d);
    assert_eq!(written, ranges.len());
    d
}

/// The receive window a default connection advertises with `held` packets
/// buffered: the capacity less one (UDT4 keeps one slot free).
pub(super) fn window(held: u32) -> u32 {
    8192 - held - 1
}

#[test]
fn full_ack_every_syn() {
    let mut s = Script::new(Config::default());
    s.feed(ms(1), &data_in(ISN, FULL));
    // Full-size data does not ask for an ACK at once: the ACK timer runs
    // one SYN (10 ms) from the connection's start.
    s.expect(us(9_999), &[]);
    s.expect(
        ms(10),
        &[ack(
            ms(10),
            1,
            ISN.next(),
            (RTT0, VAR0),
            window(1),
            Some(INITIAL_RATES),
        )],
    );
    s.feed(ms(12), &data_in(ISN.add(1), FULL));
    s.feed(ms(13), &data_in(ISN.add(2), FULL));
    // The next ACK waits for the next SYN after the last one, and is full
    // again (rates included) because a whole SYN has passed.
    s.expect(us(19_999), &[]);
    s.expect(
        ms(20),
        &[ack(
            ms(20),
            2,
            ISN.add(3),
            (RTT0, VAR0),
            window(3),
            Some(INITIAL_RATES),
        )],
    );
    // Nothing new and the sender has not confirmed: the same ACK number is
    // repeated only after RTT + 4·RTTVar (300 ms), not every SYN.
    s.expect(ms(30), &[]);
    s.expect(us(319_999), &[]);
    s.expect(
        ms(320),
        &[ack(
            ms(320),
            3,
            ISN.add(3),
            (RTT0, VAR0),
            window(3),
            Some(INITIAL_RATES),
        )],
    );
}

/// Our default but with UDT4's ACK cadence from the first packet: rates
/// once per SYN, a light ACK at every self-clock point
/// (`Config::early_rate_reports` off), for the tests of that cadence.
pub(super) fn udt4_ack_cadence() -> Config {
    Config {
        early_rate_reports: false,
        ..Config::default()
    }
}

/// The first 32 ACKs carry the arrival speed at every self-clock point
/// instead of a light ACK, though less than a SYN passes: a UDT4 sender
/// averages the speed from 16 packets/s and paces at that average once it
/// leaves slow start, a few SYNs into a short path. Then UDT4's cadence.
#[test]
fn the_first_acks_report_the_arrival_speed_at_every_self_clock_point() {
    let mut s = Script::new(Config::default());
    let mut rates = Vec::new();
    // 40 self-clock points, one packet every 2 µs: 5.1 ms, within one SYN.
    for i in 0..40 * 64u32 {
        let at = us(1000 + 2 * u64::from(i));
        s.feed(at, &data_in(ISN.add(i), FULL));
        for d in s.controls(at) {
            match packet::decode(&d) {
                Ok(packet::Packet::Control(ControlPacket {
                    control: Control::Ack(a),
                    ..
                })) => {
                    assert_eq!(a.ack, ISN.add(i + 1), "at the packet that called for it");
                    rates.push(a.rates);
                    // Confirmed as a sender does, so ACKs keep their number.
                    s.feed(at, &ack2_in(a.ack_seq.value()));
                }
                Ok(packet::Packet::Control(ControlPacket {
                    control: Control::LightAck { ack },
                    ..
                })) => {
                    assert_eq!(ack, ISN.add(i + 1));
                    rates.push(None);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(rates.len(), 40, "one ACK per 64 packets");
    for (k, r) in rates.iter().enumerate().take(32) {
        let r = r.unwrap_or_else(|| panic!("ACK {k} carries no rates"));
        if k > 0 {
            // 2 µs between arrivals (UDT4's ceil(1e6 / 2)).
            assert_eq!(r.recv_rate, 500_000, "ACK {k}");
        }
    }
    assert!(
        rates[32..].iter().all(Option::is_none),
        "light ACKs again: {rates:?}"
    );
}

/// The early reports end at the first gap: a UDT4 sender leaves slow start
/// on its first loss report, and speeds measured across holes and late
/// packets are noisy.
#[test]
fn the_early_rate_reports_end_at_the_first_gap() {
    let mut s = Script::new(Config::default());
    let mut kinds = Vec::new();
    // 64 packets, one every 2 µs, ISN + 10 missing: a NAK, then the
    // self-clock point's light ACK naming the hole.
    for i in (0..65u32).filter(|&i| i != 10) {
        let at = us(1000 + 2 * u64::from(i));
        s.feed(at, &data_in(ISN.add(i), FULL));
        for d in s.controls(at) {
            match packet::decode(&d) {
                Ok(packet::Packet::Control(ControlPacket { control, .. })) => {
                    kinds.push(match control {
                        Control::Nak(_) => "nak".to_string(),
                        Control::LightAck { ack } => format!("light {}", ack.value()),
                        Control::Ack(a) => format!("ack {}", a.ack.value()),
                        other => format!("{other:?}"),
                    });
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(
        kinds,
        ["nak".to_string(), format!("light {}", ISN.add(10).value())]
    );
}

#[test]
fn light_ack_every_64_packets() {
    let mut s = Script::new(udt4_ack_cadence());
    let t = ms(1);
    for i in 0..63 {
        s.feed(t, &data_in(ISN.add(i), FULL));
    }
    s.expect_control(t, &[]);
    s.feed(t, &data_in(ISN.add(63), FULL));
    s.expect_control(t, &[light_ack(t, ISN.add(64))]);
    for i in 64..127 {
        s.feed(t, &data_in(ISN.add(i), FULL));
    }
    s.expect_control(t, &[]);
    s.feed(t, &data_in(ISN.add(127), FULL));
    s.expect_control(t, &[light_ack(t, ISN.add(128))]);
}

/// Feeds 64 full data packets `ISN + from ..` at `t`, skipping `ISN + 1`
/// (the stuck first missing packet of the stall tests).
fn feed_64_after_the_hole(s: &mut Script, t: Duration, from: u32) {
    for i in from..from + 64 {
        s.feed(t, &data_in(ISN.add(i), FULL));
    }
}

/// The stall of udt4-protocol.md §6.4: `ISN + 1` is missing, the ACK naming
/// it left at 10 ms and the sender confirmed it. Returns the script after
/// the 64 packets that follow the confirmation arrived, with the control
/// packets they caused still queued.
fn stall_confirmed(config: Config) -> Script {
    let mut s = Script::new(config);
    s.feed(ms(1), &data_in(ISN, FULL));
    s.feed(ms(1), &data_in(ISN.add(2), FULL));
    s.expect_control(ms(1), &[nak(ms(1), &[(ISN.add(1), ISN.add(1))])]);
    s.expect_control(
        ms(10),
        &[ack(
            ms(10),
            1,
            ISN.add(1),
            (RTT0, VAR0),
            window(1),
            Some(INITIAL_RATES),
        )],
    );
    // Before the confirmation the light ACK repeats the number (the ACK
    // may have been lost): 64 packets since the ACK, the hole still open.
    feed_64_after_the_hole(&mut s, ms(12), 3);
    s.expect_control(ms(12), &[light_ack(ms(12), ISN.add(1))]);
    s.feed(ms(20), &ack2_in(1));
    feed_64_after_the_hole(&mut s, ms(21), 67);
    s
}

#[test]
fn a_udt4_like_receiver_falls_silent_while_its_confirmed_first_loss_stays_missing() {
    let config = Config {
        stall_light_acks: false,
        periodic_nak: false,
        ..Config::default()
    };
    let mut s = stall_confirmed(config);
    // Confirmed and still stuck: no light ACK, no ACK at all, however
    // many packets arrive, until the number moves.
    s.expect_control(ms(21), &[]);
    feed_64_after_the_hole(&mut s, ms(30), 131);
    s.expect_control(ms(30), &[]);
    assert_eq!(s.conn.timer_deadline(Timer::Ack), None);
    s.expect_control(ms(400), &[]);
    // The hole is repaired: the ACK number moves, and the ACK timer (its
    // period long over) acknowledges everything at once.
    s.feed(ms(401), &data_in(ISN.add(1), FULL));
    s.conn.handle_timeout(s.at(ms(401)));
    let t = s.conn.poll_transmit_control(s.at(ms(401)), &mut s.buf);
    assert!(t.is_some(), "no ACK once the hole was repaired");
    match packet::decode(&s.buf) {
        Ok(packet::Packet::Control(c)) => match c.control {
            Control::Ack(a) => assert_eq!(a.ack, ISN.add(195)),
            other => panic!("expected an ACK, got {other:?}"),
        },
        other => panic!("expected an ACK, got {other:?}"),
    }
}

#[test]
fn our_receiver_keeps_repeating_light_acks_while_its_first_loss_stays_missing() {
    let mut s = stall_confirmed(Config::default());
    s.expect_control(ms(21), &[light_ack(ms(21), ISN.add(1))]);
    feed_64_after_the_hole(&mut s, ms(30), 131);
    s.expect_control(ms(30), &[light_ack(ms(30), ISN.add(1))]);
}

#[test]
fn immediate_nak_on_a_sequence_gap() {
    let mut s = Script::new(Config::default());
    s.feed(ms(1), &data_in(ISN, FULL));
    s.expect_control(ms(1), &[]);
    // Two packets missing: one range, sent at once, no timer involved.
    s.feed(ms(2), &data_in(ISN.add(3), FULL));
    s.expect_control(ms(2), &[nak(ms(2), &[(ISN.add(1), ISN.add(2))])]);
    // One packet missing: a single number.
    s.feed(ms(3), &data_in(ISN.add(5), FULL));
    s.expect_control(ms(3), &[nak(ms(3), &[(ISN.add(4), ISN.add(4))])]);
    // A retransmission filling part of a gap reveals no new gap.
    s.feed(ms(4), &data_in(ISN.add(1), FULL));
    s.expect_control(ms(4), &[]);
}

/// The NAK packets among the control packets the connection sends from
/// `from` to `to`, its timers run every millisecond.
fn naks_sent_between(s: &mut Script, from: Duration, to: Duration) -> Vec<Duration> {
    nak_lists_sent_between(s, from, to)
        .into_iter()
        .map(|(t, _)| t)
        .collect()
}

/// When a NAK left, and the losses it reported.
type SentNak = (Duration, Vec<(SeqNumber, SeqNumber)>);

/// As [`naks_sent_between`], with the losses each NAK reports.
fn nak_lists_sent_between(s: &mut Script, from: Duration, to: Duration) -> Vec<SentNak> {
    let mut naks = Vec::new();
    let mut t = from;
    while t <= to {
        let now = s.at(t);
        s.conn.handle_timeout(now);
        while s.conn.poll_transmit_control(now, &mut s.buf).is_some() {
            if let Ok(packet::Packet::Control(c)) = packet::decode(&s.buf) {
                if let Control::Nak(ranges) = c.control {
                    let ranges = ranges.iter().collect::<Result<_, _>>();
                    naks.push((t, ranges.expect("our own NAK decodes")));
                }
            }
        }
        t += ms(1);
    }
    naks
}

/// Regression: the periodic NAK counted its period from its own last
/// firing only, so a loss found after a quiet spell without losses was
/// reported twice at once, by the immediate NAK and by a periodic NAK long
/// overdue. A UDT4 sender takes the second report for a further loss in the
/// same congestion period (one more rate decrease, `CUDTCC::onLoss`) and
/// sends the packet twice.
#[test]
fn a_new_loss_after_a_quiet_spell_is_reported_once_per_period() {
    let mut s = Script::new(Config::default());
    s.feed(ms(1), &data_in(ISN, FULL));
    s.expect_control(ms(1), &[]);
    // Five seconds with nothing missing, then a gap.
    s.feed(ms(5000), &data_in(ISN.add(2), FULL));
    let naks = naks_sent_between(&mut s, ms(5000), ms(5299));
    assert_eq!(
        naks,
        vec![ms(5000)],
        "one NAK within RTT + 4 RTTVar of the loss"
    );
    // The loss is still missing a full period later: now it is repeated.
    let naks = naks_sent_between(&mut s, ms(5300), ms(6400));
    assert_eq!(naks.len(), 1, "the periodic NAK after a period: {naks:?}");
}

/// A periodic NAK repeats only the losses reported at least a period ago:
/// one found since the previous period had its immediate NAK less than a
/// period ago, and waits for the next.
#[test]
fn a_periodic_nak_repeats_only_losses_reported_a_period_ago() {
    let mut s = Script::new(Config::default());
    s.feed(ms(1), &data_in(ISN, FULL));
    s.feed(ms(2), &data_in(ISN.add(2), FULL));
    let mut naks = nak_lists_sent_between(&mut s, ms(2), ms(999));
    // A second loss while the first is still missing, 1 s later.
    s.feed(ms(1000), &data_in(ISN.add(4), FULL));
    naks.extend(nak_lists_sent_between(&mut s, ms(1000), ms(2700)));
    let first = (ISN.add(1), ISN.add(1));
    let second = (ISN.add(3), ISN.add(3));
    // Immediate NAKs, then the period (1.3 s here, from the first loss)
    // repeats the first loss only; the next repeats both.
    assert_eq!(
        naks,
        vec![
            (ms(2), vec![first]),
            (ms(1000), vec![second]),
            (ms(1302), vec![first]),
            (ms(2602), vec![first, second]),
        ]
    );
}

/// Regression: a periodic NAK queued while its losses were still missing,
/// and encoded after their retransmissions arrived, left as a NAK without
/// a single loss; UDT4 reads the first entry of a NAK whatever its length
/// (`CUDTCC::onLoss`), so it took whatever its buffer held for a loss.
#[test]
fn a_periodic_nak_whose_losses_arrived_meanwhile_is_not_sent() {
    let mut s = Script::new(Config::default());
    s.feed(ms(1), &data_in(ISN, FULL));
    s.feed(ms(2), &data_in(ISN.add(2), FULL));
    assert_eq!(naks_sent_between(&mut s, ms(2), ms(1301)), vec![ms(2)]);
    // The period ends: the NAK is queued, not yet sent ...
    s.conn.handle_timeout(s.at(ms(1302)));
    // ... when the retransmission arrives.
    s.feed(ms(1302), &data_in(ISN.add(1), FULL));
    let now = s.at(ms(1302));
    while s.conn.poll_transmit_control(now, &mut s.buf).is_some() {
        match packet::decode(&s.buf) {
            Ok(packet::Packet::Control(c)) => {
                assert!(!matches!(c.control, Control::Nak(_)), "sent {c:?}")
            }
            other => panic!("expected a control packet, got {other:?}"),
        }
    }
    assert_eq!(s.conn.stats().naks_sent, 1);
}

/// A receiver whose RTT is measured at 20 ms (its ACK at 10 ms confirmed
/// at 30 ms), with `ISN` received.
fn receiver_with_a_20ms_rtt() -> Script {
    let mut s = Script::new(Config::default());
    s.feed(ms(1), &data_in(ISN, FULL));
    assert_eq!(naks_sent_between(&mut s, ms(1), ms(29)), vec![]);
    s.feed(ms(30), &ack2_in(1));
    s
}

/// A data packet from the peer stamped `sent` (the sender's clock, µs).
fn data_in_sent(seq: SeqNumber, sent: u32) -> Vec<u8> {
    let mut d = data_in(seq, FULL);
    d[8..12].copy_from_slice(&sent.to_be_bytes());
    d
}

/// A gap at `ISN + 1` revealed at 40 ms by `ISN + 2` (stamped 40 000 µs),
/// and `ISN + 1` arriving at 41 ms stamped `sent`; returns when NAKs left
/// from 40 to 49 ms.
fn one_filled_gap(s: &mut Script, sent: u32) -> Vec<Duration> {
    s.feed(ms(40), &data_in_sent(ISN.add(2), 40_000));
    let mut naks = naks_sent_between(s, ms(40), ms(40));
    s.feed(ms(41), &data_in_sent(ISN.add(1), sent));
    naks.extend(naks_sent_between(s, ms(41), ms(49)));
    naks
}

/// A packet overtaken by a later one (the sender stamped it earlier than
/// the packet that revealed its gap) opens the receiver's reordering
/// window: a new gap's NAK waits that delay and a quarter, and is not sent
/// at all when the overtaken packet arrives within it. Before, every
/// reordered packet cost a NAK and a spurious retransmission, and the
/// model-based controller took them for loss: through udt-relay with 1 ms
/// of jitter (no loss) a 300 Mbit/s path carried 2 Mbit/s.
#[test]
fn an_overtaken_packet_opens_a_reordering_window_that_holds_the_nak() {
    let mut s = receiver_with_a_20ms_rtt();
    // Stamped 0.1 ms before the packet that revealed its gap, 1 ms late:
    // NAKed at once (no window yet), and the window is now 1.25 ms.
    assert_eq!(one_filled_gap(&mut s, 39_900), vec![ms(40)]);
    // A packet 0.5 ms late costs no NAK.
    s.feed(ms(50), &data_in_sent(ISN.add(4), 50_000));
    assert_eq!(naks_sent_between(&mut s, ms(50), ms(50)), vec![]);
    s.feed(us(50_500), &data_in_sent(ISN.add(3), 49_900));
    assert_eq!(naks_sent_between(&mut s, ms(51), ms(59)), vec![]);
    // A packet really missing is NAKed once the window passed.
    s.feed(ms(60), &data_in_sent(ISN.add(6), 60_000));
    assert_eq!(
        nak_lists_sent_between(&mut s, ms(60), ms(69)),
        vec![(ms(62), vec![(ISN.add(5), ISN.add(5))])]
    );
}

/// A missing packet stamped after the packet that revealed its gap was
/// resent, however soon it arrives: no reordering window, every NAK leaves
/// at once, as UDT4's.
#[test]
fn a_retransmission_leaves_naks_immediate() {
    let mut s = receiver_with_a_20ms_rtt();
    assert_eq!(one_filled_gap(&mut s, 40_500), vec![ms(40)]);
    s.feed(ms(50), &data_in_sent(ISN.add(4), 50_000));
    assert_eq!(naks_sent_between(&mut s, ms(50), ms(50)), vec![ms(50)]);
}

#[test]
fn periodic_nak_repeats_the_loss_list() {
    let mut s = Script::new(Config::default());
    s.feed(ms(1), &data_in(ISN, FULL));
    s.feed(ms(2), &data_in(ISN.add(3), FULL));
    let lost = [(ISN.add(1), ISN.add(2))];
    s.expect(ms(2), &[nak(ms(2), &lost)]);
    // The ACK timer acknowledges up to the first loss meanwhile.
    s.expect(
        ms(10),
        &[ack(
            ms(10),
            1,
            ISN.next(),
            (RTT0, VAR0),
            window(1),
            Some(INITIAL_RATES),
        )],
    );
    // The NAK period is RTT + 4·RTTVar (300 ms) plus the time to receive
    // the 2 lost packets at the measured arrival speed (1 packet/s), capped
    // at 1 s: 1.3 s after the immediate NAK reported the loss, and again
    // one period later, for as long as the loss lasts.
    assert_eq!(
        naks_sent_between(&mut s, ms(11), ms(2700)),
        vec![ms(1302), ms(2602)]
    );
    // Once the retransmissions arrive, the loss list is empty: no more NAKs.
    s.feed(ms(2701), &data_in(ISN.add(1), FULL));
    s.feed(ms(2701), &data_in(ISN.add(2), FULL));
    assert_eq!(s.conn.timer_deadline(Timer::Nak), None);
    assert_eq!(naks_sent_between(&mut s, ms(2701), ms(5000)), vec![]);
}

#[test]
fn exp_backs_off_and_retransmits_unacknowledged_data() {
    let mut s = Script::new(Config::default());
    let payload = [0x5A; 100];
    assert_eq!(s.conn.write(&payload), Ok(100));
    s.expect(ms(0), &[data_out(ms(0), ISN, &payload)]);
    // One ACK period and 2.5 ms of quiet later, a keep-alive nudges the
    // peer's timers (a UDT4 receiver runs them only when something
    // arrives); once, since the peer stays silent.
    s.expect(us(12_499), &[]);
    s.expect(us(12_500), &[keepalive(us(12_500))]);
    assert_eq!(s.conn.stats().ack_nudges_sent, 1);
    // The n-th expiry comes n·(RTT + 4·RTTVar + SYN) = n·310 ms after the
    // previous one (UDT4 checkTimers; at least n·300 ms), and each resends
    // everything unacknowledged.
    let mut at = ms(0);
    for n in 1..=3u64 {
        at += ms(310 * n);
        s.expect(at - us(1), &[]);
        s.expect(at, &[data_out(at, ISN, &payload)]);
        assert_eq!(s.conn.stats().timeouts, n);
    }
    assert_eq!(at, ms(1860));
    // An ACK of everything stops the timer: only keep-alives remain.
    // Empty: the peer has read everything (8192 − 1), so the ACK is
    // confirmed at once (see `Sender::withholds_ack2`).
    s.feed(ms(1900), &ack_in_with_window(1, ISN.next(), 8191));
    s.expect(
        ms(1900),
        &[control(ms(1900), Control::Ack2(AckSeqNumber::new(1)))],
    );
    assert_eq!(s.conn.timer_deadline(Timer::Exp), None);
    s.expect(ms(2899), &[]);
    s.expect(ms(2900), &[keepalive(ms(2900))]);
    assert_eq!(s.conn.stats().timeouts, 3);
}

#[test]
fn the_first_packet_after_a_quiet_spell_starts_the_timeout_afresh() {
    // Connected at 0, nothing heard from the peer since; the application
    // writes at 500 ms. The EXP interval (310 ms here) counts from the
    // packet, not from the last packet heard (0), which would have resent
    // it at once and counted a timeout on a healthy connection (a thousand
    // connections opened before their transfers began saw ~650 of them).
    let mut s = Script::new(Config::default());
    s.expect(ms(500), &[]);
    let payload = [0x33; 100];
    assert_eq!(s.conn.write(&payload), Ok(100));
    s.expect(ms(500), &[data_out(ms(500), ISN, &payload)]);
    assert_eq!(s.conn.timer_deadline(Timer::Exp), Some(s.at(ms(810))));
    // (The ACK nudge of a quiet line, once.)
    s.expect(us(512_500), &[keepalive(us(512_500))]);
    s.expect(ms(809), &[]);
    assert_eq!(s.conn.stats().timeouts, 0);
    // A real silence still times it out, one interval after it left.
    s.expect(ms(810), &[data_out(ms(810), ISN, &payload)]);
    assert_eq!(s.conn.stats().timeouts, 1);
}

#[test]
fn ack2_gives_an_rtt_sample() {
    let mut s = Script::new(Config::default());
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
    // The ACK2 for ACK 1 arrives 20 ms after it: one sample of 20 ms,
    // the first, which replaces the initial 100 ms ± 50 ms (20 ms ± 10).
    s.feed(ms(30), &ack2_in(1));
    // It also confirms ACK number ISN+1: nothing to acknowledge now.
    s.expect(ms(30), &[]);
    assert_eq!(s.conn.timer_deadline(Timer::Ack), None);
    // A repeated ACK2 is no second sample.
    s.feed(ms(31), &ack2_in(1));
    s.feed(ms(32), &data_in(ISN.add(1), FULL));
    s.expect(
        ms(32),
        &[ack(
            ms(32),
            2,
            ISN.add(2),
            (20_000, 10_000),
            window(2),
            Some(INITIAL_RATES),
        )],
    );
}

#[test]
fn arrival_times_from_the_driver_set_the_reported_rates() {
    // The same 20 packets handed over at one instant (a receive batch),
    // but with the kernel's arrival times, 40 µs apart: the full ACK
    // reports 25 000 packets/s, not the 10^6 of packets 1 µs apart (one
    // packet pair is too few to move the capacity's median from 1000).
    let config = Config {
        recv_buffer_packets: 40,
        ..Config::default()
    };
    let mut s = Script::new(config);
    let t0 = s.t0;
    for i in 0..20u32 {
        s.conn.note_arrival(t0 + us(500 + 40 * u64::from(i)));
        s.feed(ms(2), &data_in(ISN.add(i), FULL));
    }
    let rates = AckRates {
        recv_rate: 25_000,
        link_capacity: 1000,
    };
    let ack1 = ack(ms(10), 1, ISN.add(20), (RTT0, VAR0), 19, Some(rates));
    s.expect(ms(10), &[ack1]);
    // A time after the handover, or a second old, is not believed: the
    // handover times (100 µs apart) count instead of one constant instant.
    for bad in [ms(60_000), ms(0)] {
        let mut s = Script::new(Config::default());
        let t0 = s.t0;
        for i in 0..20u32 {
            s.conn.note_arrival(t0 + bad);
            s.feed(
                ms(2_000) + us(100 * u64::from(i)),
                &data_in(ISN.add(i), FULL),
            );
        }
        assert_eq!(s.conn.stats().local_recv_rate_pps, 10_000, "hint {bad:?}");
    }
    // A time given for a datagram that was dropped (a wrong source) does
    // not date the next one.
    let mut s = Script::new(Config::default());
    let t0 = s.t0;
    let stranger: std::net::SocketAddr = "192.0.2.99:9".parse().unwrap();
    for i in 0..20u32 {
        let at = ms(2_000) + us(100 * u64::from(i));
        s.conn.note_arrival(t0 + ms(1_500));
        s.conn
            .handle_datagram(t0 + at, stranger, &data_in(ISN.add(i), FULL));
        s.feed(at, &data_in(ISN.add(i), FULL));
    }
    assert_eq!(s.conn.stats().local_recv_rate_pps, 10_000, "a stale time");
}

#[test]
fn window_update_ack_after_the_application_reads() {
    let config = Config {
        recv_buffer_packets: 40,
        ..udt4_ack_cadence()
    };
    let mut s = Script::new(config);
    for i in 0..20 {
        s.feed(ms(1), &data_in(ISN.add(i), FULL));
    }
    // 20 of 40 slots held, one kept free: 19 advertised, under 32. The
    // arrivals in one instant count as 1 µs apart: 10^6 packets/s.
    let burst = AckRates {
        recv_rate: 1_000_000,
        link_capacity: 1000,
    };
    let ack1 = ack(ms(10), 1, ISN.add(20), (RTT0, VAR0), 19, Some(burst));
    s.expect(ms(10), &[ack1]);
    // Reading a little leaves the window under 32: no update.
    let mut buf = vec![0u8; 5 * FULL];
    assert_eq!(s.conn.read(&mut buf), Ok(5 * FULL));
    s.expect(ms(11), &[]);
    // Reading the rest opens it to 39: an ACK goes at once, although its
    // ACK number is the one just sent and unconfirmed (a medium ACK: less
    // than a SYN since the last full one).
    let mut rest = vec![0u8; 15 * FULL];
    assert_eq!(s.conn.read(&mut rest), Ok(15 * FULL));
    s.expect(
        ms(12),
        &[ack(ms(12), 2, ISN.add(20), (RTT0, VAR0), 39, None)],
    );
    // The window stays open: later reads send no more updates, and the
    // unconfirmed ACK is repeated only after RTT + 4·RTTVar.
    s.expect(us(311_999), &[]);
    s.expect(
        ms(312),
        &[ack(ms(312), 3, ISN.add(20), (RTT0, VAR0), 39, Some(burst))],
    );
}

/// Regression: a periodic NAK dropped because the control queue was full
/// used to leave its "queued" flag set, so that no periodic NAK was ever
/// sent again on that connection.
#[test]
fn periodic_nak_survives_a_full_control_queue() {
    let mut s = Script::new(udt4_ack_cadence());
    s.feed(ms(1), &data_in(ISN, FULL));
    // Every other packet missing, and a driver that does not drain: the
    // immediate NAKs fill the control queue and the rest are dropped.
    let gaps = CONTROL_QUEUE_LIMIT as u32 + 4;
    for k in 1..=gaps {
        s.feed(ms(2), &data_in(ISN.add(2 * k), FULL));
    }
    // 260 NAKs and 4 light ACKs wanted the queue; 256 fit.
    let dropped = s.conn.stats().dropped.control_queue_full;
    assert_eq!(dropped, 8);
    // The periodic NAK falls due while the queue is still full: lost too.
    let due = s
        .conn
        .timer_deadline(Timer::Nak)
        .expect("losses are pending");
    s.conn.handle_timeout(due);
    assert_eq!(
        s.conn.stats().dropped.control_queue_full,
        dropped + 2,
        "the periodic NAK and the ACK"
    );
    let mut drained = 0;
    while s.conn.poll_transmit(due, &mut s.buf).is_some() {
        drained += 1;
    }
    assert_eq!(drained, CONTROL_QUEUE_LIMIT);
    // The next period reports the whole loss list again.
    let next = s
        .conn
        .timer_deadline(Timer::Nak)
        .expect("losses are pending");
    assert!(next > due);
    let at = next.duration_since(s.t0);
    let lost: Vec<_> = (1..=gaps)
        .map(|k| (ISN.add(2 * k - 1), ISN.add(2 * k - 1)))
        .collect();
    s.conn.handle_timeout(next);
    let mut sent = Vec::new();
    while s.conn.poll_transmit(next, &mut s.buf).is_some() {
        sent.push(s.buf.clone());
    }
    assert!(
        sent.contains(&nak(at, &lost)),
        "no periodic NAK after the queue drained: {:?}",
        sent.iter().map(|d| packet::decode(d)).collect::<Vec<_>>()
    );
}

/// A NAK from the peer reporting `ranges`.
pub(super) fn nak_in(ranges: &[(SeqNumber, SeqNumber)]) -> Vec<u8> {
    let mut d = Vec::new();
    packet::encode_nak(0, LOCAL, ranges.iter().copied(), FULL / 4, &mut d);
    d
}

/// Drains what is due at `at` and counts the retransmissions among it.
pub(super) fn retransmissions_at(s: &mut Script, at: Duration) -> usize {
    let now = s.t0 + at;
    s.conn.handle_timeout(now);
    let mut n = 0;
    while let Some(t) = s.conn.poll_transmit(now, &mut s.buf) {
        if t.kind == TransmitKind::Retransmit {
            n += 1;
        }
    }
    n
}

#[test]
fn a_report_older_than_the_retransmission_is_not_news() {
    // Our periodic NAK repeats the whole loss list, so a report of a
    // packet can arrive after the sender already retransmitted it and
    // before that retransmission could have reached the receiver. Sending
    // it again then is a duplicate, and counting it a second loss.
    let mut s = Script::new(Config::default());
    let payload = [0x5A; 100];
    assert_eq!(s.conn.write(&payload), Ok(100));
    s.expect(ms(0), &[data_out(ms(0), ISN, &payload)]);
    let report = nak_in(&[(ISN, ISN)]);
    s.feed(ms(5), &report);
    assert_eq!(retransmissions_at(&mut s, ms(5)), 1);
    assert_eq!(s.conn.stats().packets_reported_lost, 1);
    // The same report 1 ms later (the RTT is 100 ms): no news.
    s.feed(ms(6), &report);
    assert_eq!(retransmissions_at(&mut s, ms(6)), 0);
    assert_eq!(s.conn.stats().packets_reported_lost, 1);
    // A report more than a round trip after the retransmission means it
    // was lost too: retransmit again.
    s.feed(ms(150), &report);
    assert_eq!(retransmissions_at(&mut s, ms(150)), 1);
    assert_eq!(s.conn.stats().packets_reported_lost, 2);
    assert_eq!(s.conn.stats().packets_retransmitted, 2);
}

/// A full ACK from the peer naming `ack` as its first missing packet.
pub(super) fn ack_in(ack_seq: u32, ack: SeqNumber) -> Vec<u8> {
    let mut d = Vec::new();
    ControlPacket {
        timestamp: 0,
        dest: LOCAL,
        control: Control::Ack(Ack {
            ack_seq: AckSeqNumber::new(ack_seq),
            ack,
            rtt_us: 0,
            rtt_var_us: 0,
            available_buffer: 8000,
            rates: None,
        }),
    }
    .encode(&mut d);
    d
}

/// Three packets sent at once; a NAK at 5 ms reports the first lost and
/// it is resent then (the set-up of the tests of a lost retransmission).
fn first_packet_resent_at_5ms() -> Script {
    let mut s = Script::new(Config::default());
    let payload = [0x5A; 100];
    for _ in 0..3 {
        assert_eq!(s.conn.write(&payload), Ok(100));
    }
    s.conn.handle_timeout(s.t0);
    while s.conn.poll_transmit(s.t0, &mut s.buf).is_some() {}
    s.feed(ms(5), &nak_in(&[(ISN, ISN)]));
    assert_eq!(retransmissions_at(&mut s, ms(5)), 1);
    s
}

#[test]
fn a_hole_the_acks_keep_naming_is_resent_without_a_second_nak() {
    // A UDT4 receiver reports a loss once: when the retransmission is lost
    // too, its ACKs (full while unconfirmed, light every 64 packets) keep
    // naming the same first missing packet and nothing else says so. The
    // sender resends that packet once an ACK could have reported it,
    // instead of waiting for the EXP timer (which needs the peer silent).
    let mut s = first_packet_resent_at_5ms();
    // The RTT is UDT4's initial 100 ms (variance 50 ms): an ACK 295 ms
    // after the retransmission may still predate its arrival (the smoothed
    // RTT may lag a longer path).
    s.feed(ms(300), &ack_in(1, ISN));
    assert_eq!(retransmissions_at(&mut s, ms(300)), 0);
    // 415 ms after it left (more than 2 RTT + 4 RTTVar + the ACK interval,
    // and before EXP, 310 ms after the last packet heard at 300 ms): lost.
    s.feed(ms(420), &light_ack_in(ISN));
    assert_eq!(retransmissions_at(&mut s, ms(420)), 1);
    // Just resent: the next ACK naming it is no news.
    s.feed(ms(421), &ack_in(2, ISN));
    assert_eq!(retransmissions_at(&mut s, ms(421)), 0);
    assert_eq!(s.conn.stats().timeouts, 0, "EXP did not fire");
    assert_eq!(s.conn.stats().packets_retransmitted, 2);
}

#[test]
fn a_hole_is_resent_on_time_although_the_peer_fell_silent() {
    // As above, but the ACK at 300 ms is the last thing heard: a UDT4
    // receiver sends nothing at all once the sender confirmed the ACK
    // naming its stuck first missing packet, and a sender whose window is
    // full sends nothing that would draw a NAK. The head is resent when
    // its wait is over (2 RTT + 4 RTTVar + the ACK interval after it
    // left: 415 ms), by a timer, not at the EXP timeout (610 ms), which
    // would resend everything unacknowledged.
    let mut s = first_packet_resent_at_5ms();
    s.feed(ms(300), &ack_in(1, ISN));
    assert_eq!(retransmissions_at(&mut s, ms(300)), 0);
    assert_eq!(
        s.conn.timer_deadline(Timer::LossDetection),
        Some(s.at(ms(415) + us(1)))
    );
    assert_eq!(retransmissions_at(&mut s, ms(415)), 0);
    assert_eq!(retransmissions_at(&mut s, ms(416)), 1);
    assert_eq!(s.conn.stats().packets_presumed_lost, 1);
    assert_eq!(s.conn.stats().timeouts, 0, "EXP did not fire");
    // That resend may be lost as well, with the peer still silent:
    // nothing but another resend of the head can make it speak. It is due
    // after twice the wait (820 ms), then four times, and so on, rather
    // than never (the EXP timer, resending the whole window: measured
    // into libudt0 at 5 % loss, up to six such timeouts per transfer,
    // each 300 ms and a window of duplicates).
    assert_eq!(
        s.conn.timer_deadline(Timer::LossDetection),
        Some(s.at(ms(416 + 2 * 410) + us(1)))
    );
    // Hearing from the peer again (here an ACK still naming it) ends the
    // backoff: the next wait is the plain one.
    s.feed(ms(500), &ack_in(2, ISN));
    assert_eq!(retransmissions_at(&mut s, ms(500)), 0);
    assert_eq!(
        s.conn.timer_deadline(Timer::LossDetection),
        Some(s.at(ms(416 + 410) + us(1)))
    );
}

#[test]
fn an_unreported_head_is_resent_early_once_the_sender_can_send_nothing() {
    // The first window (16 packets) is out and nothing came back: the
    // sender can send nothing more. The first was lost and so was its
    // NAK; the peer's ACK at 300 ms names it and then, confirmed, the peer
    // falls silent. No new packet will draw a NAK, so the head is resent
    // after 2 RTT + 4 RTTVar + the ACK interval (410 ms), not UDT4's
    // 300 ms later (710 ms, after the EXP timer at 610 ms had resent the
    // whole window).
    let mut s = Script::new(Config::default());
    let data = vec![0x5Au8; FULL * 100];
    assert_eq!(s.conn.write(&data), Ok(data.len()));
    for step in 0..100 {
        assert_eq!(retransmissions_at(&mut s, us(50 * step)), 0);
    }
    assert_eq!(s.conn.stats().packets_sent, 16);
    s.feed(ms(300), &ack_in(1, ISN));
    assert_eq!(
        s.conn.timer_deadline(Timer::LossDetection),
        Some(s.at(ms(410) + us(1)))
    );
    assert_eq!(retransmissions_at(&mut s, ms(410)), 0);
    assert_eq!(retransmissions_at(&mut s, ms(411)), 1);
    assert_eq!(s.conn.stats().packets_presumed_lost, 1);
    assert_eq!(s.conn.stats().timeouts, 0, "EXP did not fire");
}

/// One data packet that left: its number (from the ISN), when, and
/// whether it was a retransmission.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Sent {
    pub(super) n: u32,
    pub(super) at: Duration,
    pub(super) retransmitted: bool,
}

/// Polls the connection every 50 µs over `[from, to)` and returns the data
/// packets that left, in order.
pub(super) fn drive(s: &mut Script, from: Duration, to: Duration) -> Vec<Sent> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let now = s.t0 + at;
        s.conn.handle_timeout(now);
        while let Some(t) = s.conn.poll_transmit(now, &mut s.buf) {
            if t.kind != TransmitKind::Control {
                let seq = u32::from_be_bytes([s.buf[0], s.buf[1], s.buf[2], s.buf[3]]);
                out.push(Sent {
                    n: seq - ISN.value(),
                    at,
                    retransmitted: t.kind == TransmitKind::Retransmit,
                });
            }
        }
        at += Duration::from_micros(50);
    }
    out
}

/// The numbers of the retransmissions among `sent`, in order.
pub(super) fn retransmitted(sent: &[Sent]) -> Vec<u32> {
    sent.iter()
        .filter(|s| s.retransmitted)
        .map(|s| s.n)
        .collect()
}

/// A light ACK from the peer.
pub(super) fn light_ack_in(ack: SeqNumber) -> Vec<u8> {
    let mut d = Vec::new();
    ControlPacket {
        timestamp: 0,
        dest: LOCAL,
        control: Control::LightAck { ack },
    }
    .encode(&mut d);
    d
}

/// The model-based controller's send quantum: packets leave two per pacing
/// slot, and the slot then moves two periods on, so the rate is the
/// period's. (The packet pair 16n, 16n+1 still leaves back to back, so its
/// slot carries three.)
#[test]
fn bbr_sends_two_packets_per_pacing_slot() {
    let mut s = Script::new(Config::default());
    let data = vec![0x33u8; FULL * 16];
    assert_eq!(s.conn.write(&data), Ok(data.len()));
    let mut groups: Vec<(Duration, usize)> = Vec::new();
    let mut at = ms(0);
    while at < ms(5) {
        let now = s.t0 + at;
        s.conn.handle_timeout(now);
        while let Some(t) = s.conn.poll_transmit(now, &mut s.buf) {
            if t.kind == TransmitKind::Control {
                continue;
            }
            match groups.last_mut() {
                Some((when, n)) if *when == at => *n += 1,
                _ => groups.push((at, 1)),
            }
        }
        at += us(5);
    }
    let sizes: Vec<usize> = groups.iter().map(|g| g.1).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 16, "{groups:?}");
    // Pairs, but for the slot of the packet pair (16n, 16n+1 and one
    // more) and a last one left alone.
    let body = &sizes[..sizes.len() - 1];
    assert!(body.iter().all(|&n| n == 2 || n == 3), "{groups:?}");
    assert!(body.iter().filter(|&&n| n == 3).count() <= 1, "{groups:?}");
    // Two periods between slots (the poll's 5 µs granularity aside).
    let period = s.conn.stats().send_period;
    for w in groups.windows(2).skip(1) {
        let gap = w[1].0 - w[0].0;
        assert!(
            gap + us(5) >= 2 * period && gap <= 2 * period + us(5),
            "gap {gap:?}, period {period:?}: {groups:?}"
        );
    }
}

/// A tail loss: the last 32 packets of a transfer are lost, so no later
/// packet draws a NAK, and the peer answers every repair with an ACK
/// naming the next missing packet (no SACK) while its repeated ACKs keep
/// EXP quiet. Each repair that ends where the next head begins doubles the
/// next: the tail in six round trips, not 32.
#[test]
fn a_lost_tail_is_repaired_in_doubling_bursts() {
    let mut s = Script::new(Config::default());
    let data = vec![0x44u8; FULL * 48];
    assert_eq!(s.conn.write(&data), Ok(data.len()));
    let resent = |s: &mut Script, from: Duration, to: Duration| retransmitted(&drive(s, from, to));
    // The first window arrives and is acknowledged; the rest leaves and
    // is lost whole.
    assert!(resent(&mut s, ms(0), ms(20)).is_empty());
    s.feed(ms(20), &ack_in(1, ISN.add(16)));
    assert!(resent(&mut s, ms(20), ms(100)).is_empty());
    assert_eq!(s.conn.stats().packets_sent, 48);
    // The peer is there but got nothing more; the head's own timer
    // resends it.
    let mut first = Vec::new();
    for step in 1..6 {
        s.feed(ms(100 * step), &light_ack_in(ISN.add(16)));
        first.extend(resent(&mut s, ms(100 * step), ms(100 * step + 100)));
    }
    assert_eq!(first, vec![16]);
    // Each repair arrives; the ACK names the packet after it.
    let mut bursts = Vec::new();
    for (i, ack) in [17u32, 19, 23, 31, 47].into_iter().enumerate() {
        let at = ms(600 + 50 * i as u64);
        s.feed(at, &ack_in(i as u32 + 2, ISN.add(ack)));
        bursts.push(resent(&mut s, at, at + ms(50)));
    }
    assert_eq!(
        bursts,
        vec![
            vec![17, 18],
            (19..23).collect(),
            (23..31).collect(),
            (31..47).collect(),
            vec![47],
        ]
    );
    assert_eq!(s.conn.stats().timeouts, 0, "not by EXP");
}

/// A full or medium ACK from the peer (no rate fields) still carrying the
/// initial RTT, reporting `available_buffer` packets free.
pub(super) fn ack_in_with_window(ack_seq: u32, ack: SeqNumber, available_buffer: u32) -> Vec<u8> {
    control_in(Control::Ack(Ack {
        ack_seq: AckSeqNumber::new(ack_seq),
        ack,
        rtt_us: RTT0,
        rtt_var_us: VAR0,
        available_buffer,
        rates: None,
    }))
}

/// A control packet from the peer.
pub(super) fn control_in(control: Control<'_>) -> Vec<u8> {
    let mut d = Vec::new();
    ControlPacket {
        timestamp: 0,
        dest: LOCAL,
        control,
    }
    .encode(&mut d);
    d
}

#[test]
fn a_quiet_line_with_data_in_flight_nudges_the_peer_once_per_silence() {
    // A UDT4 receiver runs its ACK timer only when one of our datagrams
    // arrives, or on a sweep every 100 ms: a sender that sent all it may
    // and waits quietly hears the ACK that late unless it sends something.
    // With nothing in flight there is nothing to nudge for.
    let mut s = Script::new(Config::default());
    assert_eq!(s.conn.timer_deadline(Timer::AckNudge), None);
    s.expect(ms(5), &[]);
    let payload = [0x44; 100];
    assert_eq!(s.conn.write(&payload), Ok(100));
    s.expect(ms(5), &[data_out(ms(5), ISN, &payload)]);
    // An ACK period and a 2.5 ms margin after the line fell quiet.
    assert_eq!(
        s.conn.timer_deadline(Timer::AckNudge),
        Some(s.at(us(17_500)))
    );
    s.expect(us(17_499), &[]);
    s.expect(us(17_500), &[keepalive(us(17_500))]);
    // Once per silence: a peer that stays silent is the EXP timer's.
    assert_eq!(s.conn.timer_deadline(Timer::AckNudge), None);
    s.expect(ms(100), &[]);
    // Hearing from the peer re-arms it.
    s.feed(ms(130), &control_in(Control::KeepAlive));
    assert_eq!(
        s.conn.timer_deadline(Timer::AckNudge),
        Some(s.at(us(142_500)))
    );
    s.expect(us(142_500), &[keepalive(us(142_500))]);
    // An ACK of everything (its peer has read it all): nothing in flight.
    s.feed(ms(150), &ack_in_with_window(1, ISN.next(), 8191));
    s.expect(
        ms(150),
        &[control(ms(150), Control::Ack2(AckSeqNumber::new(1)))],
    );
    assert_eq!(s.conn.timer_deadline(Timer::AckNudge), None);
    assert_eq!(s.conn.stats().ack_nudges_sent, 2);
    assert_eq!(s.conn.stats().keepalives_sent, 0);
}

#[test]
fn a_writer_of_a_message_that_did_not_fit_is_due_only_once_it_fits() {
    // A fixed 32-packet send buffer: room worth a wake-up is 8 packets.
    let mut config = Config::default();
    config.send_buffer_packets = 32;
    config.memory_cap = 2 * 32 * u64::from(config.mss);
    let mut s = Script::message(config);
    let now = s.at(ms(0));
    for _ in 0..32 {
        s.conn.send_msg(now, &[1u8; FULL], None, false).unwrap();
    }
    let big = vec![2u8; 20 * FULL];
    assert!(matches!(
        s.conn.send_msg(now, &big, None, false),
        Err(WriteError::WouldBlock)
    ));
    assert!(!s.conn.writer_due());
    // Paced out over the first 20 ms (the initial window is 16).
    let mut sent = 0;
    for t in 0..20_000 {
        let at = s.at(us(t));
        while s.conn.poll_transmit(at, &mut s.buf).is_some() {
            sent += 1;
        }
    }
    assert!(
        sent >= 16,
        "only {sent} packets left: the test shows nothing"
    );
    // Ten packets free: room worth a stream write, not this message.
    s.feed(ms(21), &ack_in(1, ISN.add(10)));
    assert_eq!(s.conn.send_buffer_free() / FULL, 10);
    assert!(!s.conn.writer_due(), "due with room for 10 of 20 packets");
    // Twenty: the message fits, and the writer is due.
    s.feed(ms(22), &ack_in(2, ISN.add(16)));
    for t in 22_000..40_000 {
        let at = s.at(us(t));
        while s.conn.poll_transmit(at, &mut s.buf).is_some() {}
    }
    s.feed(ms(41), &ack_in(3, ISN.add(20)));
    assert!(s.conn.writer_due());
    s.conn.send_msg(s.at(ms(41)), &big, None, false).unwrap();
    assert!(!s.conn.writer_due(), "the buffer is full again");
}
