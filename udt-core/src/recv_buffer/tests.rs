//! Unit tests of the receive buffer.

use super::*;
use crate::rng::Rng;
use crate::send_buffer::SendBuffer;
use std::collections::HashMap;
use PacketPosition::{First, Last, Middle, Only};

fn m(n: u32) -> MsgNumber {
    MsgNumber::new(n)
}

fn s(n: u32) -> SeqNumber {
    SeqNumber::new(n)
}

fn read_all(rb: &mut RecvBuffer) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        let n = rb.read(&mut buf);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn next_message(rb: &mut RecvBuffer) -> Option<Vec<u8>> {
    let mut out = vec![0xAA; 3];
    let has = rb.has_message();
    let got = rb.read_message(&mut out);
    assert_eq!(has, got, "has_message must predict read_message");
    if got {
        Some(out)
    } else {
        assert!(out.is_empty(), "out is cleared even when nothing is read");
        None
    }
}

#[test]
fn grow_widens_the_window_and_keeps_what_is_held() {
    let mut rb = RecvBuffer::new(4, 4, s(100));
    rb.insert(s(100), Only, false, m(1), b"abcd").unwrap();
    rb.insert(s(102), Only, false, m(2), b"ij").unwrap();
    assert_eq!(rb.available_packets(), 2);
    assert_eq!(
        rb.insert(s(104), Only, false, m(3), b"zz"),
        Err(InsertError::OutOfWindow)
    );
    rb.grow(3);
    assert_eq!(rb.capacity(), 4, "never shrinks");
    rb.grow(8);
    assert_eq!(rb.available_packets(), 6);
    rb.insert(s(107), Only, false, m(5), b"q").unwrap();
    rb.insert(s(101), Only, false, m(9), b"efgh").unwrap();
    assert_eq!(rb.contiguous_end(), s(103));
    assert_eq!(read_all(&mut rb), b"abcdefghij");
}

#[test]
fn stream_reads_are_contiguous_and_keep_partial_offsets() {
    let mut rb = RecvBuffer::new(8, 4, s(100));
    assert_eq!(rb.available_packets(), 7);
    rb.insert(s(100), First, false, m(1), b"abcd").unwrap();
    rb.insert(s(102), Last, false, m(1), b"ij").unwrap();
    assert_eq!(rb.contiguous_end(), s(101));
    assert_eq!(rb.readable_bytes(), 4);
    let mut buf = [0u8; 3];
    assert_eq!(rb.read(&mut buf), 3);
    assert_eq!(&buf, b"abc");
    assert_eq!(rb.readable_bytes(), 1);
    assert_eq!(rb.read(&mut buf), 1, "stops at the gap");
    assert_eq!(buf[0], b'd');
    assert_eq!(rb.read(&mut buf), 0);
    assert!(!rb.is_readable());
    rb.insert(s(101), Middle, false, m(1), b"efgh").unwrap();
    assert_eq!(rb.contiguous_end(), s(103));
    assert_eq!(rb.readable_bytes(), 6);
    assert_eq!(read_all(&mut rb), b"efghij");
    assert_eq!(rb.read(&mut []), 0);
    assert_eq!(rb.available_packets(), 7);
}

#[test]
fn insert_errors_and_window_edges() {
    let mut rb = RecvBuffer::new(4, 4, s(10));
    assert_eq!(
        rb.insert(s(14), Only, false, m(1), b"x"),
        Err(InsertError::OutOfWindow)
    );
    assert_eq!(
        rb.insert(s(9), Only, false, m(1), b"x"),
        Err(InsertError::OutOfWindow)
    );
    assert_eq!(
        rb.insert(s(10).add(1 << 30), Only, false, m(1), b"x"),
        Err(InsertError::OutOfWindow),
        "half the sequence space away"
    );
    rb.insert(s(13), Only, false, m(4), b"d").unwrap();
    assert_eq!(
        rb.insert(s(13), Only, false, m(4), b"d"),
        Err(InsertError::Duplicate)
    );
    assert_eq!(
        rb.available_packets(),
        3,
        "out-of-order packets are not contiguous"
    );
    for (i, seq) in (10..13).enumerate() {
        rb.insert(s(seq), Only, false, m(i as u32 + 1), b"a")
            .unwrap();
    }
    assert_eq!(rb.contiguous_end(), s(14));
    assert_eq!(rb.available_packets(), 0);
    assert_eq!(rb.read(&mut [0u8; 2]), 2);
    assert_eq!(
        rb.insert(s(10), Only, false, m(1), b"a"),
        Err(InsertError::OutOfWindow)
    );
    assert_eq!(
        rb.insert(s(12), Only, false, m(3), b"a"),
        Err(InsertError::Duplicate)
    );
    assert_eq!(rb.available_packets(), 1);
    assert_eq!(
        InsertError::Dropped.to_string(),
        "data packet of a dropped message"
    );
}

#[test]
fn oversized_payloads_are_cut_to_the_slot() {
    let mut rb = RecvBuffer::new(4, 4, s(0));
    rb.insert(s(0), Only, false, m(1), b"0123456789").unwrap();
    assert_eq!(rb.readable_bytes(), 4);
    assert_eq!(next_message(&mut rb).unwrap(), b"0123");
}

#[test]
fn stream_across_the_sequence_wrap() {
    let isn = s(SeqNumber::MAX - 2);
    let mut rb = RecvBuffer::new(16, 2, isn);
    let data: Vec<u8> = (0u8..12).collect();
    let order = [5usize, 0, 3, 1, 4, 2];
    for &i in &order {
        rb.insert(
            isn.add(i as u32),
            Middle,
            false,
            m(1),
            &data[i * 2..i * 2 + 2],
        )
        .unwrap();
    }
    assert_eq!(rb.contiguous_end().value(), 3);
    assert_eq!(read_all(&mut rb), data);
}

