//! Micro-benchmarks of the per-packet work (issue 13): the wire codec, the
//! loss list, the receive buffer and the send schedule. Run with
//! `cargo bench -p udt-core --bench wire` (add a filter such as `codec/`).
//!
//! Each figure is per operation, and the codec ones also per byte, so a
//! change shows as a ratio against the previous run of the same machine
//! (criterion keeps the last run and prints the change). The end-to-end
//! figures live in the workspace's `benches/` (`table.py`, `mux_sockets`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use udt_core::loss_list::LossList;
use udt_core::packet::{
    self, encode_nak, Ack, AckRates, Control, ControlPacket, DataHeader, Packet, PacketPosition,
};
use udt_core::recv_buffer::RecvBuffer;
use udt_core::sched::{ConnectionHandle, SendSchedule};
use udt_core::{AckSeqNumber, MsgNumber, SeqNumber, SocketId};

/// UDT's payload at MSS 1500: 1500 - 28 (IP, UDP) - 16 (UDT header).
const PAYLOAD: usize = 1456;

fn data_header(seq: u32) -> DataHeader {
    DataHeader {
        seq: SeqNumber::new(seq),
        position: PacketPosition::Only,
        in_order: false,
        msg: MsgNumber::new(seq & 0x1FFF_FFFF),
        timestamp: 123_456,
        dest: SocketId(0x1234_5678),
    }
}

fn full_ack(n: u32) -> ControlPacket<'static> {
    ControlPacket {
        timestamp: 0,
        dest: SocketId(0x1234_5678),
        control: Control::Ack(Ack {
            ack_seq: AckSeqNumber::new(n),
            ack: SeqNumber::new(n.wrapping_mul(64) & SeqNumber::MAX),
            rtt_us: 10_000,
            rtt_var_us: 2_500,
            available_buffer: 8192,
            rates: Some(AckRates {
                recv_rate: 200_000,
                link_capacity: 400_000,
            }),
        }),
    }
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    let payload = vec![0xA5u8; PAYLOAD];
    let mut out = Vec::with_capacity(2048);
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    let mut seq = 0u32;
    g.bench_function("encode_data_1456", |b| {
        b.iter(|| {
            seq = (seq + 1) & SeqNumber::MAX;
            packet::encode_data(&data_header(seq), black_box(&payload), &mut out);
            black_box(out.len())
        })
    });
    let mut datagram = Vec::new();
    packet::encode_data(&data_header(7), &payload, &mut datagram);
    g.bench_function("decode_data_1456", |b| {
        b.iter(|| match packet::decode(black_box(&datagram)) {
            Ok(Packet::Data { header, payload }) => black_box((header.seq, payload.len())),
            other => panic!("not a data packet: {other:?}"),
        })
    });
    g.throughput(Throughput::Elements(1));
    let mut n = 0u32;
    g.bench_function("encode_full_ack", |b| {
        b.iter(|| {
            n = n.wrapping_add(1) & 0x7FFF_FFFF;
            full_ack(n).encode(&mut out);
            black_box(out.len())
        })
    });
    let mut ack = Vec::new();
    full_ack(9).encode(&mut ack);
    g.bench_function("decode_full_ack", |b| {
        b.iter(|| match packet::decode(black_box(&ack)) {
            Ok(Packet::Control(c)) => black_box(c.dest),
            other => panic!("not a control packet: {other:?}"),
        })
    });
    // A NAK of 32 scattered losses, as a receiver sends after a burst.
    let ranges: Vec<(SeqNumber, SeqNumber)> = (0..32u32)
        .map(|i| {
            let first = SeqNumber::new(1000 + i * 50);
            (first, SeqNumber::new(1000 + i * 50 + (i % 3)))
        })
        .collect();
    g.bench_function("encode_nak_32_ranges", |b| {
        b.iter(|| {
            let written = encode_nak(0, SocketId(1), ranges.iter().copied(), 350, &mut out);
            black_box(written)
        })
    });
    g.finish();
}

