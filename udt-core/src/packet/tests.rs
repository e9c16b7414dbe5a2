//! Tests of the packet codec: the udt4-protocol.md §14 vectors byte for
//! byte, round trips of every variant, and hostile input.

use super::*;
use crate::rng::Rng;
use std::net::Ipv4Addr;

/// Big-endian bytes of a list of words.
fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_be_bytes()).collect()
}

fn control(dest: u32, control: Control<'_>) -> Packet<'_> {
    Packet::Control(ControlPacket {
        timestamp: 0,
        dest: SocketId(dest),
        control,
    })
}

fn encoded(p: &Packet<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    p.encode(&mut out);
    out
}

#[test]
fn vector_4_full_ack() {
    // udt4-protocol.md §14 vector 4: the first full ACK after one packet at
    // ISN 0x3039.
    let wire = words(&[
        0x8002_0000,
        0x0000_0001,
        0,
        0x0000_ABCD,
        0x0000_303A,
        0x0001_86A0,
        0x0000_C350,
        0x0000_1FFE,
        0x0000_0001,
        0x0000_03E8,
    ]);
    let expected = control(
        0xABCD,
        Control::Ack(Ack {
            ack_seq: AckSeqNumber::new(1),
            ack: SeqNumber::new(0x303A),
            rtt_us: 100_000,
            rtt_var_us: 50_000,
            available_buffer: 8190,
            rates: Some(AckRates {
                recv_rate: 1,
                link_capacity: 1000,
            }),
        }),
    );
    assert_eq!(decode(&wire), Ok(expected));
    assert_eq!(encoded(&expected), wire);
    assert_eq!(wire.len(), 40);

    // The medium form (32 bytes) has no rate fields.
    let medium = &wire[..32];
    let Ok(Packet::Control(ControlPacket {
        control: Control::Ack(ack),
        ..
    })) = decode(medium)
    else {
        panic!("medium ACK not decoded");
    };
    assert_eq!(ack.rates, None);
    assert_eq!(encoded(&control(0xABCD, Control::Ack(ack))), medium);
}

#[test]
fn light_ack_is_20_bytes() {
    let p = control(
        5,
        Control::LightAck {
            ack: SeqNumber::new(0x7FFF_FFFF),
        },
    );
    let wire = words(&[0x8002_0000, 0, 0, 5, 0x7FFF_FFFF]);
    assert_eq!(encoded(&p), wire);
    assert_eq!(decode(&wire), Ok(p));
}

#[test]
fn vector_5_keep_alive_and_shutdown() {
    // udt4-protocol.md §14 vector 5: 20 bytes each, one zero pad word.
    let dest = 0x1234_5678;
    let ka = words(&[0x8001_0000, 0, 0, dest, 0]);
    let sd = words(&[0x8005_0000, 0, 0, dest, 0]);
    assert_eq!(encoded(&control(dest, Control::KeepAlive)), ka);
    assert_eq!(encoded(&control(dest, Control::Shutdown)), sd);
    assert_eq!(decode(&ka), Ok(control(dest, Control::KeepAlive)));
    assert_eq!(decode(&sd), Ok(control(dest, Control::Shutdown)));
    // 16-byte forms (no pad word) are accepted too.
    assert_eq!(decode(&ka[..16]), Ok(control(dest, Control::KeepAlive)));
    assert_eq!(decode(&sd[..16]), Ok(control(dest, Control::Shutdown)));
}

#[test]
fn other_padded_types_are_20_bytes() {
    let cases = [
        (Control::CongestionWarning, [0x8004_0000, 0]),
        (Control::Ack2(AckSeqNumber::new(77)), [0x8006_0000, 77]),
        (Control::ErrorSignal { code: 4000 }, [0x8008_0000, 4000]),
        (
            Control::Unknown {
                type_code: 9,
                info: 3,
            },
            [0x8009_0000, 3],
        ),
    ];
    for (c, [w0, w1]) in cases {
        let p = control(1, c);
        let wire = words(&[w0, w1, 0, 1, 0]);
        assert_eq!(encoded(&p), wire, "{c:?}");
        assert_eq!(decode(&wire), Ok(p));
        assert_eq!(decode(&wire[..16]), Ok(p));
    }
}

#[test]
fn vector_8_data_packets() {
    // udt4-protocol.md §14 vector 8 and §2.1: send("abc") → word1 C0000001.
    let header = DataHeader {
        seq: SeqNumber::new(0x3039),
        position: PacketPosition::Only,
        in_order: false,
        msg: MsgNumber::new(1),
        timestamp: 1234,
        dest: SocketId(0x0A0B_0C0D),
    };
    let mut out = Vec::new();
    encode_data(&header, b"abc", &mut out);
    let mut wire = words(&[0x3039, 0xC000_0001, 1234, 0x0A0B_0C0D]);
    wire.extend_from_slice(b"abc");
    assert_eq!(out, wire);
    assert_eq!(
        decode(&wire),
        Ok(Packet::Data {
            header,
            payload: b"abc"
        })
    );

    // The word-1 values UDT4 produced for the other API calls (§2.1).
    let cases = [
        (PacketPosition::First, false, 2, 0x8000_0002u32),
        (PacketPosition::Middle, false, 2, 0x0000_0002),
        (PacketPosition::Last, false, 2, 0x4000_0002),
        (PacketPosition::Only, true, 2, 0xE000_0002),
        (PacketPosition::First, true, 3, 0xA000_0003),
        (PacketPosition::Middle, true, 3, 0x2000_0003),
        (PacketPosition::Last, true, 3, 0x6000_0003),
        (PacketPosition::Only, true, MsgNumber::MASK, 0xFFFF_FFFF),
    ];
    for (position, in_order, msg, word1) in cases {
        let h = DataHeader {
            position,
            in_order,
            msg: MsgNumber::new(msg),
            ..header
        };
        encode_data(&h, &[], &mut out);
        assert_eq!(out[4..8], word1.to_be_bytes(), "{h:?}");
        assert_eq!(
            decode(&out),
            Ok(Packet::Data {
                header: h,
                payload: &[]
            })
        );
    }
}

#[test]
fn data_at_the_sequence_wrap() {
    for raw in [0x7FFF_FFFF, 0, 0x7FFF_FFFE, 1] {
        let header = DataHeader {
            seq: SeqNumber::new(raw),
            position: PacketPosition::Middle,
            in_order: true,
            msg: MsgNumber::new(0x1FFF_FFFE),
            timestamp: u32::MAX,
            dest: SocketId(u32::MAX),
        };
        let mut out = Vec::new();
        encode_data(&header, &[0xFF; 3], &mut out);
        // Bit 31 of word 0 stays clear: it is a data packet.
        assert!(!is_control(&out));
        assert_eq!(out[..4], raw.to_be_bytes());
        let Ok(Packet::Data { header: h, payload }) = decode(&out) else {
            panic!("not data");
        };
        assert_eq!(h, header);
        assert_eq!(payload, [0xFF; 3]);
    }
}

#[test]
fn every_control_variant_round_trips() {
    let nak_body = words(&[0x8000_0001, 2, 0x7FFF_FFFF]);
    let hs = Handshake {
        version: 4,
        socket_type: 2,
        isn: SeqNumber::new(0x7FFF_FFF0),
        mss: 1500,
        flow_window: 8192,
        req_type: ReqType::RendezvousConnected,
        socket_id: SocketId(0x4000_0000),
        cookie: 0xCA1E_59B1,
        peer_ip: PeerIp::from_addr(Ipv4Addr::new(192, 0, 2, 7).into()),
    };
    let user_body = [1u8, 2, 3, 4, 5, 6, 7, 8];
    let controls = [
        Control::Handshake(hs),
        Control::KeepAlive,
        Control::LightAck {
            ack: SeqNumber::new(3),
        },
        Control::Ack(Ack {
            ack_seq: AckSeqNumber::new(0x7FFF_FFFF),
            ack: SeqNumber::new(0),
            rtt_us: 1,
            rtt_var_us: 2,
            available_buffer: 3,
            rates: None,
        }),
        Control::Ack(Ack {
            ack_seq: AckSeqNumber::new(1),
            ack: SeqNumber::new(0x7FFF_FFFF),
            rtt_us: u32::MAX,
            rtt_var_us: 0,
            available_buffer: 2,
            rates: Some(AckRates {
                recv_rate: 5,
                link_capacity: 6,
            }),
        }),
        Control::Nak(LossRanges::new(&nak_body).unwrap()),
        Control::CongestionWarning,
        Control::Shutdown,
        Control::Ack2(AckSeqNumber::new(12)),
        Control::MsgDropRequest {
            msg: MsgNumber::new(0x1FFF_FFFE),
            first: SeqNumber::new(0x7FFF_FFFE),
            last: SeqNumber::new(2),
        },
        Control::ErrorSignal { code: 4000 },
        Control::UserDefined {
            ext_type: 0xBEEF,
            info: 42,
            body: &user_body,
        },
        Control::UserDefined {
            ext_type: 0,
            info: 0,
            body: &[],
        },
        Control::Unknown {
            type_code: 0x7FFE,
            info: 1,
        },
        Control::Unknown {
            type_code: 9,
            info: 0,
        },
    ];
    let mut out = Vec::new();
    for (i, c) in controls.into_iter().enumerate() {
        let p = Packet::Control(ControlPacket {
            timestamp: 0x1000_0000 + i as u32,
            dest: SocketId(i as u32 * 7),
            control: c,
        });
        p.encode(&mut out);
        assert!(is_control(&out));
        assert_eq!(peek_dest(&out), Some(SocketId(i as u32 * 7)));
        assert_eq!(decode(&out), Ok(p), "variant {i}");
        assert_eq!(out.len(), HEADER_SIZE + c.body_len(), "variant {i}");
    }
    // The user-defined extended type sits in word 0's low 16 bits.
    Packet::Control(ControlPacket {
        timestamp: 0,
        dest: SocketId(0),
        control: controls[11],
    })
    .encode(&mut out);
    assert_eq!(out[..4], [0xFF, 0xFF, 0xBE, 0xEF]);
}

#[test]
fn handshake_packet_is_64_bytes() {
    let hs = Handshake {
        version: 4,
        socket_type: 1,
        isn: SeqNumber::new(0x3039),
        mss: 1500,
        flow_window: 25600,
        req_type: ReqType::Caller,
        socket_id: SocketId(0x1122_3344),
        cookie: 0,
        peer_ip: PeerIp::ZERO,
    };
    let mut a = Vec::new();
    hs.encode(0, SocketId(0), &mut a);
    let b = encoded(&control(0, Control::Handshake(hs)));
    assert_eq!(a, b);
    assert_eq!(a.len(), 64);
    // A longer body decodes (extra ignored); a shorter one does not.
    let mut long = a.clone();
    long.extend_from_slice(&[9; 4]);
    assert_eq!(decode(&long), Ok(control(0, Control::Handshake(hs))));
    assert_eq!(
        decode(&a[..63]),
        Err(DecodeError::BadLength {
            type_code: 0,
            len: 47
        })
    );
}

#[test]
fn bad_lengths_are_errors() {
    assert_eq!(decode(&[]), Err(DecodeError::TooShort));
    assert_eq!(decode(&[0x80; 15]), Err(DecodeError::TooShort));
    let ack_header = words(&[0x8002_0000, 1, 0, 1]);
    for len in [0usize, 1, 3, 5, 8, 12, 15] {
        let mut d = ack_header.clone();
        d.resize(HEADER_SIZE + len, 0);
        assert_eq!(
            decode(&d),
            Err(DecodeError::BadLength { type_code: 2, len }),
            "ACK body {len}"
        );
    }
    // 20-byte ACK body: medium (UDT4 would read past the end for rates).
    let mut d = ack_header.clone();
    d.resize(HEADER_SIZE + 20, 0);
    assert!(matches!(
        decode(&d),
        Ok(Packet::Control(ControlPacket {
            control: Control::Ack(Ack { rates: None, .. }),
            ..
        }))
    ));
    let nak = words(&[0x8003_0000, 0, 0, 1]);
    assert_eq!(
        decode(&nak),
        Err(DecodeError::BadLength {
            type_code: 3,
            len: 0
        })
    );
    let mut drop = words(&[0x8007_0000, 0, 0, 1, 5]);
    assert_eq!(
        decode(&drop),
        Err(DecodeError::BadLength {
            type_code: 7,
            len: 4
        })
    );
    drop.extend_from_slice(&words(&[9]));
    assert!(decode(&drop).is_ok());
    // Every error has a message.
    for e in [
        DecodeError::TooShort,
        DecodeError::BadLength {
            type_code: 2,
            len: 3,
        },
        DecodeError::DanglingRange,
        DecodeError::BadRangeEnd,
    ] {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn peek_and_flag_helpers() {
    assert_eq!(peek_dest(&[0; 15]), None);
    assert_eq!(
        peek_dest(&words(&[1, 2, 3, 0xDEAD_BEEF])),
        Some(SocketId(0xDEAD_BEEF))
    );
    assert!(!is_control(&[]));
    assert!(!is_control(&[0x7F]));
    assert!(is_control(&[0x80]));
}

#[test]
fn probe_heads_are_data_packets_numbered_16n() {
    assert!(is_probe_head(&words(&[32, 0, 0, 7])));
    assert!(is_probe_head(&words(&[0, 0, 0, 7])));
    assert!(!is_probe_head(&words(&[33, 0, 0, 7])));
    assert!(!is_probe_head(&words(&[47, 0, 0, 7])));
    // A control packet is never one, whatever its low bits.
    assert!(!is_probe_head(&words(&[0x8000_0000, 0, 0, 7])));
    assert!(!is_probe_head(&[0, 0, 0]));
}

#[test]
fn encoding_reuses_the_buffer() {
    let mut out = Vec::with_capacity(2048);
    let ptr = out.as_ptr();
    let header = DataHeader {
        seq: SeqNumber::new(1),
        position: PacketPosition::Only,
        in_order: false,
        msg: MsgNumber::FIRST,
        timestamp: 0,
        dest: SocketId(1),
    };
    for _ in 0..100 {
        encode_data(&header, &[7; 1456], &mut out);
        assert_eq!(out.len(), 1472);
        control(1, Control::KeepAlive).encode(&mut out);
        assert_eq!(out.len(), 20);
        encode_nak(
            0,
            SocketId(1),
            (0..200).map(|i| (SeqNumber::new(i * 3), SeqNumber::new(i * 3 + 1))),
            364,
            &mut out,
        );
        assert_eq!(out.len(), 16 + 364 * 4);
    }
    assert_eq!(out.as_ptr(), ptr, "the buffer was reallocated");
    assert_eq!(out.capacity(), 2048);
}

/// 100 000 random, truncated and mutated datagrams: decode must never panic,
/// and whatever decodes must re-encode to something that decodes the same.
#[test]
fn hostile_datagrams_never_panic() {
    let seed = 0x00DE_C0DE;
    let mut rng = Rng::new(seed);
    // Valid seeds to mutate, one per type.
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for code in 0..=9u32 {
        let mut d = words(&[0x8000_0000 | (code << 16), 1, 2, 3]);
        d.resize(16 + 48, 0);
        seeds.push(d);
    }
    seeds.push(words(&[0xFFFF_0001, 1, 2, 3, 4]));
    seeds.push(words(&[0x8003_0000, 0, 0, 1, 0x8000_0001, 0x8000_0002]));
    seeds.push(words(&[5, 0xC000_0001, 0, 1, 0x6162_6300]));
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let (mut decoded, mut rejected) = (0u32, 0u32);
    for case in 0..100_000u32 {
        buf.clear();
        match case % 3 {
            0 => {
                let len = rng.below(80) as usize;
                buf.extend((0..len).map(|_| rng.next_u32() as u8));
            }
            1 => {
                let s = &seeds[rng.below(seeds.len() as u64) as usize];
                buf.extend_from_slice(&s[..rng.below(s.len() as u64 + 1) as usize]);
            }
            _ => {
                let s = &seeds[rng.below(seeds.len() as u64) as usize];
                buf.extend_from_slice(s);
                for _ in 0..=rng.below(4) {
                    let i = rng.below(buf.len() as u64) as usize;
                    buf[i] ^= 1 << rng.below(8);
                }
                if rng.chance(0.3) {
                    let extra = rng.below(9) as usize;
                    buf.extend((0..extra).map(|_| rng.next_u32() as u8));
                }
            }
        }
        let Ok(p) = decode(&buf) else {
            rejected += 1;
            continue;
        };
        decoded += 1;
        if let Packet::Control(ControlPacket {
            control: Control::Nak(r),
            ..
        }) = &p
        {
            // Iteration terminates and stays bounded by the word count.
            assert!(
                r.iter().count() <= r.word_count(),
                "seed={seed:#x} case={case}"
            );
        }
        p.encode(&mut out);
        let again = decode(&out);
        // Pad words and ignored extras may differ; the meaning may not.
        match (p, again) {
            (Packet::Control(a), Ok(Packet::Control(b))) => {
                assert_eq!(a, b, "seed={seed:#x} case={case} {buf:02x?}")
            }
            (
                Packet::Data { header, payload },
                Ok(Packet::Data {
                    header: h,
                    payload: q,
                }),
            ) => {
                assert_eq!((header, payload), (h, q), "seed={seed:#x} case={case}")
            }
            (a, b) => panic!("seed={seed:#x} case={case}: {a:?} re-decoded as {b:?}"),
        }
    }
    // Both outcomes must be well exercised for the test to mean anything.
    assert!(
        decoded > 20_000 && rejected > 20_000,
        "{decoded} / {rejected}"
    );
}