#[test]
fn in_order_messages_wait_out_of_order_ones_do_not() {
    let mut rb = RecvBuffer::new(16, 4, s(SeqNumber::MAX));
    let base = s(SeqNumber::MAX);
    // msg 1 (in order) at base, base+1; msg 2 (out of order) at base+2..=base+3;
    // msg 3 (in order) at base+4.
    rb.insert(base.add(1), Last, true, m(1), b"1b").unwrap();
    rb.insert(base.add(2), First, false, m(2), b"2a").unwrap();
    rb.insert(base.add(4), Only, true, m(3), b"3").unwrap();
    assert_eq!(next_message(&mut rb), None);
    rb.insert(base.add(3), Last, false, m(2), b"2b").unwrap();
    assert_eq!(next_message(&mut rb).unwrap(), b"2a2b", "o=0 skips the gap");
    assert_eq!(next_message(&mut rb), None, "o=1 waits for the gap");
    assert_eq!(
        rb.contiguous_end(),
        base,
        "consumed slots wait for the window"
    );
    rb.insert(base, First, true, m(1), b"1a").unwrap();
    assert_eq!(rb.contiguous_end(), base.add(5));
    assert_eq!(next_message(&mut rb).unwrap(), b"1a1b");
    assert_eq!(next_message(&mut rb).unwrap(), b"3");
    assert_eq!(next_message(&mut rb), None);
    assert_eq!(rb.available_packets(), 15);
    assert_eq!(
        rb.insert(base.add(3), Last, false, m(2), b"2b"),
        Err(InsertError::OutOfWindow)
    );
}

#[test]
fn out_of_order_messages_come_in_completion_order() {
    let mut rb = RecvBuffer::new(16, 4, s(0));
    rb.insert(s(3), First, false, m(3), b"c").unwrap();
    rb.insert(s(2), Only, false, m(2), b"b").unwrap();
    rb.insert(s(4), Last, false, m(3), b"C").unwrap();
    rb.insert(s(1), Only, false, m(1), b"a").unwrap();
    let got: Vec<_> = std::iter::from_fn(|| next_message(&mut rb)).collect();
    assert_eq!(got, [b"b".to_vec(), b"cC".to_vec(), b"a".to_vec()]);
    rb.insert(s(0), Only, true, m(9), b"z").unwrap();
    assert_eq!(next_message(&mut rb).unwrap(), b"z");
    assert_eq!(rb.contiguous_end(), s(5));
    assert_eq!(rb.available_packets(), 15, "consumed slots were released");
}

#[test]
fn a_dropped_message_is_never_delivered_in_part() {
    let mut rb = RecvBuffer::new(16, 4, s(0));
    rb.insert(s(0), First, true, m(1), b"aa").unwrap();
    rb.insert(s(1), Middle, true, m(1), b"bb").unwrap();
    rb.insert(s(3), Last, true, m(1), b"dd").unwrap();
    rb.insert(s(4), Only, true, m(2), b"zz").unwrap();
    // The sender lost seq 2, the TTL expired: UDT4 sends {first 2, last 4}.
    assert_eq!(rb.drop_message(m(1), s(2), s(4)), 4, "0, 1, 2 and 3");
    assert_eq!(rb.contiguous_end(), s(5));
    assert_eq!(
        rb.insert(s(2), Middle, true, m(1), b"cc"),
        Err(InsertError::OutOfWindow),
        "dropped slots at the front were released"
    );
    assert_eq!(
        next_message(&mut rb).unwrap(),
        b"zz",
        "the off-by-one `last` was spared"
    );
    assert_eq!(next_message(&mut rb), None);
}

#[test]
fn a_late_packet_of_a_dropped_message_is_refused() {
    let mut rb = RecvBuffer::new(16, 4, s(0));
    rb.insert(s(0), Only, true, m(1), b"x").unwrap(); // keeps the window from moving
    rb.insert(s(2), First, false, m(2), b"a").unwrap();
    assert_eq!(
        rb.drop_message(m(2), s(3), s(5)),
        4,
        "2 (received), 3, 4 and 5"
    );
    assert_eq!(
        rb.insert(s(3), Middle, false, m(2), b"b"),
        Err(InsertError::Dropped)
    );
    assert_eq!(rb.insert(s(1), Only, true, m(7), b"y").map(|_| ()), Ok(()));
    assert_eq!(next_message(&mut rb).unwrap(), b"x");
    assert_eq!(next_message(&mut rb).unwrap(), b"y");
    assert_eq!(next_message(&mut rb), None);
    assert_eq!(rb.contiguous_end(), s(6));
}

#[test]
fn a_drop_never_touches_another_message() {
    let mut rb = RecvBuffer::new(16, 4, s(0));
    rb.insert(s(1), Only, false, m(5), b"keep").unwrap();
    rb.insert(s(3), Only, true, m(6), b"mine").unwrap();
    // A forged request naming msg 9 over data of messages 5 and 6.
    assert_eq!(
        rb.drop_message(m(9), s(0), s(3)),
        1,
        "only the empty slot 0"
    );
    assert_eq!(next_message(&mut rb).unwrap(), b"keep");
    assert_eq!(next_message(&mut rb), None);
    rb.insert(s(2), Only, true, m(7), b"two").unwrap();
    assert_eq!(next_message(&mut rb).unwrap(), b"two");
    assert_eq!(next_message(&mut rb).unwrap(), b"mine");
}

#[test]
fn an_empty_off_by_one_last_is_spared_when_the_next_packet_shows_its_owner() {
    let mut rb = RecvBuffer::new(16, 4, s(0));
    rb.insert(s(0), First, true, m(1), b"a").unwrap();
    // msg 1 = 0..=1 (1 lost), msg 2 = 2..=3 with 2 still in flight.
    rb.insert(s(3), Last, true, m(2), b"D").unwrap();
    assert_eq!(rb.drop_message(m(1), s(1), s(2)), 2, "0 and 1, not 2");
    rb.insert(s(2), First, true, m(2), b"C").unwrap();
    assert_eq!(next_message(&mut rb).unwrap(), b"CD");
}