fn loss_list(c: &mut Criterion) {
    let mut g = c.benchmark_group("loss_list");
    // The sender's side at 1 % loss: a 8192-packet window reports one lost
    // packet in a hundred, then every loss is retransmitted in order.
    let losses: Vec<SeqNumber> = (0..8192u32)
        .filter(|i| i % 100 == 37)
        .map(SeqNumber::new)
        .collect();
    g.throughput(Throughput::Elements(losses.len() as u64));
    g.bench_function("insert_then_pop_1pct_of_8192", |b| {
        b.iter_batched_ref(
            || LossList::new(8192),
            |list| {
                for &s in &losses {
                    list.insert(s, s);
                }
                while let Some(s) = list.pop_first() {
                    black_box(s);
                }
            },
            BatchSize::SmallInput,
        )
    });
    // The receiver's side: gaps found, then filled one by one out of order
    // (retransmissions arrive in the order the sender resends them).
    g.bench_function("insert_then_remove_1pct_of_8192", |b| {
        b.iter_batched_ref(
            || LossList::new(8192),
            |list| {
                for &s in &losses {
                    list.insert(s, s);
                }
                for &s in losses.iter().rev() {
                    black_box(list.remove(s));
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn recv_buffer(c: &mut Criterion) {
    let mut g = c.benchmark_group("recv_buffer");
    // A stream receiver's steady state: 64 packets of 256 KiB writes (a
    // message of 180 packets each, as a UDT4 sender frames a stream) stored
    // in order, then read out in 64 KiB reads. Per packet.
    const BATCH: u32 = 64;
    const MESSAGE: u32 = 180;
    let payload = vec![0x5Au8; PAYLOAD];
    let mut out = vec![0u8; 64 << 10];
    g.throughput(Throughput::Elements(u64::from(BATCH)));
    for (name, stream_only) in [
        ("insert_read_64_messages", false),
        ("insert_read_64_stream_only", true),
    ] {
        let buffer = RecvBuffer::new(8192, PAYLOAD, SeqNumber::new(0));
        let mut rb = if stream_only {
            buffer.stream_only()
        } else {
            buffer
        };
        let mut seq = 0u32;
        g.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    let i = seq % MESSAGE;
                    let position = match i {
                        0 => PacketPosition::First,
                        _ if i == MESSAGE - 1 => PacketPosition::Last,
                        _ => PacketPosition::Middle,
                    };
                    let msg = MsgNumber::new((seq / MESSAGE + 1) & 0x1FFF_FFFF);
                    black_box(rb.insert(
                        SeqNumber::new(seq & SeqNumber::MAX),
                        position,
                        true,
                        msg,
                        &payload,
                    ))
                    .ok();
                    seq = seq.wrapping_add(1);
                }
                while rb.read(&mut out) > 0 {}
                black_box(&out);
            })
        });
    }
    g.finish();
}

#[allow(clippy::disallowed_methods)] // a benchmark needs one real Instant as its epoch
fn epoch() -> Instant {
    Instant::now()
}

fn send_schedule(c: &mut Criterion) {
    let mut g = c.benchmark_group("send_schedule");
    // 1000 paced connections: each send pops the earliest and puts it back
    // one inter-packet time later (the send thread's steady state).
    const CONNS: u32 = 1000;
    let epoch = epoch();
    let mut sched = SendSchedule::with_capacity(CONNS as usize);
    for i in 0..CONNS {
        sched.set(
            ConnectionHandle(i),
            Some(epoch + Duration::from_micros(u64::from(i))),
        );
    }
    let mut now = epoch;
    g.throughput(Throughput::Elements(1));
    g.bench_function("pop_due_and_reschedule_1000", |b| {
        b.iter(|| {
            now += Duration::from_nanos(1_000);
            if let Some(h) = sched.pop_due(now) {
                sched.set(h, Some(now + Duration::from_micros(u64::from(CONNS))));
                black_box(h);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, codec, loss_list, recv_buffer, send_schedule);
criterion_main!(benches);
