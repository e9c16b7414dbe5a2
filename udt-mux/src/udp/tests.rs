//! Batched I/O on real loopback sockets: plain batches, GSO runs (on, and
//! forced off by a kernel refusal), GRO splitting, steering.

use super::*;

fn port() -> UdpPort {
    UdpPort::bind("127.0.0.1:0".parse().unwrap(), &EndpointConfig::default()).unwrap()
}

#[test]
fn batch_round_trip_keeps_order_and_sources() {
    let a = port();
    let b = port();
    let mut out: SendBatch = SendBatch::new(8, 64);
    for i in 0..8u8 {
        assert!(out.push_copy(b.local_addr(), &[i; 20]));
    }
    assert!(out.is_full());
    assert!(!out.push_copy(b.local_addr(), &[9; 20]));
    let f = out.flush(&a, true);
    assert_eq!(f.datagrams, 8);
    assert_eq!(f.bytes, 160);
    assert!(out.is_empty());
    let mut input = RecvBatch::new(4, 32, &b);
    let mut seen = Vec::new();
    // Loopback delivery is synchronous, so all 8 are queued by now.
    while seen.len() < 8 {
        let n = input.recv(&b).unwrap();
        for i in 0..n {
            let d = input.get(i).unwrap();
            assert_eq!(d.from, a.local_addr());
            assert!(!d.truncated);
            assert_eq!(d.data.len(), 20);
            seen.push(d.data[0]);
        }
        assert!(input.get(n).is_none());
    }
    assert_eq!(seen, (0..8).collect::<Vec<u8>>());
    let e = input.recv(&b).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
}

#[test]
fn oversized_datagram_is_flagged_truncated() {
    let a = port();
    let b = port();
    a.send_now(&[7u8; 100], b.local_addr()).unwrap();
    let mut input = RecvBatch::new(2, 64, &b);
    let n = input.recv(&b).unwrap();
    assert_eq!(n, 1);
    let d = input.get(0).unwrap();
    assert!(d.truncated);
    assert_eq!(d.data.len(), 64);
}

#[test]
fn unreachable_destination_does_not_stop_the_batch() {
    let a = port();
    let b = port();
    let mut out: SendBatch = SendBatch::new(4, 64);
    // A v6 destination from a v4 socket fails with EAFNOSUPPORT/EINVAL.
    out.push_copy("[::1]:9".parse().unwrap(), &[1; 10]);
    out.push_copy(b.local_addr(), &[2; 10]);
    let f = out.flush(&a, true);
    assert_eq!(f.errors, 1);
    assert_eq!(f.datagrams, 1);
    let mut input = RecvBatch::new(2, 64, &b);
    assert_eq!(input.recv(&b).unwrap(), 1);
    assert_eq!(input.get(0).unwrap().data, &[2; 10]);
}

#[test]
fn granted_buffer_sizes_are_reported() {
    let p = port();
    assert!(p.send_buffer > 0);
    assert!(p.recv_buffer() > 0);
}

/// `net.core.{w,r}mem_max`: what an unprivileged request is capped at.
fn sysctl_bytes(name: &str) -> usize {
    let path = format!("/proc/sys/net/core/{name}");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[cfg(target_os = "linux")]
#[test]
fn buffers_past_the_sysctl_cap_are_forced_when_privileged() {
    let send = 4 * sysctl_bytes("wmem_max");
    let recv = 4 * sysctl_bytes("rmem_max");
    let cfg = EndpointConfig {
        udp_send_buffer: Some(send),
        udp_recv_buffer: Some(recv),
        ..EndpointConfig::default()
    };
    let p = UdpPort::bind("127.0.0.1:0".parse().unwrap(), &cfg).unwrap();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        // CAP_NET_ADMIN: the privileged options ignore the cap (the kernel
        // reports double, its bookkeeping included).
        assert!(p.send_buffer >= send, "send {} < {send}", p.send_buffer);
        assert!(p.recv_buffer() >= recv, "recv {} < {recv}", p.recv_buffer());
    } else {
        assert!(
            p.recv_buffer() < recv,
            "an unprivileged request was not capped"
        );
    }
}

