//! A secure handshake between a [`Caller`] and a [`Listener`] with an
//! attacker on the path, for the structured tests and the `cargo fuzz`
//! target of the secure handshake: every datagram passes through a
//! `tamper` function that may change, replace or drop it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::handshake::{Caller, ConnectError, ConnectParams, Listener, ListenerOutput};
use crate::secure::Security;
use crate::seq::{SeqNumber, SocketId};
use crate::Config;

/// Which way a datagram travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the caller to the listener.
    ToListener,
    /// From the listener to the caller.
    ToCaller,
}

/// What a tampered handshake produced.
#[derive(Debug, Default)]
pub struct TamperedRun {
    /// The caller's result, if it finished.
    pub caller: Option<Result<ConnectParams, ConnectError>>,
    /// Every connection the listener accepted.
    pub accepted: Vec<ConnectParams>,
    /// The caller was configured for secure mode (a plain caller is not
    /// protected: it may take a replayed response).
    pub caller_secure: bool,
}

impl TamperedRun {
    /// The property the secure handshake must keep whatever the attacker
    /// did: a secure caller that connected shares its keys with a
    /// connection the real listener accepted (no one else can complete
    /// it), and a plain result never comes out of a secure configuration.
    ///
    /// # Panics
    /// When the property is broken.
    pub fn check(&self) {
        let Some(Ok(params)) = &self.caller else {
            return;
        };
        if !self.caller_secure {
            return;
        }
        let secure = params
            .secure
            .as_ref()
            .expect("a secure caller connected without keys");
        let matched = self.accepted.iter().any(|l| {
            l.secure.as_ref().is_some_and(|ls| {
                ls.keys.send_key == secure.keys.recv_key && ls.keys.recv_key == secure.keys.send_key
            })
        });
        assert!(
            matched,
            "the caller agreed keys with no accepted connection"
        );
    }
}

/// Runs one handshake, starting at `t0`, between a caller and a listener
/// configured with `caller` and `listener` security for up to 12 request
/// intervals;
/// `tamper(direction, datagram)` may rewrite each datagram or return false
/// to drop it.
pub fn tampered_handshake(
    t0: Instant,
    caller: Security,
    listener: Security,
    mut tamper: impl FnMut(Direction, &mut Vec<u8>) -> bool,
) -> TamperedRun {
    let a: SocketAddr = SocketAddr::from(([192, 0, 2, 1], 9000));
    let b: SocketAddr = SocketAddr::from(([198, 51, 100, 7], 9000));
    let cc = Config {
        security: caller,
        ..Config::default()
    };
    let lc = Config {
        security: listener,
        ..Config::default()
    };
    let mut c = Caller::new(&cc, SocketId(0x1234), b, SeqNumber::new(77), t0);
    let mut l = Listener::new(&lc, [7; 16], t0);
    let mut run = TamperedRun {
        caller_secure: cc.security.is_secure(),
        ..TamperedRun::default()
    };
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for step in 0..12u64 {
        let now = t0 + Duration::from_millis(250 * step);
        c.handle_timeout(now);
        while c.poll_transmit(now, &mut buf).is_some() {
            if !tamper(Direction::ToListener, &mut buf) {
                continue;
            }
            let mut reply = match l.handle_datagram(now, a, &buf, &mut out) {
                ListenerOutput::Nothing => continue,
                ListenerOutput::Reply => out.clone(),
                ListenerOutput::Accept(req) => {
                    if let Ok(p) = req.accept(SocketId(0x77), &lc, &mut out) {
                        run.accepted.push(p);
                    }
                    out.clone()
                }
            };
            if tamper(Direction::ToCaller, &mut reply) {
                c.handle_datagram(now, b, &reply);
            }
        }
        if let Some(r) = c.poll_result() {
            run.caller = Some(r);
            break;
        }
    }
    run
}

/// What a tampered secure rendezvous produced, per side.
#[derive(Debug, Default)]
pub struct TamperedRendezvous {
    /// Each side's result, if it finished.
    pub results: [Option<Result<ConnectParams, ConnectError>>; 2],
    /// Which sides were configured for secure mode.
    pub secure: [bool; 2],
}

