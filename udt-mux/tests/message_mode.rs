//! Message mode over real sockets: boundaries kept, and messages whose TTL
//! ran out while a packet was lost are dropped (never delivered damaged).

mod common;

use std::collections::HashSet;
use std::io;
use std::net::Shutdown;
use std::time::Duration;

use common::{bind, config, init, pattern, Relay};
use udt_mux::{
    ConnectionError, Endpoint, MessageOptions, Options, UdtMessageListener, UdtMessageSocket,
};

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
    let listener = server.listen_with(2, Options::messages()).unwrap();
    let client = bind(config());
    let sender = client
        .connect_with(server.local_addr(), Options::messages())
        .unwrap();
    let (receiver, _) = listener.accept().unwrap();
    // Sizes across packet boundaries: 1 byte to several packets.
    let size_of = |i: u64| ((i * 977) % 9000) as usize;
    let count = 400u64;
    let t = std::thread::spawn(move || {
        for i in 0..count {
            sender.send_msg(&message(i, size_of(i))).unwrap();
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
    // Sending on a connection the peer closed fails.
    assert!(receiver.send_msg(b"x").is_err());
}

#[test]
fn expired_messages_are_dropped_under_loss() {
    init();
    let server = bind(config());
    let listener = server.listen_with(2, Options::messages()).unwrap();
    // 10 ms each way: a lost packet's retransmission comes ~20 ms after
    // the original, long after the 2 ms TTL.
    let relay = Relay::start(server.local_addr(), Duration::from_millis(10), 0.03, 42);
    let mut cfg = config();
    cfg.peer_idle_timeout = Duration::from_secs(5);
    let client = bind(cfg);
    let sender = client
        .connect_with(relay.front, Options::messages())
        .unwrap();
    let (receiver, _) = listener.accept().unwrap();
    receiver.set_read_timeout(Some(Duration::from_secs(10)));
    let size = |_: u64| 4000; // 3 packets each
    let count = 600u64;
    let expendable = MessageOptions::new()
        .ttl(Duration::from_millis(2))
        .unordered();
    let t = std::thread::spawn(move || {
        for i in 0..count {
            sender
                .send_msg_with(&message(i, size(i)), expendable)
                .unwrap();
        }
        // Then one message that must arrive whatever happens (no TTL).
        sender.send_msg(&message(count, size(count))).unwrap();
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

/// A connected message pair, with the endpoints and the listener kept alive.
fn message_pair() -> (
    Endpoint,
    Endpoint,
    UdtMessageListener,
    UdtMessageSocket,
    UdtMessageSocket,
) {
    let server = bind(config());
    let listener = server.listen_with(2, Options::messages()).unwrap();
    let client = bind(config());
    let sender = client
        .connect_with(server.local_addr(), Options::messages())
        .unwrap();
    let (receiver, peer) = listener.accept().unwrap();
    assert_eq!(peer, client.local_addr());
    (server, client, listener, sender, receiver)
}

#[test]
fn message_sockets_share_the_stream_handle() {
    init();
    let (server, client, _listener, sender, receiver) = message_pair();
    // Addresses, IDs and statistics, as on a stream.
    assert_eq!(sender.peer_addr(), server.local_addr());
    assert_eq!(sender.local_addr(), client.local_addr());
    assert_ne!(sender.socket_id(), receiver.socket_id());

    // Timeouts: a receive with nothing to receive gives up, and the
    // connection stays usable (no ConnectionError inside).
    receiver.set_read_timeout(Some(Duration::from_millis(100)));
    assert_eq!(receiver.read_timeout(), Some(Duration::from_millis(100)));
    let err = receiver.recv_msg().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(err
        .get_ref()
        .and_then(|e| e.downcast_ref::<ConnectionError>())
        .is_none());

    // Non-blocking mode.
    receiver.set_nonblocking(true);
    assert_eq!(
        receiver.recv_msg().unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    receiver.set_nonblocking(false);

    // Acknowledgement: after wait_acknowledged the peer has every message.
    let clone = sender.try_clone().unwrap();
    for i in 0..20u64 {
        clone.send_msg(&message(i, 3000)).unwrap();
    }
    sender
        .wait_acknowledged(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(sender.stats().packets_sent >= 20 * 3);
    receiver.set_read_timeout(None);
    for i in 0..20u64 {
        let got = receiver.recv_msg().unwrap().expect("a message");
        assert_eq!(check(&got, |_| 3000), i);
    }
    drop(clone);

    // Read shutdown: receives report the end at once, though the peer
    // still sends (the timeout only turns a missing end into a failure).
    sender.set_read_timeout(Some(Duration::from_secs(2)));
    receiver.send_msg(b"discarded").unwrap();
    sender.shutdown(Shutdown::Read).unwrap();
    assert_eq!(sender.recv_msg().unwrap(), None);

    // Write shutdown starts the orderly close: the peer receives the end,
    // and its own sends then fail with the reason inside.
    sender.shutdown(Shutdown::Write).unwrap();
    receiver.set_read_timeout(Some(Duration::from_secs(5)));
    assert_eq!(receiver.recv_msg().unwrap(), None);
    let err = receiver.send_msg(b"late").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
    assert_eq!(
        err.get_ref()
            .and_then(|e| e.downcast_ref::<ConnectionError>())
            .copied(),
        Some(ConnectionError::PeerClosed)
    );
    sender.close().unwrap();
}

#[test]
fn message_rendezvous_by_name() {
    init();
    let a = bind(config());
    let b = bind(config());
    // Addresses as text, resolved by the endpoint.
    let a_name = format!("127.0.0.1:{}", a.local_addr().port());
    let b_name = format!("127.0.0.1:{}", b.local_addr().port());
    let t = std::thread::spawn(move || {
        let s = b.rendezvous_with(a_name, Options::messages()).unwrap();
        let got = s.recv_msg().unwrap();
        s.send_msg(b"pong").unwrap();
        s.close().unwrap();
        got
    });
    let s = a.rendezvous_with(b_name, Options::messages()).unwrap();
    s.send_msg(b"ping").unwrap();
    assert_eq!(s.recv_msg().unwrap().as_deref(), Some(&b"pong"[..]));
    assert_eq!(t.join().unwrap().as_deref(), Some(&b"ping"[..]));
    assert_eq!(s.recv_msg().unwrap(), None);
}
