//! `udt bench`: an iperf3-like throughput and latency test.
//!
//! Stream mode: each of `--parallel` connections starts with a `Header`,
//! then carries length-prefixed chunks for `--seconds`, then a zero length;
//! the server answers with one JSON line ([`ServerReport`]) and both close.
//!
//! Message mode (`--msg SIZE`): a control stream carries the header; the
//! server binds a message-mode port and answers with its number (u16); the
//! client connects `--parallel` message sockets there and sends messages
//! `[seq u64][send time ns u64][padding]`; the server echoes the first 16
//! bytes of each, and the client records the round trip in a histogram.
//! When the message sockets close, the server sends its report on the
//! control stream.
//!
//! One job per module: `protocol` (the wire format both ends share),
//! `pump` (the chunks of every UDT stream of a process, moved on one thread
//! through a `Poller`), `server`, `client`, `report` (results and how they
//! are printed) and `cpu` (process CPU time). The modules depend on each
//! other in that order only: `client` and `server` use `protocol`, `pump`,
//! `report` and `cpu`; `pump` and `report` use `protocol`.

mod client;
mod cpu;
mod protocol;
mod pump;
mod report;
mod server;

pub use client::{client, ClientArgs};
pub use cpu::{cpu_percent, cpu_time};
pub use protocol::{ServerReport, MAX_PARALLEL};
pub use report::{BenchSummary, Interval, Latency};
pub use server::{server, ServerArgs};

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::Duration;

    use super::server::{self, serve_conn};
    use super::*;
    use crate::net::{Listener, NetOptions};
    use crate::ui::Output;

    #[test]
    fn stream_and_message_bench_on_loopback() {
        let net = NetOptions::default();
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), &net).unwrap();
        let addr = listener.local_addr();
        let quiet = Output::quiet();
        let server_net = net.clone();
        let pump = std::sync::Arc::new(pump::Pump::default());
        thread::spawn(move || {
            for _ in 0..4 {
                let conn = listener.accept().unwrap();
                let n = server_net.clone();
                let pump = pump.clone();
                thread::spawn(move || {
                    serve_conn(conn, &n, quiet, &server::Budget::default(), &pump)
                });
            }
        });
        let base = ClientArgs {
            target: addr.to_string(),
            duration: Duration::from_millis(700),
            parallel: 2,
            msg_size: None,
            rate: 0,
            interval: Duration::from_secs(1),
            reverse: false,
            net,
            output: quiet,
        };
        let s = client(&base).unwrap();
        assert!(s.sent_bytes > 0);
        assert_eq!(s.sent_bytes, s.received_bytes);
        assert!(s.rtt_ms.is_some());
        let m = client(&ClientArgs {
            parallel: 1,
            msg_size: Some(1000),
            rate: 2000,
            ..base.clone()
        })
        .unwrap();
        let lat = m.latency.unwrap();
        assert!(lat.count > 100, "{lat:?}");
        assert!(lat.p50_us <= lat.p99_us && lat.p99_us <= lat.max_us);
        assert_eq!(m.sent_bytes, m.received_bytes);
        // Reverse: the server sends, for the test's duration.
        let r = client(&ClientArgs {
            reverse: true,
            parallel: 1,
            ..base
        })
        .unwrap();
        assert!(r.reverse);
        assert!(r.received_bytes > 0);
        assert_eq!(r.sent_bytes, r.received_bytes);
        assert!(r.sent_seconds >= 0.6, "{r:?}");
    }
}