impl TamperedRendezvous {
    /// The property the secure rendezvous must keep whatever the attacker
    /// did: a secure side that connected has keys (never plain out of a
    /// secure configuration; a plain side is not protected), and a side that completed as the initiator (on the
    /// responder's message 2; it holds no `response`) shares its keys with
    /// the real responder's result. A responder may complete alone (it
    /// cannot check a code): its connection stays unconfirmed.
    ///
    /// # Panics
    /// When the property is broken.
    pub fn check(&self) {
        for (i, r) in self.results.iter().enumerate() {
            let Some(Ok(p)) = r else {
                continue;
            };
            if !self.secure[i] {
                continue;
            }
            let keys = &p
                .secure
                .as_ref()
                .expect("a secure rendezvous connected without keys")
                .keys;
            if p.response.is_some() {
                continue;
            }
            let Some(Ok(other)) = &self.results[1 - i] else {
                panic!("the initiator connected without the responder");
            };
            let ok = other.secure.as_ref().is_some_and(|o| {
                o.keys.send_key == keys.recv_key && o.keys.recv_key == keys.send_key
            });
            assert!(ok, "the initiator agreed keys with no real responder");
        }
    }
}

/// Runs one secure rendezvous, starting at `t0`, between two sides with
/// `a` and `b` security for up to 24 request intervals; a side that
/// completes becomes a [`Connection`](crate::Connection), which repeats the
/// responder's message 2. `tamper(from, datagram)` (`from` is 0 or 1) may
/// rewrite each datagram or return false to drop it.
pub fn tampered_rendezvous(
    t0: Instant,
    a: Security,
    b: Security,
    mut tamper: impl FnMut(usize, &mut Vec<u8>) -> bool,
) -> TamperedRendezvous {
    use crate::handshake::Rendezvous;
    use std::sync::Arc;
    let addrs: [SocketAddr; 2] = [
        SocketAddr::from(([192, 0, 2, 1], 9000)),
        SocketAddr::from(([198, 51, 100, 7], 9000)),
    ];
    let configs = [a, b].map(|security| {
        Arc::new(Config {
            security,
            ..Config::default()
        })
    });
    let mut machines = [
        Some(Rendezvous::new(
            &configs[0],
            SocketId(0x1234),
            addrs[1],
            SeqNumber::new(77),
            t0,
        )),
        Some(Rendezvous::new(
            &configs[1],
            SocketId(0x4321),
            addrs[0],
            SeqNumber::new(99),
            t0,
        )),
    ];
    let mut conns: [Option<crate::Connection>; 2] = [None, None];
    let mut run = TamperedRendezvous {
        secure: [0, 1].map(|i| configs[i].security.is_secure()),
        ..TamperedRendezvous::default()
    };
    let mut buf = Vec::new();
    for step in 0..24u64 {
        let now = t0 + Duration::from_millis(250 * step);
        for i in 0..2 {
            let mut out = Vec::new();
            if let Some(m) = machines[i].as_mut() {
                m.handle_timeout(now);
                while m.poll_transmit(now, &mut buf).is_some() {
                    out.push(buf.clone());
                }
                if let Some(r) = m.poll_result() {
                    if let Ok(p) = &r {
                        conns[i] = Some(crate::Connection::new(p.clone(), configs[i].clone(), now));
                    }
                    run.results[i] = Some(r);
                    machines[i] = None;
                }
            }
            if let Some(c) = conns[i].as_mut() {
                c.handle_timeout(now);
                while c.poll_transmit_control(now, &mut buf).is_some() {
                    out.push(buf.clone());
                }
            }
            for mut d in out {
                if !tamper(i, &mut d) {
                    continue;
                }
                let j = 1 - i;
                if let Some(m) = machines[j].as_mut() {
                    m.handle_datagram(now, addrs[i], &d);
                } else if let Some(c) = conns[j].as_mut() {
                    c.handle_datagram(now, addrs[i], &d);
                }
            }
        }
        if run.results.iter().all(Option::is_some) {
            break;
        }
    }
    run
}

/// Applies the next tampering record of a fuzzer's input to `datagram`,
/// consuming it from `input`: records are `[op, length, bytes]`, and `op`
/// modulo 4 passes the datagram (0), drops it (1), XORs it with the bytes
/// (2) or keeps its first 64 bytes (header and body) and appends the bytes
/// (3). Once the input is used up every datagram passes. Returns false to
/// drop, as the `tamper` functions of this module expect.
pub fn tamper_from_input(input: &mut &[u8], datagram: &mut Vec<u8>) -> bool {
    let [op, len, tail @ ..] = *input else {
        return true;
    };
    let n = (*len as usize).min(tail.len());
    let (bytes, next) = tail.split_at(n);
    *input = next;
    match op % 4 {
        0 => true,
        1 => false,
        2 => {
            let len = datagram.len().max(1);
            for (i, b) in bytes.iter().enumerate() {
                if let Some(x) = datagram.get_mut(i % len) {
                    *x ^= b;
                }
            }
            true
        }
        _ => {
            datagram.truncate(64.min(datagram.len()));
            datagram.extend_from_slice(bytes);
            true
        }
    }
}
