//! Message mode over real sockets: boundaries kept, and messages whose TTL
//! ran out while a packet was lost are dropped (never delivered damaged).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{bind, config, init, pattern, Relay};
use udt_mux::Config;

/// Message `i`: an 8-byte index, then a body whose size and bytes depend
/// on `i`, so the receiver can check each message stands alone and intact.
fn message(i: u64, size: usize) -> Vec<u8> {
    let mut m = i.to_le_bytes().to_vec();
    m.extend_from_slice(&pattern(1000 + i, size));
    m
}

fn check(msg: &[u8], size_of: impl Fn(u64) -> usize) -> u64 {
    assert!(
        msg.len() >= 8,
        "message shorter than its index: {}",
        msg.len()
    );
    let i = u64::from_le_bytes(msg[..8].try_into().unwrap());
    assert!(
        msg == message(i, size_of(i)).as_slice(),
        "message {i} damaged or merged"
    );
    i
}

#[test]
fn message_boundaries_are_kept() {
    init();
    let server = bind(config());
    let listener = server.listen_messages(2).unwrap();
    let client = bind(config());
    let sender = client.connect_messages(server.local_addr()).unwrap();
    let (receiver, _) = listener.accept().unwrap();
    // Sizes across packet boundaries: 1 byte to several packets.
    let size_of = |i: u64| ((i * 977) % 9000) as usize;
    let count = 400u64;
    let t = std::thread::spawn(move || {
        for i in 0..count {
            sender
                .send_msg(&message(i, size_of(i)), None, true)
                .unwrap();
        }
        sender.close().unwrap();
    });
    let mut out = Vec::new();
    let mut next = 0;
    while let Some(n) = receiver.recv_msg_into(&mut out).unwrap() {
        assert_eq!(n, out.len());
        // In order and reliable: exactly the next one.
        assert_eq!(check(&out, size_of), next);
        next += 1;
    }
    assert_eq!(next, count);
    t.join().unwrap();
    // Stream calls on a message connection are refused.
    assert!(receiver.send_msg(b"x", None, true).is_err());
}

#[test]
fn expired_messages_are_dropped_under_loss() {
    init();
    let server = bind(config());
    let listener = server.listen_messages(2).unwrap();
    // 10 ms each way: a lost packet's retransmission comes ~20 ms after
    // the original, long after the 2 ms TTL.
    let relay = Relay::start(server.local_addr(), Duration::from_millis(10), 0.03, 42);
    let cfg = Config {
        peer_idle_timeout: Duration::from_secs(5),
        ..config()
    };
    let client = bind(cfg);
    let sender = client.connect_messages(relay.front).unwrap();
    let (receiver, _) = listener.accept().unwrap();
    receiver.set_read_timeout(Some(Duration::from_secs(10)));
    let size = |_: u64| 4000; // 3 packets each
    let count = 600u64;
    let ttl = Some(Duration::from_millis(2));
    let t = std::thread::spawn(move || {
        for i in 0..count {
            sender.send_msg(&message(i, size(i)), ttl, false).unwrap();
        }
        // Then one message that must arrive whatever happens (no TTL).
        sender
            .send_msg(&message(count, size(count)), None, true)
            .unwrap();
        let stats = sender.stats();
        sender.close().unwrap();
        stats
    });
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while let Some(_n) = receiver.recv_msg_into(&mut out).unwrap() {
        let i = check(&out, size);
        assert!(seen.insert(i), "message {i} delivered twice");
    }
    let sent = t.join().unwrap();
    let recv_stats = receiver.stats();
    let lost = relay.dropped.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "delivered {} of {}, relay dropped {lost} packets, sender dropped {} messages, receiver {}",
        seen.len(),
        count + 1,
        sent.messages_dropped_sent,
        recv_stats.messages_dropped_received
    );
    assert!(seen.contains(&count), "the message without TTL was lost");
    assert!(
        lost > 0,
        "the relay dropped nothing: the test proves nothing"
    );
    assert!(seen.len() < count as usize + 1, "no message was dropped");
    // Retransmissions also come from the EXP timer (everything unacknowledged
    // is resent after a silence), so more messages expire than packets were
    // lost; still, most packets arrive the first time.
    assert!(
        seen.len() > count as usize / 10,
        "too many dropped: {}",
        seen.len()
    );
    assert!(recv_stats.messages_dropped_received > 0);
}