#[test]
fn an_ambiguous_empty_last_is_dropped_rather_than_stalling() {
    let mut rb = RecvBuffer::new(16, 4, s(0));
    rb.insert(s(0), First, true, m(1), b"a").unwrap();
    // With nothing after `last` we cannot tell UDT4's off-by-one from an
    // exact `last`; dropping keeps contiguity moving.
    assert_eq!(rb.drop_message(m(1), s(1), s(2)), 3);
    assert_eq!(rb.contiguous_end(), s(3));
    assert_eq!(
        rb.insert(s(2), First, true, m(2), b"x"),
        Err(InsertError::OutOfWindow)
    );
}

#[test]
fn hostile_drop_ranges_are_bounded() {
    let cap = 1024;
    let mut rb = RecvBuffer::new(cap, 4, s(5));
    rb.insert(s(5), Only, true, m(1), b"a").unwrap();
    // Reversed, far behind and far ahead: nothing happens.
    assert_eq!(rb.drop_message(m(2), s(100), s(99)), 0);
    assert_eq!(
        rb.drop_message(m(2), s(5).add(1 << 30), s(5).add((1 << 30) + 10)),
        0
    );
    assert_eq!(rb.drop_message(m(2), s(5).sub(1 << 29), s(4)), 0);
    assert_eq!(rb.contiguous_end(), s(6));
    // 2^30 − 1 wide, starting in the window: clipped to it.
    let n = rb.drop_message(m(2), s(6), s(6).add((1 << 30) - 2));
    assert_eq!(n, cap - 1);
    assert!(rb.slots.len() <= cap as usize);
    // The remainder follows the window as it moves, but one call applies
    // at most PENDING_ROUNDS windows of it: bounded work per call.
    let bound = (PENDING_ROUNDS as i32 + 1) * cap as i32;
    let before = rb.contiguous_end();
    assert_eq!(next_message(&mut rb).unwrap(), b"a");
    let moved = rb.contiguous_end().offset_from(before);
    assert!(moved > cap as i32 && moved <= bound, "moved {moved}");
    for _ in 0..4 {
        let before = rb.contiguous_end();
        // Any call normalizes; a reversed range is a no-op request.
        assert_eq!(rb.drop_message(m(9), s(1), s(0)), 0);
        let moved = rb.contiguous_end().offset_from(before);
        assert!(moved > 0 && moved <= bound, "moved {moved}");
    }
    // Packets of other messages are still accepted in the fresh window.
    let c = rb.contiguous_end();
    rb.insert(c, Only, true, m(3), b"z").unwrap();
    assert_eq!(next_message(&mut rb).unwrap(), b"z");
    assert!(rb.slots.len() <= cap as usize);
    assert!(rb.allocated_slots() <= 32);
}

#[test]
fn a_drop_remainder_beyond_the_window_is_applied_later() {
    let isn = s(SeqNumber::MAX - 1);
    let mut rb = RecvBuffer::new(4, 4, isn);
    rb.insert(isn, Only, true, m(1), b"one").unwrap();
    rb.insert(isn.add(1), First, true, m(2), b"2a").unwrap();
    // msg 2 = isn+1 ..= isn+6; the sender skipped its unsent tail.
    assert_eq!(rb.drop_message(m(2), isn.add(2), isn.add(6)), 3);
    assert_eq!(next_message(&mut rb).unwrap(), b"one");
    assert_eq!(
        rb.contiguous_end(),
        isn.add(7),
        "the tail was dropped as it entered"
    );
    rb.insert(isn.add(7), Only, true, m(3), b"3").unwrap();
    assert_eq!(next_message(&mut rb).unwrap(), b"3");
}

#[test]
fn a_message_longer_than_the_window_is_discarded_not_deadlocked() {
    let mut rb = RecvBuffer::new(4, 2, s(0));
    rb.insert(s(0), First, true, m(1), b"aa").unwrap();
    for i in 1..4 {
        rb.insert(s(i), Middle, true, m(1), b"bb").unwrap();
    }
    assert_eq!(rb.available_packets(), 0);
    assert_eq!(next_message(&mut rb), None);
    assert_eq!(rb.available_packets(), 3, "the fragment was released");
    for i in 4..6 {
        rb.insert(s(i), Middle, true, m(1), b"cc").unwrap();
    }
    rb.insert(s(6), Last, true, m(1), b"dd").unwrap();
    rb.insert(s(7), Only, true, m(2), b"ok").unwrap();
    assert_eq!(next_message(&mut rb).unwrap(), b"ok", "orphans are skipped");
    assert_eq!(rb.contiguous_end(), s(8));
}

#[test]
fn broken_framing_is_discarded_in_message_mode_but_read_in_stream_mode() {
    let packets: [(u32, PacketPosition, u32, &[u8]); 4] = [
        (0, First, 1, b"a"),
        (1, Only, 2, b"b"),   // cuts msg 1 short
        (2, Middle, 3, b"c"), // orphan
        (3, Only, 4, b"d"),
    ];
    let mut msgs = RecvBuffer::new(8, 4, s(0));
    let mut stream = RecvBuffer::new(8, 4, s(0));
    for &(seq, pos, msg, data) in &packets {
        msgs.insert(s(seq), pos, true, m(msg), data).unwrap();
        stream.insert(s(seq), pos, true, m(msg), data).unwrap();
    }
    assert_eq!(next_message(&mut msgs).unwrap(), b"b");
    assert_eq!(next_message(&mut msgs).unwrap(), b"d");
    assert_eq!(next_message(&mut msgs), None);
    assert_eq!(read_all(&mut stream), b"abcd");
}

#[test]
fn memory_is_lazy_and_bounded_by_the_peak() {
    let mut rb = RecvBuffer::new(8192, 1456, s(0));
    assert_eq!(
        rb.allocated_slots(),
        0,
        "an idle buffer holds no payload memory"
    );
    assert_eq!(rb.slots.capacity(), 0);
    let payload = [7u8; 1456];
    let mut buf = vec![0u8; 1456 * 8];
    let mut seq = s(0);
    for round in 0..3000u32 {
        // 20 packets per round, the first one late.
        for i in (1..20).chain(0..1) {
            let pos = if i == 19 {
                Last
            } else if i == 0 {
                First
            } else {
                Middle
            };
            rb.insert(seq.add(i), pos, false, m(round + 1), &payload)
                .unwrap();
        }
        seq = seq.add(20);
        while rb.read(&mut buf) > 0 {}
    }
    assert_eq!(rb.contiguous_end(), seq);
    assert_eq!(
        rb.allocated_slots(),
        32,
        "one chunk covers a 20-packet peak"
    );
    assert!(rb.slots.capacity() <= 64);
    assert!(rb.ready.capacity() <= 64);
}

