//! Hostile input against an established connection: random bytes,
//! truncations, impossible ACKs and NAKs, drop requests spanning 2^31.
//! Nothing may panic, work stays bounded, every packet is counted, and the
//! connection still carries data byte-exact afterwards.

mod common;

use std::time::Duration;

use common::{init_logs, link, stream_bytes, stream_transfer, Pair};
use udt_core::packet::{
    self, Ack, AckRates, Control, ControlPacket, DataHeader, Packet, PacketPosition,
};
use udt_core::rng::Rng;
use udt_core::sim::Loss;
use udt_core::{AckSeqNumber, Config, MsgNumber, SeqNumber, SocketId};

fn control(dest: SocketId, control: Control<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    Packet::Control(ControlPacket {
        timestamp: 0,
        dest,
        control,
    })
    .encode(&mut buf);
    buf
}

fn hostile_datagrams(dest: SocketId, rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    // Random garbage of every length up to 2 KB, with the right dest id so it is routed.
    for len in 0..2048usize {
        let mut d: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
        if len >= 16 {
            d[12..16].copy_from_slice(&dest.0.to_be_bytes());
        }
        v.push(d);
    }
    let far = SeqNumber::new(rng.next_u32());
    // ACKs beyond anything sent, full and light.
    for ack in [
        far,
        far.add(1 << 30),
        SeqNumber::new(0),
        SeqNumber::new(SeqNumber::MAX),
    ] {
        v.push(control(
            dest,
            Control::Ack(Ack {
                ack_seq: AckSeqNumber::new(rng.next_u32()),
                ack,
                rtt_us: u32::MAX,
                rtt_var_us: u32::MAX,
                available_buffer: u32::MAX,
                rates: Some(AckRates {
                    recv_rate: u32::MAX,
                    link_capacity: u32::MAX,
                }),
            }),
        ));
        v.push(control(dest, Control::LightAck { ack }));
    }
    // NAKs: reversed ranges, ranges beyond what was sent, a 2^30-wide range,
    // a dangling range start.
    let mut nak = Vec::new();
    packet::encode_nak(0, dest, [(far.add(10), far)].into_iter(), 64, &mut nak);
    v.push(nak.clone());
    packet::encode_nak(0, dest, [(far, far.add(1 << 30))].into_iter(), 64, &mut nak);
    v.push(nak.clone());
    packet::encode_nak(
        0,
        dest,
        [(SeqNumber::new(0), SeqNumber::new(SeqNumber::MAX))].into_iter(),
        64,
        &mut nak,
    );
    v.push(nak.clone());
    let mut dangling = nak.clone();
    dangling.truncate(20);
    dangling[16] |= 0x80;
    v.push(dangling);
    // Message drop requests spanning 2^31 and reversed.
    for (first, last) in [
        (SeqNumber::new(0), SeqNumber::new(SeqNumber::MAX)),
        (far, far.sub(1)),
        (far, far.add((1 << 30) - 1)),
    ] {
        v.push(control(
            dest,
            Control::MsgDropRequest {
                msg: MsgNumber::new(rng.next_u32()),
                first,
                last,
            },
        ));
    }
    // Unknown and user-defined control types, an ACK2 for an ACK never sent.
    v.push(control(
        dest,
        Control::Unknown {
            type_code: 9,
            info: 1,
        },
    ));
    v.push(control(
        dest,
        Control::UserDefined {
            ext_type: 7,
            info: 0,
            body: &[1, 2, 3, 4],
        },
    ));
    v.push(control(dest, Control::Ack2(AckSeqNumber::new(12345))));
    // Data far outside the window, and oversized data.
    let mut d = Vec::new();
    for seq in [far, far.add(1 << 29)] {
        packet::encode_data(
            &DataHeader {
                seq,
                position: PacketPosition::Only,
                in_order: false,
                msg: MsgNumber::new(1),
                timestamp: 0,
                dest,
            },
            &[0u8; 100],
            &mut d,
        );
        v.push(d.clone());
    }
    packet::encode_data(
        &DataHeader {
            seq: far,
            position: PacketPosition::Only,
            in_order: false,
            msg: MsgNumber::new(1),
            timestamp: 0,
            dest,
        },
        &[0u8; 9000],
        &mut d,
    );
    v.push(d);
    // Truncations of every valid packet above.
    let valid: Vec<Vec<u8>> = v[2048..].to_vec();
    for p in valid {
        for cut in 0..p.len() {
            v.push(p[..cut].to_vec());
        }
    }
    v
}