fn port_with(offload: bool) -> UdpPort {
    let cfg = EndpointConfig {
        offload,
        ..EndpointConfig::default()
    };
    UdpPort::bind("127.0.0.1:0".parse().unwrap(), &cfg).unwrap()
}

/// A datagram whose bytes say which one it is: `[i, i, ...]`, `len` long.
fn numbered(i: u8, len: usize) -> Vec<u8> {
    vec![i; len]
}

/// Receives until `want` datagrams arrived (loopback delivery is
/// synchronous, so they are all queued before the first read).
fn receive_all(input: &mut RecvBatch, port: &UdpPort, want: usize) -> (Vec<Vec<u8>>, usize) {
    let mut seen = Vec::new();
    let mut coalesced = 0;
    while seen.len() < want {
        let n = input.recv(port).unwrap();
        coalesced += input.coalesced();
        for i in 0..n {
            let d = input.get(i).unwrap();
            assert!(!d.truncated);
            seen.push(d.data.to_vec());
        }
    }
    assert_eq!(
        input.recv(port).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    (seen, coalesced)
}

/// Sends 40 equal datagrams and a short one to `to` from `from`; checks
/// they all arrive intact and in order. Returns the flush and how many
/// arrived coalesced.
fn send_run(from: &UdpPort, to: &UdpPort) -> (Flushed, usize) {
    let mut out: SendBatch = SendBatch::new(64, 1500);
    let mut want = Vec::new();
    for i in 0..40u8 {
        want.push(numbered(i, 1456));
    }
    want.push(numbered(40, 300));
    for d in &want {
        assert!(out.push_copy(to.local_addr(), d));
    }
    let f = out.flush(from, true);
    assert_eq!(f.datagrams, 41);
    assert_eq!(f.errors, 0);
    assert_eq!(f.bytes, 40 * 1456 + 300);
    let mut input = RecvBatch::new(8, 1500, to);
    let (seen, coalesced) = receive_all(&mut input, to, 41);
    assert_eq!(seen, want);
    (f, coalesced)
}

#[test]
fn a_gso_run_arrives_as_the_datagrams_it_was_made_of() {
    let a = port_with(true);
    let b = port_with(false);
    if !a.gso() {
        // A kernel without UDP_SEGMENT: the plain path is tested below.
        return;
    }
    let (f, coalesced) = send_run(&a, &b);
    // One super-datagram, one call; the receiver (no GRO) sees 41.
    assert_eq!(f.offloaded, 41);
    assert_eq!(f.calls, 1);
    assert_eq!(coalesced, 0);
    assert!(a.gso());
}

#[test]
fn without_offload_every_datagram_goes_plainly() {
    let a = port_with(false);
    let b = port_with(false);
    assert!(!a.gso() && !a.gro());
    let (f, coalesced) = send_run(&a, &b);
    assert_eq!(f.offloaded, 0);
    assert_eq!(coalesced, 0);
}

#[test]
fn a_refused_gso_send_falls_back_to_plain_datagrams() {
    let a = port_with(true);
    let b = port_with(false);
    if !a.gso() {
        return;
    }
    // With checksums off the kernel refuses GSO (EINVAL), as it does for a
    // device that cannot segment: the run must still arrive, plainly.
    let off: libc::c_int = 1;
    // SAFETY: setsockopt reads one int.
    let rc = unsafe {
        libc::setsockopt(
            a.raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            (&off as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    let (f, _) = send_run(&a, &b);
    assert_eq!(f.offloaded, 0);
    assert!(f.calls >= 2, "the refused call and the plain resend");
    assert!(!a.gso(), "GSO stays off after a refusal");
    // And the next batch goes plainly at once.
    let (f, _) = send_run(&a, &b);
    assert_eq!((f.offloaded, f.calls), (0, 1));
}

#[test]
fn a_gro_super_datagram_splits_at_the_segment_size() {
    let a = port_with(true);
    let b = port_with(true);
    if !a.gso() || !b.gro() {
        return;
    }
    let (f, coalesced) = send_run(&a, &b);
    assert_eq!(f.offloaded, 41);
    // Loopback hands a GSO datagram to a GRO socket whole: all 41,
    // including the short last one, came out of one buffer.
    assert_eq!(coalesced, 41);
}

#[test]
fn runs_break_at_peers_and_sizes_and_all_arrive() {
    let a = port_with(true);
    let b = port_with(true);
    let c = port_with(true);
    let mut out: SendBatch = SendBatch::new(32, 1500);
    let mut to_b = Vec::new();
    let mut to_c = Vec::new();
    for i in 0..30u8 {
        // b, b, c, b, b, c...: with sizes changing every 7.
        let d = numbered(i, 200 + usize::from(i / 7) * 10);
        let (dest, list) = if i % 3 == 2 {
            (c.local_addr(), &mut to_c)
        } else {
            (b.local_addr(), &mut to_b)
        };
        assert!(out.push_copy(dest, &d));
        list.push(d);
    }
    let f = out.flush(&a, true);
    assert_eq!((f.datagrams, f.errors), (30, 0));
    let mut input = RecvBatch::new(8, 1500, &b);
    assert_eq!(receive_all(&mut input, &b, to_b.len()).0, to_b);
    let mut input = RecvBatch::new(8, 1500, &c);
    assert_eq!(receive_all(&mut input, &c, to_c.len()).0, to_c);
}

#[test]
fn a_packet_pair_keeps_one_slot_past_a_full_batch() {
    let mut out: SendBatch = SendBatch::new(2, 64);
    let dest: SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert!(out.push_copy(dest, &[1]));
    assert!(out.push_copy(dest, &[2]));
    assert!(out.is_full());
    assert_eq!(out.last(), Some(&[2u8][..]));
    out.keep_pair();
    assert!(!out.is_full());
    assert!(out.push_copy(dest, &[3]));
    assert!(out.is_full());
    assert!(!out.push_copy(dest, &[4]));
    // The spare is for one pair only: a flush takes it back.
    assert_eq!(out.discard(), 3);
    assert!(out.push_copy(dest, &[1]));
    assert!(out.push_copy(dest, &[2]));
    assert!(out.is_full());
}

#[test]
fn steering_sends_each_socket_id_to_its_socket() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let cfg = EndpointConfig::default();
    let first = UdpPort::bind_with(addr, &cfg, true).unwrap();
    let second = UdpPort::bind_with(first.local_addr(), &cfg, true).unwrap();
    let ports = [first, second];
    reuseport::attach(ports[0].socket(), 2).unwrap();
    let client = port_with(false);
    let mut want: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
    for id in 1..=40u32 {
        let mut d = vec![0u8; 32];
        d[12..16].copy_from_slice(&id.to_be_bytes());
        client.send_now(&d, ports[0].local_addr()).unwrap();
        let k = reuseport::steer(&d, 2).unwrap() as usize;
        assert_eq!(k, (id % 2) as usize);
        want[k].push(id);
    }
    // Dest 0 and short datagrams: any socket, by the kernel's hash.
    let mut d = vec![0u8; 32];
    d[0] = 0x80;
    client.send_now(&d, ports[0].local_addr()).unwrap();
    client.send_now(&[1, 2, 3], ports[0].local_addr()).unwrap();
    assert_eq!(reuseport::steer(&d, 2), None);
    assert_eq!(reuseport::steer(&[1, 2, 3], 2), None);
    let mut unsteered = 0;
    for (k, port) in ports.iter().enumerate() {
        let mut input = RecvBatch::new(8, 1500, port);
        let mut got = Vec::new();
        loop {
            match input.recv(port) {
                Ok(n) => {
                    for i in 0..n {
                        let data = input.get(i).unwrap().data;
                        match data.get(12..16) {
                            Some(w) if w != [0; 4] => {
                                got.push(u32::from_be_bytes(w.try_into().unwrap()))
                            }
                            _ => unsteered += 1,
                        }
                    }
                }
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                    break;
                }
            }
        }
        assert_eq!(got, want[k], "socket {k}");
    }
    assert_eq!(unsteered, 2);
}

/// 40 datagrams of a 16-byte header and a 1440-byte payload, then a short
/// one, queued as headers whose payloads a closure gathers (as the send
/// thread gathers them from a connection's send buffer), with payload 7
/// gone meanwhile. Returns what was expected on the wire.
fn gathered_batch(to: SocketAddr) -> (SendBatch<u8>, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut out: SendBatch<u8> = SendBatch::new(64, 1500);
    let payloads: Vec<Vec<u8>> = (0..41u8)
        .map(|i| vec![i ^ 0x5A; if i == 40 { 200 } else { 1440 }])
        .collect();
    let mut want = Vec::new();
    for i in 0..41u8 {
        let header = numbered(i, 16);
        let buf = out.slot().expect("room");
        buf.clear();
        buf.extend_from_slice(&header);
        out.push_gathered(to, Some(i));
        if i != 7 {
            want.push([header, payloads[usize::from(i)].clone()].concat());
        }
    }
    assert_eq!(out.deferred(), 41);
    (out, payloads, want)
}

fn gathered_payload<'a>(payloads: &'a [Vec<u8>]) -> impl Fn(u8) -> Option<&'a [u8]> {
    move |i| (i != 7).then(|| payloads[usize::from(i)].as_slice())
}