/// Checks every internal invariant; O(capacity), for tests only.
fn check_invariants(rb: &RecvBuffer, ctx: &str) {
    let cap = rb.capacity as usize;
    assert!(
        rb.slots.len() <= cap,
        "{ctx}: ring longer than the capacity"
    );
    let contig = rb.contig.offset_from(rb.base);
    let cursor = rb.cursor.offset_from(rb.base);
    assert!(
        0 <= cursor && cursor <= contig && contig as usize <= cap,
        "{ctx}: frontiers {cursor} {contig}"
    );
    let contig = contig as usize;
    let mut bytes = 0;
    let mut data = 0;
    for (i, slot) in rb.slots.iter().enumerate() {
        if i < contig {
            assert_ne!(
                slot.state,
                SlotState::Empty,
                "{ctx}: hole before contig at {i}"
            );
            if slot.state == SlotState::Data {
                bytes += slot.len as usize - if i == 0 { rb.read_offset } else { 0 };
            }
        }
        if slot.state == SlotState::Data {
            data += 1;
        }
    }
    if let Some(s) = rb.slots.get(contig) {
        assert_eq!(
            s.state,
            SlotState::Empty,
            "{ctx}: contig not at an empty slot"
        );
    }
    assert_eq!(rb.contig_bytes, bytes, "{ctx}: readable bytes");
    assert_eq!(rb.pool.in_use(), data, "{ctx}: payload slots leaked");
    assert!(rb.pool.allocated() <= rb.capacity, "{ctx}");
    if !rb.messages {
        // A stream-only buffer keeps no chains, no message read point
        // beyond `base` and no completed messages.
        assert_eq!(cursor, 0, "{ctx}: stream-only cursor moved");
        assert!(rb.ready.is_empty(), "{ctx}: stream-only ready queue");
        assert_front_is_not_garbage(rb, ctx);
        return;
    }
    // Chain ends point at each other.
    let mut i = 0;
    while i < rb.slots.len() {
        if rb.slots[i].state != SlotState::Data {
            i += 1;
            continue;
        }
        let mut j = i;
        while rb.linked(j) {
            j += 1;
        }
        assert_eq!(
            rb.slots[i].other_end,
            rb.base.add(j as u32),
            "{ctx}: chain {i}..={j}"
        );
        assert_eq!(
            rb.slots[j].other_end,
            rb.base.add(i as u32),
            "{ctx}: chain {i}..={j}"
        );
        i = j + 1;
    }
    assert!(
        rb.ready.len() <= 2 * cap + 1,
        "{ctx}: ready queue unbounded"
    );
    if let Some(&(s, m)) = rb.ready.front() {
        assert!(rb.valid_entry(s, m).is_some(), "{ctx}: stale ready head");
    }
    assert_front_is_not_garbage(rb, ctx);
}

/// The front is never a releasable garbage slot after a call.
fn assert_front_is_not_garbage(rb: &RecvBuffer, ctx: &str) {
    assert!(
        !matches!(
            rb.slots.front().map(|s| s.state),
            Some(SlotState::Dropped | SlotState::Consumed)
        ),
        "{ctx}: garbage left at the front"
    );
}

/// Hostile input: arbitrary sequence numbers, framing, message numbers
/// and drop ranges, mixed stream and message reads. Nothing may panic and
/// every invariant must hold after every call.
///
/// The odd seeds use a stream-only buffer, which must keep the same stream
/// invariants and never deliver a message.
#[test]
fn hostile_random_inputs_keep_invariants() {
    for seed in 0..200u64 {
        let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9));
        let cap = 1 + rng.below(24) as u32;
        let isn = s(SeqNumber::MAX - rng.below(40) as u32);
        let stream_only = seed % 2 == 1;
        let mut rb = RecvBuffer::new(cap, 3, isn);
        if stream_only {
            rb = rb.stream_only();
        }
        let positions = [First, Middle, Last, Only];
        let mut out = Vec::new();
        for step in 0..2000 {
            let ctx = format!("seed={seed} step={step}");
            let near = |rng: &mut Rng, rb: &RecvBuffer| {
                if rng.chance(0.1) {
                    s(rng.next_u32())
                } else {
                    rb.base.add(rng.below(cap as u64 + 6) as u32).sub(3)
                }
            };
            match rng.below(10) {
                0..=4 => {
                    let seq = near(&mut rng, &rb);
                    let pos = positions[rng.below(4) as usize];
                    let len = rng.below(6) as usize;
                    let msg = m(1 + rng.below(4) as u32);
                    let _ = rb.insert(
                        seq,
                        pos,
                        rng.chance(0.5),
                        msg,
                        &[seq.value() as u8; 8][..len],
                    );
                }
                5 => {
                    let first = near(&mut rng, &rb);
                    let last = if rng.chance(0.2) {
                        first.add(rng.next_u32())
                    } else {
                        first.add(rng.below(8) as u32)
                    };
                    let n = rb.drop_message(m(1 + rng.below(4) as u32), first, last);
                    assert!(n <= cap, "{ctx}: dropped {n}");
                }
                6 | 7 => {
                    let mut buf = vec![0u8; rng.below(10) as usize];
                    let before = rb.readable_bytes();
                    let n = rb.read(&mut buf);
                    assert_eq!(n, before.min(buf.len()), "{ctx}: short read");
                }
                8 if stream_only => {
                    // Lend a buffer, or take it back with what came.
                    if rb.take_sink().is_none() {
                        let room = rng.below(10) as usize;
                        assert!(rb.lend_sink(vec![1, 2], room).is_ok(), "{ctx}");
                    }
                }
                _ => {
                    let has = rb.has_message();
                    assert_eq!(has, rb.read_message(&mut out), "{ctx}");
                    assert!(!(stream_only && has), "{ctx}: a stream-only message");
                }
            }
            check_invariants(&rb, &ctx);
        }
    }
}

