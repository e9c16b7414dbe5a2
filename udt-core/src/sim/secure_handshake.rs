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
    let mut run = TamperedRun::default();
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
