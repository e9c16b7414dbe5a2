//! Any datagram sequence from any of a few sources into an endpoint with a
//! listener and a rendezvous socket, driven as a real driver drives it.
//! Input: records of [source (1 byte), time step (1 byte), length (1 byte),
//! datagram].
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use udt_core::endpoint::{ConnectionHandle, DatagramEvent, Endpoint, Progress, Socket};
use udt_core::Config;

fuzz_target!(|data: &[u8]| {
    #[allow(clippy::disallowed_methods)] // one epoch per input
    let mut now = Instant::now();
    let config = Arc::new(Config::default());
    let mut e = Endpoint::new(1);
    let _ = e.listen(now, config.clone(), 4);
    let sources: [SocketAddr; 4] = [
        "192.0.2.1:9000".parse().unwrap(),
        "192.0.2.2:9000".parse().unwrap(),
        "198.51.100.20:7000".parse().unwrap(),
        "[2001:db8::1]:9000".parse().unwrap(),
    ];
    let mut sockets: Vec<Option<Socket>> = Vec::new();
    if let Ok((h, s)) = e.rendezvous(now, sources[2], config) {
        sockets.resize_with(h.index() + 1, || None);
        sockets[h.index()] = Some(s);
    }
    let mut reply = Vec::new();
    let mut rest = data;
    while let [src, step, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (d, next) = tail.split_at(n);
        rest = next;
        now += Duration::from_millis(u64::from(*step) * 10);
        let from = sources[(*src & 3) as usize];
        match e.handle(now, from, d, &mut reply) {
            DatagramEvent::Route(h) => {
                if let Some(s) = sockets.get_mut(h.index()).and_then(Option::as_mut) {
                    if s.handle_datagram(now, from, d) == Progress::Failed {
                        if let Some(s) = sockets[h.index()].take() {
                            e.remove(now, h, &s);
                        }
                    }
                }
            }
            DatagramEvent::Accepted { handle, socket } => {
                if sockets.len() <= handle.index() {
                    sockets.resize_with(handle.index() + 1, || None);
                }
                assert!(sockets[handle.index()].is_none());
                sockets[handle.index()] = Some(*socket);
            }
            _ => {}
        }
        if *src & 0x80 != 0 {
            let _ = e.accept();
        }
        for i in 0..sockets.len() {
            let Some(s) = sockets[i].as_mut() else { continue };
            let failed = s.handle_timeout(now) == Progress::Failed;
            let mut buf = Vec::new();
            while s.poll_transmit(now, &mut buf).is_some() {}
            if failed || s.is_finished() {
                if let Some(s) = sockets[i].take() {
                    e.remove(now, ConnectionHandle(i as u32), &s);
                }
            }
        }
        assert_eq!(e.live(), sockets.iter().flatten().count());
    }
});