#[test]
fn hostile_datagrams_are_counted_and_harmless() {
    init_logs();
    let l = link(100, Duration::from_millis(5), Loss::None);
    let mut p = Pair::new(51, l.clone(), l, Config::default());
    let (a, b) = p.connect();
    // Some traffic first so the connection has state to corrupt.
    stream_bytes(
        &mut p.sim,
        (p.a, a),
        (p.b, b),
        1 << 20,
        Duration::from_secs(60),
    );
    stream_bytes(
        &mut p.sim,
        (p.b, b),
        (p.a, a),
        1 << 20,
        Duration::from_secs(60),
    );
    let mut rng = Rng::new(51);
    for (node, id, from) in [(p.a, a, p.b_addr), (p.b, b, p.a_addr)] {
        let before = p.sim.node(node).connection(id).unwrap().stats();
        let datagrams = hostile_datagrams(id, &mut rng);
        let n = datagrams.len();
        for d in &datagrams {
            let now = p.sim.now();
            p.sim
                .node_mut(node)
                .with_connection(id, |c| c.handle_datagram(now, from, d));
        }
        let after = p.sim.node(node).connection(id).unwrap().stats();
        let dropped = |s: &udt_core::stats::Stats| {
            let d = s.dropped;
            d.malformed + d.out_of_window + d.invalid_control + d.unknown_control + d.duplicate
        };
        assert!(
            dropped(&after) - dropped(&before) > (n as u64) / 2,
            "most hostile datagrams are counted as dropped: {:?}",
            after.dropped
        );
        // Wrong source address: dropped whatever it is.
        let now = p.sim.now();
        let stranger = "203.0.113.9:4000".parse().unwrap();
        p.sim
            .node_mut(node)
            .with_connection(id, |c| c.handle_datagram(now, stranger, &datagrams[2048]));
        let later = p.sim.node(node).connection(id).unwrap().stats();
        assert_eq!(later.dropped.wrong_source, after.dropped.wrong_source + 1);
        p.sim.poke(node);
    }
    // Random garbage decoded as a shutdown or error signal could end the
    // connection legitimately; only check data when both sides are alive.
    let alive = !p.sim.node(p.a).connection(a).unwrap().is_closed()
        && !p.sim.node(p.b).connection(b).unwrap().is_closed();
    if alive {
        stream_transfer(
            &mut p.sim,
            (p.a, a),
            (p.b, b),
            1 << 20,
            Duration::from_secs(60),
        );
    }
}

#[test]
fn forged_ack_and_nak_do_not_move_the_sender() {
    init_logs();
    let l = link(100, Duration::from_millis(5), Loss::None);
    let mut p = Pair::new(52, l.clone(), l, Config::default());
    // A known ISN makes `far` lie ahead of anything sent.
    let (a, b) = p.connect_with_isn(SeqNumber::new(1000));
    let far = SeqNumber::new(0x1234_5678);
    let ack = control(
        a,
        Control::Ack(Ack {
            ack_seq: AckSeqNumber::new(1),
            ack: far,
            rtt_us: 1,
            rtt_var_us: 1,
            available_buffer: 0,
            rates: None,
        }),
    );
    let mut nak = Vec::new();
    packet::encode_nak(0, a, [(far, far.add(1000))].into_iter(), 64, &mut nak);
    let mut reversed = Vec::new();
    packet::encode_nak(
        0,
        a,
        [(SeqNumber::new(1010), SeqNumber::new(1000))].into_iter(),
        64,
        &mut reversed,
    );
    let now = p.sim.now();
    let b_addr = p.b_addr;
    let before = p.sim.node(p.a).connection(a).unwrap().stats();
    p.sim.node_mut(p.a).with_connection(a, |c| {
        c.handle_datagram(now, b_addr, &ack);
        c.handle_datagram(now, b_addr, &nak);
        c.handle_datagram(now, b_addr, &reversed);
    });
    let after = p.sim.node(p.a).connection(a).unwrap().stats();
    assert_eq!(
        after.dropped.invalid_control,
        before.dropped.invalid_control + 3
    );
    assert_eq!(
        after.flow_window, before.flow_window,
        "a forged ACK must not shrink the window"
    );
    assert_eq!(after.packets_in_flight, 0);
    let idle = p.sim.node(p.a).connection(a).unwrap().next_send_time();
    assert_eq!(idle, None, "the forged NAK queued no retransmissions");
    p.sim.poke(p.a);
    stream_transfer(
        &mut p.sim,
        (p.a, a),
        (p.b, b),
        1 << 20,
        Duration::from_secs(60),
    );
}