#[test]
fn gathered_payloads_leave_as_whole_datagrams_with_and_without_gso() {
    for gso in [true, false] {
        let a = port_with(gso);
        let b = port_with(false);
        let (mut out, payloads, want) = gathered_batch(b.local_addr());
        let f = out.flush_gathered(&a, true, gathered_payload(&payloads));
        assert_eq!(out.deferred(), 0);
        assert!(out.is_empty());
        assert_eq!(f.datagrams, 40, "the one whose payload left is not sent");
        assert_eq!(f.errors, 0);
        assert_eq!(f.bytes, 39 * 1456 + 216);
        if a.gso() {
            assert_eq!(f.offloaded, 40);
            assert_eq!(f.calls, 1);
        }
        let mut input = RecvBatch::new(8, 1500, &b);
        let (seen, _) = receive_all(&mut input, &b, 40);
        assert_eq!(seen, want, "gso {gso}");
    }
}

#[test]
fn attached_payloads_make_a_batch_that_outlives_its_source() {
    let a = port_with(true);
    let b = port_with(false);
    let (mut out, payloads, want) = gathered_batch(b.local_addr());
    out.attach(gathered_payload(&payloads));
    drop(payloads);
    assert_eq!(out.deferred(), 0);
    let f = out.flush(&a, true);
    assert_eq!(f.datagrams, 40);
    let mut input = RecvBatch::new(8, 1500, &b);
    let (seen, _) = receive_all(&mut input, &b, 40);
    assert_eq!(seen, want);
}

#[cfg(target_os = "linux")]
#[test]
fn received_datagrams_carry_their_arrival_time() {
    let a = port();
    let b = port();
    assert!(b.stamps(), "the kernel stamps arrivals");
    let wall = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
    };
    let before = wall();
    a.send_now(&[1u8; 20], b.local_addr()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20)); // an age to see, not synchronisation
    a.send_now(&[2u8; 20], b.local_addr()).unwrap();
    let mut input = RecvBatch::new(4, 64, &b);
    let mut stamps = Vec::new();
    while stamps.len() < 2 {
        let n = input.recv(&b).unwrap();
        for i in 0..n {
            let age = input.get_mut(i).unwrap().age.expect("stamped");
            stamps.push(input.read_wall - age);
        }
    }
    let after = wall();
    // Both read in one call, yet each has its own time, in order, 20 ms
    // or more apart, within the test's span.
    assert!(before <= stamps[0] && stamps[1] <= after, "{stamps:?}");
    assert!(
        stamps[1] - stamps[0] >= std::time::Duration::from_millis(20),
        "{stamps:?}"
    );
}