/// Stream mode end to end: a real SendBuffer frames random writes, packets
/// arrive shuffled and duplicated, reads use random sizes; the bytes must
/// come out exact and the counters must match a naive model.
#[test]
fn model_stream_random_arrival() {
    let mut direct = 0;
    for seed in 0..30u64 {
        run_stream_model(seed, false, false);
        run_stream_model(seed, true, false);
        direct += run_stream_model(seed, true, true);
    }
    assert!(direct > 0, "nothing went straight into a lent buffer");
}

/// With `sinks`, the reader also lends buffers (with something already in
/// them) and takes them back, and reads into vectors.
#[allow(clippy::disallowed_methods)] // the send buffer needs an epoch
fn run_stream_model(seed: u64, stream_only: bool, sinks: bool) -> u64 {
    let now = std::time::Instant::now();
    let mut rng = Rng::new(seed);
    let ps = 1 + rng.below(20) as usize;
    let cap = 4 + rng.below(60) as u32;
    let isn = s(SeqNumber::MAX - rng.below(300) as u32);
    let mut sb = SendBuffer::new(100_000, ps, isn);
    let mut sent = Vec::new();
    for i in 0..300 {
        let data: Vec<u8> = (0..rng.below(ps as u64 * 4) as usize)
            .map(|_| rng.next_u32() as u8)
            .collect();
        assert_eq!(sb.write_stream(&data, now), data.len(), "seed={seed} i={i}");
        sent.extend_from_slice(&data);
    }
    let mut packets = Vec::new();
    while let Some(k) = sb.take_next() {
        packets.push((k.seq, k.position, k.msg, k.payload.to_vec()));
    }
    // Cumulative byte offset at the end of each packet.
    let ends: Vec<usize> = packets
        .iter()
        .scan(0, |acc, p| {
            *acc += p.3.len();
            Some(*acc)
        })
        .collect();
    let mut rb = RecvBuffer::new(cap, ps, isn);
    if stream_only {
        rb = rb.stream_only();
    }
    // The prefix of the buffer lent now, if one is.
    let mut lent: Option<Vec<u8>> = None;
    let mut direct_at_lend = 0;
    let mut arrived = vec![false; packets.len()];
    let mut contig = 0usize; // model: packets before this arrived
    let mut contig_bytes = 0usize;
    let mut got = Vec::new();
    let mut steps = 0;
    while got.len() < sent.len() {
        steps += 1;
        assert!(steps < 200_000, "seed={seed}: stalled");
        if contig == packets.len() || rng.chance(0.3) {
            if let Some(prefix) = lent.take() {
                if contig == packets.len() || rng.chance(0.5) {
                    let back = rb.take_sink().expect("the lent buffer");
                    assert_eq!(&back[..prefix.len()], &prefix[..], "seed={seed}: prefix");
                    got.extend_from_slice(&back[prefix.len()..]);
                } else {
                    lent = Some(prefix);
                }
            } else if sinks && contig < packets.len() && rng.chance(0.4) {
                let prefix: Vec<u8> = (0..rng.below(3)).map(|_| rng.next_u32() as u8).collect();
                let room = rng.below(ps as u64 * 4) as usize;
                rb.lend_sink(prefix.clone(), room)
                    .expect("a stream-only buffer lends");
                direct_at_lend = rb.direct_bytes();
                lent = Some(prefix);
            } else if sinks && rng.chance(0.5) {
                let max = rng.below(ps as u64 * 3) as usize;
                let before = got.len();
                let n = rb.read_to_vec(&mut got, max);
                assert_eq!(got.len(), before + n, "seed={seed}: read_to_vec");
            } else {
                let mut buf = vec![0u8; rng.below(ps as u64 * 3) as usize];
                let n = rb.read(&mut buf);
                got.extend_from_slice(&buf[..n]);
            }
        } else {
            // A packet from slightly beyond the window, or a duplicate.
            let span = (cap as usize + 4).min(packets.len() - contig);
            let i = contig + rng.below(span as u64) as usize;
            let (seq, pos, msg, ref data) = packets[i];
            // Model base: packets whose bytes have all been read (or
            // delivered into a lent buffer) are released.
            let in_sink = if lent.is_some() {
                (rb.direct_bytes() - direct_at_lend) as usize
            } else {
                0
            };
            let base = ends.partition_point(|&e| e <= got.len() + in_sink);
            let in_window = i >= base && i < base + cap as usize;
            match rb.insert(seq, pos, false, msg, data) {
                Ok(()) => {
                    assert!(in_window && !arrived[i], "seed={seed}: accepted {i}");
                    arrived[i] = true;
                }
                Err(InsertError::Duplicate) => assert!(in_window && arrived[i], "seed={seed}"),
                Err(InsertError::OutOfWindow) => assert!(!in_window, "seed={seed}: {i}"),
                Err(InsertError::Dropped) => panic!("seed={seed}: nothing was dropped"),
                Err(InsertError::Conflict) => panic!("seed={seed}: the same payload conflicts"),
            }
            while contig < packets.len() && arrived[contig] {
                contig_bytes += packets[contig].3.len();
                contig += 1;
            }
        }
        assert_eq!(rb.contiguous_end(), isn.add(contig as u32), "seed={seed}");
        assert_eq!(rb.readable_bytes(), contig_bytes - got.len(), "seed={seed}");
        assert!(rb.available_packets() < cap, "seed={seed}");
        assert_eq!(&got[..], &sent[..got.len()], "seed={seed}: bytes differ");
    }
    assert_eq!(got, sent, "seed={seed}");
    assert!(rb.allocated_slots() <= cap, "seed={seed}");
    rb.direct_bytes()
}

