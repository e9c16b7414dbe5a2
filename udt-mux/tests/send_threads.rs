//! An endpoint with several sockets (`EndpointConfig::sockets`) has a send
//! thread per socket and shares its connections among them, so one
//! endpoint sending on many connections uses more than one core. Alone in
//! its test binary: it tells the threads apart by their names in `/proc`.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{config, init, read_pattern, spawn, write_pattern};
use udt_mux::{Endpoint, EndpointConfig};

const CONNECTIONS: usize = 8;
const BYTES: usize = 8 << 20;

/// CPU time of one thread in nanoseconds: `schedstat`'s first field, or,
/// on a kernel without it, user plus system time from `stat` (in clock
/// ticks, taken as the usual 10 ms).
fn thread_cpu_ns(dir: &std::path::Path) -> Option<u64> {
    if let Ok(stat) = std::fs::read_to_string(dir.join("schedstat")) {
        return stat.split_whitespace().next()?.parse().ok();
    }
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // The fields after the name in parentheses (which may hold spaces):
    // state is field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000_000)
}

/// How many of this process's threads have a name starting with `prefix`,
/// and their CPU time in nanoseconds.
fn cpu_of_threads(prefix: &str) -> (usize, u64) {
    let mut threads = 0;
    let mut ns = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = task.expect("task entry").path();
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // the thread exited meanwhile
        };
        if !name.starts_with(prefix) {
            continue;
        }
        threads += 1;
        ns += thread_cpu_ns(&dir).unwrap_or(0);
    }
    (threads, ns)
}

#[test]
fn one_endpoint_sending_on_many_connections_uses_a_send_thread_per_socket() {
    init();
    let server = Endpoint::bind_with("127.0.0.1:0", config(), EndpointConfig::default())
        .expect("bind the server");
    let listener = server.listen(2 * CONNECTIONS).expect("listen");
    let mut options = EndpointConfig::default();
    options.sockets = 2;
    let client = Endpoint::bind_with("127.0.0.1:0", config(), options).expect("bind the client");
    let mut streams = Vec::new();
    let mut readers = Vec::new();
    for i in 0..CONNECTIONS {
        streams.push(client.connect(server.local_addr()).expect("connect"));
        let (mut accepted, _) = listener
            .accept_timeout(Duration::from_secs(10))
            .expect("accept");
        readers.push(spawn(format!("reader-{i}"), move || {
            read_pattern(&mut accepted, i as u64, BYTES);
            assert_eq!(accepted.read(&mut [0u8; 1]).expect("EOF"), 0);
        }));
    }
    let (threads, before) = cpu_of_threads("udt-send1");
    assert_eq!(threads, 1, "the client's second socket has its send thread");
    let writers: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            spawn(format!("writer-{i}"), move || {
                write_pattern(&mut s, i as u64, BYTES);
                s.flush().expect("flush");
                s.close().expect("orderly close");
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    for r in readers {
        r.join().expect("reader");
    }
    let (_, second) = cpu_of_threads("udt-send1");
    let (_, all) = cpu_of_threads("udt-send");
    let second = second - before;
    // Half the connections are the second thread's; the server's send
    // thread sends only acknowledgements. Without the sharing the second
    // socket's thread would not exist, or would send nothing.
    assert!(
        second * 5 >= all,
        "the second send thread ran {second} ns of the send threads' {all} ns"
    );
}
