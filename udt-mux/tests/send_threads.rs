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

/// CPU time of this process's threads whose name starts with `prefix`, in
/// nanoseconds (`/proc/self/task/*/schedstat`, first field).
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
        let Ok(stat) = std::fs::read_to_string(dir.join("schedstat")) else {
            continue;
        };
        threads += 1;
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .expect("schedstat starts with the time on the CPU");
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