#[test]
fn a_lent_buffer_takes_what_arrives_in_order_and_keeps_the_byte_order() {
    let mut rb = RecvBuffer::new(16, 4, s(0)).stream_only();
    rb.lend_sink(b"xy".to_vec(), 10).unwrap();
    assert_eq!(
        rb.lend_sink(Vec::new(), 1),
        Err(Vec::new()),
        "one at a time"
    );
    rb.insert(s(0), First, true, m(1), b"abcd").unwrap();
    rb.insert(s(2), Middle, true, m(1), b"ijkl").unwrap(); // early: stored
    assert_eq!(rb.readable_bytes(), 4);
    rb.insert(s(1), Middle, true, m(1), b"efgh").unwrap(); // fills the hole: lent buffer
    assert_eq!(rb.contiguous_end(), s(3));
    assert_eq!(rb.readable_bytes(), 12);
    // Something is buffered now: later packets are stored behind it.
    rb.insert(s(3), Last, true, m(1), b"mnop").unwrap();
    assert_eq!(
        rb.insert(s(1), Middle, true, m(1), b"efgh"),
        Err(InsertError::OutOfWindow)
    );
    assert_eq!(rb.direct_bytes(), 8);
    assert_eq!(rb.take_sink().unwrap(), b"xyabcdefgh");
    assert_eq!(rb.take_sink(), None);
    assert_eq!(read_all(&mut rb), b"ijklmnop");
    // The window never shrank for the bytes that went straight out.
    assert_eq!(rb.available_packets(), 15);
}

#[test]
fn a_lent_buffer_is_bounded_and_a_read_meanwhile_takes_its_bytes_first() {
    let mut rb = RecvBuffer::new(16, 4, s(0)).stream_only();
    rb.lend_sink(Vec::new(), 6).unwrap();
    rb.insert(s(0), Only, true, m(1), b"abcd").unwrap();
    rb.insert(s(1), Only, true, m(2), b"efgh").unwrap(); // no room: stored
    rb.insert(s(2), Only, true, m(3), b"ij").unwrap(); // fits, but must wait behind s(1)
    assert_eq!(rb.direct_bytes(), 4);
    let mut three = [0u8; 3];
    assert_eq!(rb.read(&mut three), 3);
    assert_eq!(&three, b"abc");
    assert_eq!(
        rb.take_sink().unwrap(),
        b"d",
        "what was read is not given twice"
    );
    assert_eq!(read_all(&mut rb), b"efghij");
    // A buffer that also assembles messages never lends.
    let mut msgs = RecvBuffer::new(16, 4, s(0));
    assert_eq!(msgs.lend_sink(b"q".to_vec(), 8), Err(b"q".to_vec()));
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Pending,
    Delivered,
    Dropped,
    /// Collateral of an off-by-one drop: may or may not be delivered.
    MaybeLost,
    /// Passed by an in-order delivery without being delivered.
    Closed,
}

struct Msg {
    first: SeqNumber,
    packets: usize,
    in_order: bool,
    number: MsgNumber,
    fate: Fate,
}

/// Message mode: random arrival order, duplicates, drop requests (exact
/// or UDT4's off-by-one `last`) and reads. Checks every message comes out
/// whole, at most once, never after its drop, and in order when `o = 1`.
#[test]
fn model_messages_with_drops() {
    for seed in 0..60u64 {
        run_message_model(seed);
    }
}

fn run_message_model(seed: u64) {
    let mut rng = Rng::new(seed ^ 0x5EED);
    let ps = 4 + rng.below(8) as usize;
    let cap = 6 + rng.below(40) as u32;
    let isn = s(SeqNumber::MAX - rng.below(300) as u32);
    let mut msgs: Vec<Msg> = Vec::new();
    let mut contents: HashMap<Vec<u8>, usize> = HashMap::new();
    // (seq, position, msg index, bytes)
    let mut packets: Vec<(SeqNumber, PacketPosition, usize, Vec<u8>)> = Vec::new();
    let mut seq = isn;
    let mut number = MsgNumber::FIRST;
    for k in 0..150usize {
        let max_packets = (cap as u64 - 1).min(5);
        let len = 4 + rng.below(max_packets * ps as u64 - 3) as usize;
        let mut data: Vec<u8> = (k as u32).to_be_bytes().to_vec();
        data.extend((4..len).map(|_| rng.next_u32() as u8));
        let n = len.div_ceil(ps);
        for (i, c) in data.chunks(ps).enumerate() {
            let pos = match (i == 0, i + 1 == n) {
                (true, true) => Only,
                (true, false) => First,
                (false, true) => Last,
                _ => Middle,
            };
            packets.push((seq.add(i as u32), pos, k, c.to_vec()));
        }
        msgs.push(Msg {
            first: seq,
            packets: n,
            in_order: rng.chance(0.5),
            number,
            fate: Fate::Pending,
        });
        contents.insert(data, k);
        seq = seq.add(n as u32);
        number = number.next();
    }
    let end = seq;
    let mut rb = RecvBuffer::new(cap, ps, isn);
    let mut pending: Vec<usize> = (0..packets.len()).collect();
    let mut accepted: Vec<usize> = Vec::new();
    let mut steps = 0;
    let ctx = |steps: i32| format!("seed={seed} step={steps}");
    loop {
        steps += 1;
        assert!(steps < 100_000, "{}: stalled", ctx(steps));
        let action = rng.below(12);
        if pending.is_empty() {
            // Drain: read, and let the sender repeat drop requests for
            // whatever is still missing (its NAK -> expired -> drop path).
            if let Some(out) = next_message(&mut rb) {
                deliver(&mut msgs, &contents, &out, &ctx(steps));
                continue;
            }
            let c = rb.contiguous_end();
            if c == end || c == end.next() {
                break;
            }
            let k = msgs
                .iter()
                .position(|x| c.offset_from(x.first) < x.packets as i32)
                .unwrap_or(msgs.len() - 1);
            let last = msgs[k].first.add(msgs[k].packets as u32 - 1);
            assert!(
                matches!(msgs[k].fate, Fate::Dropped | Fate::MaybeLost),
                "{}: stalled at {c:?} in message {k} ({:?})",
                ctx(steps),
                msgs[k].fate
            );
            rb.drop_message(msgs[k].number, c, last);
            continue;
        }
        match action {
            0..=6 => {
                let window = (2 * cap as usize).min(pending.len());
                let pi = rng.below(window as u64) as usize;
                let i = pending[pi];
                let (seq, pos, k, ref data) = packets[i];
                let r = rb.insert(seq, pos, msgs[k].in_order, msgs[k].number, data);
                match r {
                    Ok(()) => {
                        pending.remove(pi);
                        accepted.push(i);
                    }
                    Err(InsertError::Duplicate | InsertError::Conflict) => {
                        panic!("{}: new packet duplicate", ctx(steps))
                    }
                    Err(InsertError::Dropped) => {
                        assert!(
                            matches!(msgs[k].fate, Fate::MaybeLost | Fate::Closed),
                            "{}: packet of live message {k} refused as dropped",
                            ctx(steps)
                        );
                        pending.remove(pi);
                    }
                    Err(InsertError::OutOfWindow) => {
                        if seq.is_before(rb.contiguous_end()) {
                            assert!(
                                matches!(msgs[k].fate, Fate::MaybeLost | Fate::Closed),
                                "{}: live packet behind the window",
                                ctx(steps)
                            );
                            pending.remove(pi);
                        }
                    }
                }
            }
            7 if rng.chance(0.2) => {
                // The receiver NAKs the slot it waits for; if that packet
                // belongs to a dropped message, the sender drops it again.
                let c = rb.contiguous_end();
                if let Some(k) = msgs
                    .iter()
                    .position(|x| (0..x.packets as i32).contains(&c.offset_from(x.first)))
                {
                    let still_coming = pending.iter().any(|&i| packets[i].0 == c);
                    if !still_coming && matches!(msgs[k].fate, Fate::Dropped | Fate::MaybeLost) {
                        let last = msgs[k].first.add(msgs[k].packets as u32 - 1);
                        rb.drop_message(msgs[k].number, c, last);
                    }
                }
            }
            7 => {
                if let Some(&i) = accepted.get(rng.below(accepted.len() as u64 + 1) as usize) {
                    let (seq, pos, k, ref data) = packets[i];
                    let r = rb.insert(seq, pos, msgs[k].in_order, msgs[k].number, data);
                    assert!(r.is_err(), "{}: duplicate accepted", ctx(steps));
                }
            }
            8 => {
                // The sender drops an undelivered message.
                let k = rng.below(msgs.len() as u64) as usize;
                if msgs[k].fate != Fate::Pending || rng.chance(0.7) {
                    continue;
                }
                let first_pending = pending
                    .iter()
                    .map(|&i| &packets[i])
                    .find(|p| p.2 == k)
                    .map(|p| p.0);
                let first = first_pending.unwrap_or(msgs[k].first);
                // The sender only drops after losing a packet it sent,
                // which lies inside the window it was allowed to fill.
                let sendable = rb.contiguous_end().add(rb.available_packets());
                if !first.is_before(sendable) {
                    continue;
                }
                let real_last = msgs[k].first.add(msgs[k].packets as u32 - 1);
                let off_by_one = rng.chance(0.5);
                let last = if off_by_one {
                    real_last.next()
                } else {
                    real_last
                };
                pending.retain(|&i| packets[i].2 != k);
                msgs[k].fate = Fate::Dropped;
                if off_by_one {
                    if let Some(next) = msgs.get_mut(k + 1) {
                        let first_missing = pending.iter().any(|&i| packets[i].0 == next.first);
                        if next.fate == Fate::Pending && first_missing {
                            next.fate = Fate::MaybeLost;
                        }
                    }
                }
                rb.drop_message(msgs[k].number, first, last);
            }
            _ => {
                if let Some(out) = next_message(&mut rb) {
                    deliver(&mut msgs, &contents, &out, &ctx(steps));
                }
            }
        }
        assert!(rb.available_packets() < cap, "{}", ctx(steps));
        check_invariants(&rb, &ctx(steps));
        assert!(rb.ready.len() <= 2 * cap as usize + 1, "{}", ctx(steps));
    }
    for (k, x) in msgs.iter().enumerate() {
        assert!(
            matches!(
                x.fate,
                Fate::Delivered | Fate::Dropped | Fate::MaybeLost | Fate::Closed
            ),
            "seed={seed}: message {k} ended {:?}",
            x.fate
        );
    }
    assert!(rb.allocated_slots() <= cap);
}

fn deliver(msgs: &mut [Msg], contents: &HashMap<Vec<u8>, usize>, out: &[u8], ctx: &str) {
    let Some(&k) = contents.get(out) else {
        panic!("{ctx}: delivered bytes match no message (partial or corrupt): {out:?}");
    };
    assert!(
        matches!(msgs[k].fate, Fate::Pending | Fate::MaybeLost),
        "{ctx}: message {k} delivered while {:?}",
        msgs[k].fate
    );
    msgs[k].fate = Fate::Delivered;
    if msgs[k].in_order {
        for (j, earlier) in msgs[..k].iter_mut().enumerate() {
            match earlier.fate {
                Fate::Pending => {
                    panic!("{ctx}: in-order message {k} overtook live message {j}")
                }
                Fate::MaybeLost => earlier.fate = Fate::Closed,
                _ => {}
            }
        }
    }
}

#[test]
fn repeated_drop_requests_over_a_dropped_window_cost_little() {
    // One forged request drops the whole window behind an empty slot (so
    // nothing is released); every further 24-byte request used to walk
    // those 8191 dropped slots again (issue 10 item 6).
    let cap = 8192;
    let mut rb = RecvBuffer::new(cap, 4, s(0));
    rb.drop_message(m(1), s(1), s(cap - 1));
    let after_first = rb.drop_walk();
    assert!(after_first <= u64::from(cap));
    for k in 0..1000u32 {
        let first = 1 + (k % 100);
        rb.drop_message(m(2 + k), s(first), s(cap - 1));
    }
    let per_request = (rb.drop_walk() - after_first) / 1000;
    assert!(
        per_request <= u64::from(MAX_IDLE_DROP_STEPS) + 2,
        "{per_request} slots walked per repeated request"
    );
    // Honest use still works: data before the dropped range is readable
    // and fills the hole.
    rb.insert(s(0), Only, true, m(1), b"ab").unwrap();
    assert_eq!(rb.contiguous_end(), s(cap));
}

#[test]
fn a_second_payload_for_an_unread_slot_is_a_conflict() {
    let mut rb = RecvBuffer::new(16, 4, s(0));
    rb.insert(s(2), Only, false, m(1), b"abcd").unwrap();
    // A retransmission repeats the payload: a plain duplicate.
    assert_eq!(
        rb.insert(s(2), Only, false, m(1), b"abcd"),
        Err(InsertError::Duplicate)
    );
    // Anything else for the same number: one of them was injected.
    assert_eq!(
        rb.insert(s(2), Only, false, m(1), b"abce"),
        Err(InsertError::Conflict)
    );
    assert_eq!(
        rb.insert(s(2), Only, false, m(1), b"ab"),
        Err(InsertError::Conflict)
    );
    // Longer than a slot: compared as it would have been stored.
    assert_eq!(
        rb.insert(s(2), Only, false, m(1), b"abcdXYZ"),
        Err(InsertError::Duplicate)
    );
}

#[test]
fn a_narrowed_window_stays_narrow_while_the_capacity_grows() {
    let mut rb = RecvBuffer::new(64, 4, s(0));
    rb.set_window_limit(Some(16));
    rb.grow(256);
    assert_eq!(rb.available_packets(), 15, "the limit still holds");
    rb.set_window_limit(None);
    assert_eq!(rb.available_packets(), 255, "the whole grown capacity");
    rb.grow(512);
    assert_eq!(rb.available_packets(), 511, "an unlimited window grows");
}

#[test]
fn a_reader_is_due_at_the_end_of_a_write_not_in_its_middle() {
    // Stream mode, 64 slots (a quarter is 16: never reached here).
    let mut rb = RecvBuffer::new(64, 4, s(0)).stream_only();
    assert!(!rb.take_reader_due(), "nothing arrived");
    rb.insert(s(0), First, true, m(1), b"abcd").unwrap();
    rb.insert(s(1), Middle, true, m(1), b"efgh").unwrap();
    assert!(rb.is_readable());
    assert!(!rb.take_reader_due(), "the middle of a write");
    // The end of the write, but behind a hole: not readable yet.
    rb.insert(s(3), Last, true, m(1), b"mnop").unwrap();
    assert!(!rb.take_reader_due(), "not contiguous");
    rb.insert(s(2), Middle, true, m(1), b"ijkl").unwrap();
    assert!(
        rb.take_reader_due(),
        "the hole filled up to the write's end"
    );
    assert!(!rb.take_reader_due(), "reported once");
    // A small write is one packet, First and Last at once.
    rb.insert(s(4), Only, true, m(2), b"q").unwrap();
    assert!(rb.take_reader_due());
    assert_eq!(read_all(&mut rb), b"abcdefghijklmnopq");
}

#[test]
fn a_reader_is_due_when_its_lent_buffer_is_full_or_a_quarter_of_the_window_waits() {
    let mut rb = RecvBuffer::new(64, 4, s(0)).stream_only();
    // Room for two packets and a half: due once a third would not fit.
    rb.lend_sink(Vec::new(), 10).unwrap();
    rb.insert(s(0), First, true, m(1), b"abcd").unwrap();
    assert!(!rb.take_reader_due());
    rb.insert(s(1), Middle, true, m(1), b"efgh").unwrap();
    assert!(
        rb.take_reader_due(),
        "the lent buffer has no room for another packet"
    );
    assert_eq!(rb.take_sink().unwrap(), b"abcdefgh");
    // Nothing lent: the middle of a write piles up unread until a quarter
    // of the window (16 of 64 slots) waits, then the reader is due.
    for i in 2..17 {
        rb.insert(s(i), Middle, true, m(1), b"wxyz").unwrap();
        assert!(!rb.take_reader_due(), "{i}");
    }
    rb.insert(s(17), Middle, true, m(1), b"wxyz").unwrap();
    assert!(rb.take_reader_due(), "16 packets unread");
}

#[test]
fn a_message_reader_is_due_when_a_message_completes() {
    let mut rb = RecvBuffer::new(64, 4, s(0));
    // An out-of-order message completes behind a hole: readable, and due.
    rb.insert(s(1), First, false, m(2), b"ab").unwrap();
    assert!(!rb.take_reader_due());
    rb.insert(s(2), Last, false, m(2), b"cd").unwrap();
    assert!(rb.has_message());
    assert!(rb.take_reader_due());
    // An in-order message completes when everything before it arrived.
    rb.insert(s(0), Only, true, m(1), b"z").unwrap();
    assert!(rb.take_reader_due());
    // A drop request that skips what a reader waits behind makes it due.
    rb.insert(s(4), Only, true, m(4), b"y").unwrap();
    assert!(!rb.take_reader_due(), "behind the hole at 3");
    assert_eq!(rb.drop_message(m(3), s(3), s(3)), 1);
    assert!(rb.take_reader_due());
}

#[test]
fn a_reader_without_a_sink_is_due_once_its_request_is_readable() {
    let mut rb = RecvBuffer::new(64, 4, s(0)).stream_only();
    rb.set_read_want(6);
    rb.insert(s(0), First, true, m(1), b"abcd").unwrap();
    assert!(!rb.take_reader_due(), "4 of the 6 bytes asked for");
    rb.insert(s(1), Middle, true, m(1), b"efgh").unwrap();
    assert!(rb.take_reader_due(), "8 readable, 6 asked for");
    // No reader waiting: the middle of the write is not due again.
    rb.set_read_want(0);
    rb.insert(s(2), Middle, true, m(1), b"ijkl").unwrap();
    assert!(!rb.take_reader_due());
}
