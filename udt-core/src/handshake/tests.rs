//! Handshake tests: the udt4-protocol.md §14 vectors byte for byte, full
//! exchanges fed by hand, cookie buckets, timeouts and hostile input.

use super::*;
use crate::packet::{encode_data, DataHeader, PacketPosition, HEADER_SIZE};
use crate::rng::Rng;
use crate::seq::MsgNumber;
use std::net::Ipv4Addr;

use crate::time::test_epoch as epoch;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(last: u8, port: u16) -> SocketAddr {
    (Ipv4Addr::new(127, 0, 0, last), port).into()
}

fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// A handshake datagram from its header destination and 12 body words.
fn hs_datagram(dest: u32, body: [u32; 12]) -> Vec<u8> {
    let mut d = words(&[0x8000_0000, 0, 0, dest]);
    d.extend_from_slice(&words(&body));
    d
}

fn decode_hs(d: &[u8]) -> (SocketId, Handshake) {
    match decode(d) {
        Ok(Packet::Control(ControlPacket {
            dest,
            control: Control::Handshake(hs),
            ..
        })) => (dest, hs),
        other => panic!("not a handshake: {other:?}"),
    }
}

const SECRET: [u8; 16] = *b"0123456789abcdef";

/// §14 vector 1's request: `{4, 1, ISN=0x3039, 1500, 25600, 1, id=0x11223344,
/// 0, peerIP=7F000001 0 0 0}`, header all zero but the control flag.
fn vector_1_request() -> Vec<u8> {
    hs_datagram(
        0,
        [
            4,
            1,
            0x3039,
            1500,
            25600,
            1,
            0x1122_3344,
            0,
            0x7F00_0001,
            0,
            0,
            0,
        ],
    )
}

#[test]
fn vector_1_cookie_reply_echoes_the_request() {
    let t0 = epoch();
    let mut listener = Listener::new(&Config::default(), SECRET, t0);
    let from = addr(1, 40_000);
    let mut out = Vec::new();
    let r = listener.handle_datagram(t0 + ms(10), from, &vector_1_request(), &mut out);
    assert_eq!(r, ListenerOutput::Reply);
    let c = cookie::cookie(&SECRET, from, 0);
    // header `80000000 00000000 00000000 11223344`; the body is the request
    // unchanged with the cookie set (ours is a keyed hash, not UDT4's MD5).
    let expected = hs_datagram(
        0x1122_3344,
        [
            4,
            1,
            0x3039,
            1500,
            25600,
            1,
            0x1122_3344,
            c,
            0x7F00_0001,
            0,
            0,
            0,
        ],
    );
    assert_eq!(out, expected);
}

#[test]
fn vector_2_final_listener_response() {
    let t0 = epoch();
    let mut listener = Listener::new(&Config::default(), SECRET, t0);
    let from = addr(1, 40_000);
    let c = cookie::cookie(&SECRET, from, 0);
    let request = hs_datagram(
        0,
        [
            4,
            1,
            0x3039,
            1500,
            25600,
            u32::MAX,
            0x1122_3344,
            c,
            0x7F00_0001,
            0,
            0,
            0,
        ],
    );
    let mut out = Vec::new();
    let ListenerOutput::Accept(req) = listener.handle_datagram(t0, from, &request, &mut out) else {
        panic!("not accepted");
    };
    assert_eq!(
        req.key(),
        (from, SocketId(0x1122_3344), SeqNumber::new(0x3039))
    );
    // The request's peer IP is in plain order here (a hand-made peer); with
    // no hint the UDT4 layout wins.
    assert_eq!(req.self_ip, Some(Ipv4Addr::new(1, 0, 0, 127).into()));
    let new_id = SocketId(0x2BAD_F00D);
    let params = req
        .accept(new_id, &Config::default(), &mut out)
        .expect("a plain listener accepts");
    // body `00000004 00000001 00003039 000005DC 00002000 FFFFFFFF <new id>
    // <cookie> 0100007F 00000000 00000000 00000000`, header dest = caller.
    let expected = hs_datagram(
        0x1122_3344,
        [
            4,
            1,
            0x3039,
            1500,
            0x2000,
            0xFFFF_FFFF,
            new_id.0,
            c,
            0x0100_007F,
            0,
            0,
            0,
        ],
    );
    assert_eq!(out, expected);
    assert_eq!(
        params,
        ConnectParams {
            local_socket_id: new_id,
            peer_socket_id: SocketId(0x1122_3344),
            peer_addr: from,
            send_isn: SeqNumber::new(0x3039),
            recv_isn: SeqNumber::new(0x3039),
            mss: 1500,
            peer_flow_window: 25600,
            socket_type: SocketType::Stream,
            rendezvous: false,
            self_ip: Some(Ipv4Addr::new(1, 0, 0, 127).into()),
            response: Some(decode_hs(&expected).1),
            secure: None,
        }
    );

    // Knowing its own address, the listener reads the plain layout right.
    listener.set_local_ip(Some(Ipv4Addr::new(127, 0, 0, 1).into()));
    let ListenerOutput::Accept(req) = listener.handle_datagram(t0, from, &request, &mut out) else {
        panic!("not accepted");
    };
    assert_eq!(req.self_ip, Some(Ipv4Addr::LOCALHOST.into()));
}

#[test]
fn vector_3_caller_requests_and_completion_on_vector_2() {
    let t0 = epoch();
    let server = addr(1, 9000);
    let id = SocketId(0x1122_3344);
    let mut caller = Caller::new(&Config::default(), id, server, SeqNumber::new(0x3039), t0);
    let mut buf = Vec::new();
    assert_eq!(caller.poll_transmit(t0, &mut buf), Some(server));
    // §14 vector 3: dest 0; `{4, 1, ISN, 1500, 8192, 1, id, 0, 0100007F 0 0 0}`.
    assert_eq!(
        buf,
        hs_datagram(
            0,
            [4, 1, 0x3039, 1500, 8192, 1, id.0, 0, 0x0100_007F, 0, 0, 0]
        )
    );
    assert_eq!(caller.poll_transmit(t0, &mut buf), None);
    assert_eq!(caller.poll_timeout(), Some(t0 + REQUEST_INTERVAL));

    // UDT4's cookie reply (vector 1) → the −1 request goes out at once.
    let reply = hs_datagram(
        id.0,
        [
            4,
            1,
            0x3039,
            1500,
            8192,
            1,
            id.0,
            0xCA1E_59B1,
            0x0100_007F,
            0,
            0,
            0,
        ],
    );
    caller.handle_datagram(t0 + ms(1), server, &reply);
    assert_eq!(caller.poll_transmit(t0 + ms(1), &mut buf), Some(server));
    assert_eq!(
        buf,
        hs_datagram(
            0,
            [
                4,
                1,
                0x3039,
                1500,
                8192,
                u32::MAX,
                id.0,
                0xCA1E_59B1,
                0x0100_007F,
                0,
                0,
                0
            ]
        )
    );
    // A duplicate echo does not trigger another send.
    caller.handle_datagram(t0 + ms(2), server, &reply);
    assert_eq!(caller.poll_transmit(t0 + ms(2), &mut buf), None);

    // UDT4's final response (vector 2).
    let response = hs_datagram(
        id.0,
        [
            4,
            1,
            0x3039,
            1500,
            0x2000,
            u32::MAX,
            0x0AAA_0001,
            0xCA1E_59B1,
            0x0100_007F,
            0,
            0,
            0,
        ],
    );
    caller.handle_datagram(t0 + ms(3), server, &response);
    assert!(caller.is_finished());
    assert_eq!(caller.poll_timeout(), None);
    assert_eq!(caller.poll_transmit(t0 + ms(500), &mut buf), None);
    let params = caller.poll_result().unwrap().unwrap();
    assert_eq!(caller.poll_result(), None, "the result is handed out once");
    assert_eq!(
        params,
        ConnectParams {
            local_socket_id: id,
            peer_socket_id: SocketId(0x0AAA_0001),
            peer_addr: server,
            send_isn: SeqNumber::new(0x3039),
            recv_isn: SeqNumber::new(0x3039),
            mss: 1500,
            peer_flow_window: 8192,
            socket_type: SocketType::Stream,
            rendezvous: false,
            self_ip: Some(Ipv4Addr::LOCALHOST.into()),
            response: None,
            secure: None,
        }
    );
}

/// Runs a caller against a listener by hand, feeding each output into the
/// other side; returns both sides' parameters.
fn caller_meets_listener(
    caller_config: &Config,
    listener_config: &Config,
    isn: SeqNumber,
) -> (Result<ConnectParams, ConnectError>, Option<ConnectParams>) {
    let t0 = epoch();
    let (c_addr, l_addr) = (addr(2, 5000), addr(1, 9000));
    let mut caller = Caller::new(caller_config, SocketId(77), l_addr, isn, t0);
    let mut listener = Listener::new(listener_config, SECRET, t0);
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    let mut accepted = None;
    let mut now = t0;
    for _ in 0..20 {
        while let Some(to) = caller.poll_transmit(now, &mut buf) {
            assert_eq!(to, l_addr);
            match listener.handle_datagram(now, c_addr, &buf, &mut out) {
                ListenerOutput::Nothing => {}
                ListenerOutput::Reply => caller.handle_datagram(now, l_addr, &out),
                ListenerOutput::Accept(req) => {
                    let params = req
                        .accept(SocketId(1000), listener_config, &mut out)
                        .expect("a plain listener accepts");
                    accepted = Some(params);
                    caller.handle_datagram(now, l_addr, &out);
                }
            }
        }
        if let Some(r) = caller.poll_result() {
            return (r, accepted);
        }
        now = caller.poll_timeout().unwrap();
        caller.handle_timeout(now);
    }
    panic!("no result");
}

#[test]
fn caller_and_listener_connect() {
    let isn = SeqNumber::new(0x7FFF_FFFF);
    let small = Config {
        mss: 1400,
        recv_buffer_packets: 100,
        ..Config::default()
    };
    let (c, l) = caller_meets_listener(&Config::default(), &small, isn);
    let (c, l) = (c.unwrap(), l.unwrap());
    assert_eq!(
        (c.send_isn, c.recv_isn, l.send_isn, l.recv_isn),
        (isn, isn, isn, isn)
    );
    assert_eq!((c.mss, l.mss), (1400, 1400));
    assert_eq!(
        c.peer_flow_window, 100,
        "the listener advertises min(rcvbuf, FC)"
    );
    assert_eq!(l.peer_flow_window, 8192);
    assert_eq!(
        (c.peer_socket_id, l.peer_socket_id),
        (SocketId(1000), SocketId(77))
    );
    assert_eq!(
        (c.local_socket_id, l.local_socket_id),
        (SocketId(77), SocketId(1000))
    );
    assert_eq!(c.self_ip, Some(addr(2, 0).ip()));
    assert_eq!(l.self_ip, Some(addr(1, 0).ip()));
    assert!(l.response.is_some() && c.response.is_none());
}

#[test]
fn version_and_type_mismatch_are_rejected_with_1002() {
    let message = Config {
        socket_type: SocketType::Message,
        ..Config::default()
    };
    let (c, l) = caller_meets_listener(&Config::default(), &message, SeqNumber::new(5));
    assert_eq!(c, Err(ConnectError::Rejected));
    assert_eq!(l, None);

    // Version 5: the request echoed byte for byte, word 5 = 1002.
    let t0 = epoch();
    let from = addr(3, 4000);
    let mut listener = Listener::new(&Config::default(), SECRET, t0);
    let c = cookie::cookie(&SECRET, from, 0);
    let body = [5, 1, 9, 1500, 8192, u32::MAX, 42, c, 0x0100_007F, 0, 0, 0];
    let mut out = Vec::new();
    let r = listener.handle_datagram(t0, from, &hs_datagram(0, body), &mut out);
    assert_eq!(r, ListenerOutput::Reply);
    let mut expected = body;
    expected[5] = 1002;
    assert_eq!(out, hs_datagram(42, expected));
    // Socket type 7 (unknown) and MSS below the minimum: rejected too.
    for (i, v) in [(1, 7), (3, 75)] {
        let mut b = body;
        b[0] = 4;
        b[i] = v;
        assert_eq!(
            listener.handle_datagram(t0, from, &hs_datagram(0, b), &mut out),
            ListenerOutput::Reply
        );
        assert_eq!(decode_hs(&out).1.req_type, ReqType::Rejected);
    }
}

#[test]
fn cookie_buckets() {
    let t0 = epoch();
    let from = addr(4, 4444);
    let mut listener = Listener::new(&Config::default(), SECRET, t0);
    let mut out = Vec::new();
    let request = |cookie: u32| {
        hs_datagram(
            0,
            [
                4,
                1,
                9,
                1500,
                8192,
                u32::MAX,
                42,
                cookie,
                0x0100_007F,
                0,
                0,
                0,
            ],
        )
    };
    // Cookie issued in bucket 0, at 59.9 s.
    let issued_at = t0 + ms(59_900);
    let req1 = hs_datagram(0, [4, 1, 9, 1500, 8192, 1, 42, 0, 0x0100_007F, 0, 0, 0]);
    assert_eq!(
        listener.handle_datagram(issued_at, from, &req1, &mut out),
        ListenerOutput::Reply
    );
    let c = decode_hs(&out).1.cookie;
    let accepted = |r: &ListenerOutput| matches!(r, ListenerOutput::Accept(_));
    // Same bucket, next bucket (the exchange straddles a minute): accepted.
    for t in [issued_at, t0 + ms(60_000), t0 + ms(119_999)] {
        assert!(accepted(&listener.handle_datagram(
            t,
            from,
            &request(c),
            &mut out
        )));
    }
    // Two buckets later: a replay, silently ignored.
    for t in [t0 + ms(120_000), t0 + ms(600_000)] {
        assert_eq!(
            listener.handle_datagram(t, from, &request(c), &mut out),
            ListenerOutput::Nothing
        );
    }
    // A wrong cookie, or the right cookie from another port: ignored.
    assert_eq!(
        listener.handle_datagram(issued_at, from, &request(c ^ 1), &mut out),
        ListenerOutput::Nothing
    );
    assert_eq!(
        listener.handle_datagram(issued_at, addr(4, 4445), &request(c), &mut out),
        ListenerOutput::Nothing
    );
    // A cookie from another listener's secret: ignored.
    let other = cookie::cookie(&[9; 16], from, 0);
    assert_eq!(
        listener.handle_datagram(issued_at, from, &request(other), &mut out),
        ListenerOutput::Nothing
    );
}

#[test]
fn listener_ignores_what_udt4_ignores() {
    let t0 = epoch();
    let from = addr(5, 5555);
    let mut listener = Listener::new(&Config::default(), SECRET, t0);
    let mut out = Vec::new();
    let good = vector_1_request();
    // 52-byte body [X], 44-byte body, destination not 0, socket ID 0,
    // rendezvous and −2 requests, data and other control packets.
    let mut long = good.clone();
    long.extend_from_slice(&[0; 4]);
    let mut dest = good.clone();
    dest[15] = 1;
    let mut zero_id = good.clone();
    zero_id[HEADER_SIZE + 24..HEADER_SIZE + 28].fill(0);
    let rendezvous = hs_datagram(0, [4, 1, 9, 1500, 8192, 0, 42, 0, 0, 0, 0, 0]);
    let connected = hs_datagram(0, [0, 0, 9, 1500, 8192, (-2i32) as u32, 42, 0, 0, 0, 0, 0]);
    let keep_alive = words(&[0x8001_0000, 0, 0, 0, 0]);
    let mut data = words(&[1, 0xC000_0001, 0, 0]);
    data.resize(64, 0);
    for d in [
        &long[..],
        &good[..60],
        &dest,
        &zero_id,
        &rendezvous,
        &connected,
        &keep_alive,
        &data,
    ] {
        assert_eq!(
            listener.handle_datagram(t0, from, d, &mut out),
            ListenerOutput::Nothing
        );
    }
}

#[test]
fn reject_from_a_full_backlog() {
    let t0 = epoch();
    let (c_addr, l_addr) = (addr(2, 5000), addr(1, 9000));
    let mut caller = Caller::new(
        &Config::default(),
        SocketId(77),
        l_addr,
        SeqNumber::new(1),
        t0,
    );
    let mut listener = Listener::new(&Config::default(), SECRET, t0);
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    caller.poll_transmit(t0, &mut buf).unwrap();
    assert_eq!(
        listener.handle_datagram(t0, c_addr, &buf, &mut out),
        ListenerOutput::Reply
    );
    caller.handle_datagram(t0, l_addr, &out);
    caller.poll_transmit(t0, &mut buf).unwrap();
    let ListenerOutput::Accept(req) = listener.handle_datagram(t0, c_addr, &buf, &mut out) else {
        panic!("not accepted");
    };
    req.reject(&mut out);
    let (dest, hs) = decode_hs(&out);
    assert_eq!((dest, hs.req_type), (SocketId(77), ReqType::Rejected));
    assert_eq!(
        Handshake {
            req_type: ReqType::Response,
            ..hs
        },
        *req.request()
    );
    caller.handle_datagram(t0, l_addr, &out);
    assert_eq!(caller.poll_result(), Some(Err(ConnectError::Rejected)));
}

#[test]
fn caller_checks_the_isn_and_accepts_version_0_replies() {
    let t0 = epoch();
    let server = addr(1, 9000);
    let id = SocketId(3);
    let reply = |isn: u32, version: u32, req: i32| {
        hs_datagram(
            id.0,
            [
                version, version, isn, 1500, 25600, req as u32, 8, 0, 0, 0, 0, 0,
            ],
        )
    };
    // A −2 with version and type 0 (a connected socket's reply, §4.2 step 5).
    let mut caller = Caller::new(&Config::default(), id, server, SeqNumber::new(100), t0);
    caller.handle_datagram(t0, server, &reply(100, 0, -2));
    let p = caller.poll_result().unwrap().unwrap();
    assert_eq!(
        (p.peer_socket_id, p.peer_flow_window, p.self_ip),
        (SocketId(8), 25600, None)
    );

    // A wrong ISN: ESECFAIL.
    let mut caller = Caller::new(&Config::default(), id, server, SeqNumber::new(100), t0);
    caller.handle_datagram(t0, server, &reply(101, 4, -1));
    assert_eq!(caller.poll_result(), Some(Err(ConnectError::IsnMismatch)));

    // From another address, to another socket ID, rendezvous or unknown
    // request types, an implausible MSS: ignored.
    let mut caller = Caller::new(&Config::default(), id, server, SeqNumber::new(100), t0);
    caller.handle_datagram(t0, addr(1, 9001), &reply(100, 4, -1));
    let mut other_dest = reply(100, 4, -1);
    other_dest[15] = 4;
    caller.handle_datagram(t0, server, &other_dest);
    caller.handle_datagram(t0, server, &reply(100, 4, 0));
    caller.handle_datagram(t0, server, &reply(100, 4, 17));
    let mut tiny = reply(100, 4, -1);
    tiny[HEADER_SIZE + 12..HEADER_SIZE + 16].copy_from_slice(&10u32.to_be_bytes());
    caller.handle_datagram(t0, server, &tiny);
    assert!(!caller.is_finished());
}

#[test]
fn caller_times_out_after_exactly_connect_timeout() {
    let t0 = epoch();
    let server = addr(1, 9000);
    let mut caller = Caller::new(
        &Config::default(),
        SocketId(1),
        server,
        SeqNumber::new(0),
        t0,
    );
    let mut buf = Vec::new();
    let mut sends = Vec::new();
    let mut now = t0;
    let result = loop {
        while let Some(to) = caller.poll_transmit(now, &mut buf) {
            assert_eq!(to, server);
            sends.push(now - t0);
        }
        if let Some(r) = caller.poll_result() {
            break r;
        }
        now = caller.poll_timeout().unwrap();
        caller.handle_timeout(now);
    };
    assert_eq!(result, Err(ConnectError::TimedOut));
    assert_eq!(now - t0, Duration::from_secs(3));
    // 0, 0.25, …, 2.75 s: 12 requests ([X]: 0, 0.26 … 2.81 s, error at 3.0 s).
    let expected: Vec<_> = (0..12).map(|i| ms(250 * i)).collect();
    assert_eq!(sends, expected);
    // A reply after the deadline changes nothing.
    let late = hs_datagram(1, [4, 1, 0, 1500, 8192, u32::MAX, 9, 0, 0, 0, 0, 0]);
    caller.handle_datagram(now, server, &late);
    assert_eq!(caller.poll_result(), None);
    assert_eq!(caller.poll_timeout(), None);
}

#[test]
fn a_huge_timeout_does_not_overflow() {
    let t0 = epoch();
    let config = Config {
        connect_timeout: Duration::MAX,
        ..Config::default()
    };
    let mut caller = Caller::new(&config, SocketId(1), addr(1, 1), SeqNumber::new(0), t0);
    let mut buf = Vec::new();
    assert!(caller.poll_transmit(t0, &mut buf).is_some());
    assert_eq!(caller.poll_timeout(), Some(t0 + REQUEST_INTERVAL));
    caller.handle_timeout(t0 + Duration::from_secs(1_000_000));
    assert!(!caller.is_finished());
}

#[test]
fn poll_transmit_alone_enforces_the_deadline() {
    let t0 = epoch();
    let mut caller = Caller::new(
        &Config::default(),
        SocketId(1),
        addr(1, 1),
        SeqNumber::new(0),
        t0,
    );
    let mut buf = Vec::new();
    assert!(caller
        .poll_transmit(t0 + Duration::from_secs(3), &mut buf)
        .is_none());
    assert_eq!(caller.poll_result(), Some(Err(ConnectError::TimedOut)));
}

#[test]
fn vector_7_rendezvous_as_libudt_does_it() {
    let t0 = epoch();
    let peer = addr(9, 7000);
    let id = SocketId(0x0101_0101);
    let isn = SeqNumber::new(0x1234);
    let mut r = Rendezvous::new(&Config::default(), id, peer, isn, t0);
    let mut buf = Vec::new();
    // `{4,1,isn,1500,8192,0,id,0,peer}` with dest 0.
    assert_eq!(r.poll_transmit(t0, &mut buf), Some(peer));
    assert_eq!(
        buf,
        hs_datagram(
            0,
            [4, 1, 0x1234, 1500, 8192, 0, id.0, 0, 0x0900_007F, 0, 0, 0]
        )
    );
    // The peer's req 0 → `{…, −1, …}` at once, dest = the peer's id.
    let peer_id = 0x0202_0202;
    let peer_req0 = hs_datagram(0, [4, 1, 0x5678, 1500, 8192, 0, peer_id, 0, 0, 0, 0, 0]);
    r.handle_datagram(t0 + ms(5), peer, &peer_req0);
    assert_eq!(r.poll_transmit(t0 + ms(5), &mut buf), Some(peer));
    assert_eq!(
        buf,
        hs_datagram(
            peer_id,
            [
                4,
                1,
                0x1234,
                1500,
                8192,
                u32::MAX,
                id.0,
                0,
                0x0900_007F,
                0,
                0,
                0
            ]
        )
    );
    assert_eq!(r.poll_timeout(), Some(t0 + ms(255)));
    // Once connected, libudt replies `{0,0,isn,1500,25600,−2,id,0,0…}`.
    let connected = hs_datagram(
        id.0,
        [
            0,
            0,
            0x5678,
            1500,
            25600,
            (-2i32) as u32,
            peer_id,
            0,
            0,
            0,
            0,
            0,
        ],
    );
    r.handle_datagram(t0 + ms(10), peer, &connected);
    assert_eq!(
        r.poll_result(),
        Some(Ok(ConnectParams {
            local_socket_id: id,
            peer_socket_id: SocketId(peer_id),
            peer_addr: peer,
            send_isn: isn,
            recv_isn: SeqNumber::new(0x5678),
            mss: 1500,
            peer_flow_window: 25600,
            socket_type: SocketType::Stream,
            rendezvous: true,
            self_ip: None,
            response: None,
            secure: None,
        }))
    );
}

#[test]
fn rendezvous_ignores_callers_and_takes_the_shortcut() {
    let t0 = epoch();
    let peer = addr(9, 7000);
    let id = SocketId(11);
    let hs = |req: i32| hs_datagram(0, [4, 1, 50, 1500, 8192, req as u32, 22, 0, 0, 0, 0, 0]);
    // The same, addressed to our socket ID: only the real peer (which saw
    // our request) knows it (issue 10 item 5).
    let hs_to_us =
        |req: i32| hs_datagram(id.0, [4, 1, 50, 1500, 8192, req as u32, 22, 0, 0, 0, 0, 0]);
    let keep_alive = words(&[0x8001_0000, 0, 0, id.0, 0]);
    let mut data = Vec::new();
    encode_data(
        &DataHeader {
            seq: SeqNumber::new(50),
            position: PacketPosition::Only,
            in_order: false,
            msg: MsgNumber::FIRST,
            timestamp: 0,
            dest: id,
        },
        b"x",
        &mut data,
    );
    let mut buf = Vec::new();

    let mut r = Rendezvous::new(&Config::default(), id, peer, SeqNumber::new(1), t0);
    r.poll_transmit(t0, &mut buf).unwrap();
    // A normal caller's request is ignored: no state change, nothing sent.
    r.handle_datagram(t0, peer, &hs(1));
    assert_eq!(r.poll_transmit(t0 + ms(1), &mut buf), None);
    // Data and keep-alives before any peer handshake: ignored.
    r.handle_datagram(t0, peer, &data);
    r.handle_datagram(t0, peer, &keep_alive);
    assert!(!r.is_finished());
    // With a stored handshake addressed to 0 (anyone could have sent it),
    // a keep-alive does not complete; with one addressed to us, it does.
    r.handle_datagram(t0, peer, &hs(0));
    r.handle_datagram(t0, peer, &keep_alive);
    assert!(!r.is_finished());
    r.handle_datagram(t0, peer, &hs_to_us(0));
    r.handle_datagram(t0, peer, &keep_alive);
    let p = r.poll_result().unwrap().unwrap();
    assert_eq!(
        (p.peer_socket_id, p.recv_isn),
        (SocketId(22), SeqNumber::new(50))
    );

    // A data packet does too, but only one addressed to us.
    let mut r = Rendezvous::new(&Config::default(), id, peer, SeqNumber::new(1), t0);
    r.handle_datagram(t0, peer, &hs(-1));
    let mut misaddressed = data.clone();
    misaddressed[15] ^= 1;
    r.handle_datagram(t0, peer, &misaddressed);
    r.handle_datagram(t0, addr(9, 7001), &data);
    assert!(!r.is_finished());
    r.handle_datagram(t0, peer, &data);
    assert!(r.poll_result().unwrap().is_ok());

    // At −1, a peer −1 addressed to us completes at once; one addressed
    // to 0, 1002 and unknown types do not.
    let mut r = Rendezvous::new(&Config::default(), id, peer, SeqNumber::new(1), t0);
    r.handle_datagram(t0, peer, &hs(0));
    r.handle_datagram(t0, peer, &hs(1002));
    r.handle_datagram(t0, peer, &hs(-7));
    r.handle_datagram(t0, peer, &hs(-1));
    assert!(!r.is_finished());
    r.handle_datagram(t0, peer, &hs_to_us(-1));
    assert!(r.poll_result().unwrap().is_ok());
}

#[test]
fn a_third_party_cannot_complete_or_derail_a_rendezvous() {
    // The attacker spoofs the peer's address but never sees our traffic,
    // so it does not know our (random) socket ID.
    let t0 = epoch();
    let peer = addr(9, 7000);
    let id = SocketId(0x1357_9BDF);
    let forged = |req: i32| hs_datagram(0, [4, 1, 777, 1500, 8192, req as u32, 666, 0, 0, 0, 0, 0]);
    let real = |dest: u32, req: i32| {
        hs_datagram(dest, [4, 1, 50, 1500, 8192, req as u32, 22, 0, 0, 0, 0, 0])
    };
    let mut buf = Vec::new();
    let mut r = Rendezvous::new(&Config::default(), id, peer, SeqNumber::new(1), t0);
    r.poll_transmit(t0, &mut buf).unwrap();
    // UDT4 (and this code before issue 10) completed on the second one.
    for req in [0, -1, -1, -2, -1] {
        r.handle_datagram(t0, peer, &forged(req));
    }
    let mut keep_alive = Vec::new();
    Packet::Control(ControlPacket {
        timestamp: 0,
        dest: id,
        control: Control::KeepAlive,
    })
    .encode(&mut keep_alive);
    r.handle_datagram(t0, peer, &keep_alive);
    assert!(!r.is_finished(), "a third party completed the rendezvous");
    // The real peer saw our request and answers to our ID: the connection
    // takes its values, not the forger's.
    r.handle_datagram(t0 + ms(1), peer, &real(id.0, -1));
    let p = r
        .poll_result()
        .unwrap()
        .expect("completes with the real peer");
    assert_eq!(
        (p.peer_socket_id, p.recv_isn),
        (SocketId(22), SeqNumber::new(50))
    );

    // Once the real peer is known, forged handshakes to 0 cannot replace
    // it, even before completion.
    let mut r = Rendezvous::new(&Config::default(), id, peer, SeqNumber::new(1), t0);
    r.handle_datagram(t0, peer, &real(id.0, 0));
    for req in [0, -1, -2] {
        r.handle_datagram(t0, peer, &forged(req));
    }
    assert!(!r.is_finished());
    assert_eq!(r.poll_transmit(t0 + ms(1), &mut buf), Some(peer));
    assert_eq!(
        crate::packet::peek_dest(&buf),
        Some(SocketId(22)),
        "our requests still go to the real peer"
    );
    r.handle_datagram(t0 + ms(2), peer, &real(id.0, -2));
    let p = r.poll_result().unwrap().expect("completes");
    assert_eq!(p.peer_socket_id, SocketId(22));
}

#[test]
fn rendezvous_times_out_after_rendezvous_timeout() {
    let t0 = epoch();
    let mut r = Rendezvous::new(
        &Config::default(),
        SocketId(1),
        addr(1, 1),
        SeqNumber::new(0),
        t0,
    );
    let mut buf = Vec::new();
    let mut sends = 0;
    let mut now = t0;
    let result = loop {
        while r.poll_transmit(now, &mut buf).is_some() {
            sends += 1;
        }
        if let Some(res) = r.poll_result() {
            break res;
        }
        now = r.poll_timeout().unwrap();
        r.handle_timeout(now);
    };
    assert_eq!(result, Err(ConnectError::TimedOut));
    assert_eq!(now - t0, Duration::from_secs(30));
    assert_eq!(sends, 120);
}

/// Random and mutated datagrams into every machine: nothing panics, and the
/// listener's replies are always well-formed 64-byte handshakes.
#[test]
fn hostile_handshakes_never_panic() {
    let seed = 0x0BAD_5EED;
    let mut rng = Rng::new(seed);
    let t0 = epoch();
    let server = addr(1, 9000);
    let config = Config::default();
    let mut listener = Listener::new(&config, SECRET, t0);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let valid = [
        vector_1_request(),
        hs_datagram(0, [4, 1, 9, 1500, 8192, u32::MAX, 42, 0, 0, 0, 0, 0]),
        hs_datagram(7, [0, 0, 9, 1500, 8192, (-2i32) as u32, 42, 0, 0, 0, 0, 0]),
        hs_datagram(7, [4, 1, 9, 1500, 8192, 0, 42, 0, 0, 0, 0, 0]),
        // A valid −1 from `server`: mutations reach Accept and 1002.
        hs_datagram(
            0,
            [
                4,
                1,
                9,
                1500,
                8192,
                u32::MAX,
                42,
                cookie::cookie(&SECRET, server, 0),
                0,
                0,
                0,
                0,
            ],
        ),
    ];
    let mut accepts = 0;
    let mut datagram = Vec::new();
    for case in 0..30_000u32 {
        let now = t0 + ms(u64::from(case));
        datagram.clear();
        if case % 2 == 0 {
            let len = rng.below(100) as usize;
            datagram.extend((0..len).map(|_| rng.next_u32() as u8));
            if rng.chance(0.5) && !datagram.is_empty() {
                datagram[0] |= 0x80; // a control packet, more often type 0
                if datagram.len() > 1 {
                    datagram[1] = 0;
                }
            }
        } else {
            datagram.extend_from_slice(&valid[rng.below(valid.len() as u64) as usize]);
            for _ in 0..=rng.below(3) {
                let i = rng.below(datagram.len() as u64) as usize;
                datagram[i] = rng.next_u32() as u8;
            }
            datagram.truncate(rng.below(80) as usize);
        }
        let from = addr(1 + (rng.below(3) as u8), 9000);
        match listener.handle_datagram(now, from, &datagram, &mut out) {
            ListenerOutput::Reply => {
                assert_eq!(out.len(), 64, "seed={seed:#x} case={case}");
                decode_hs(&out);
            }
            ListenerOutput::Accept(req) => {
                accepts += 1;
                assert!(req.mss >= MIN_MSS && req.mss <= config.mss);
                assert!(req.accept(SocketId(1), &config, &mut out).is_ok());
                assert_eq!(out.len(), 64, "seed={seed:#x} case={case}");
            }
            ListenerOutput::Nothing => {}
        }
        let mut caller = Caller::new(&config, SocketId(7), server, SeqNumber::new(9), now);
        caller.handle_datagram(now, from, &datagram);
        let _ = caller.poll_transmit(now, &mut buf);
        let _ = caller.poll_result();
        let mut r = Rendezvous::new(&config, SocketId(7), server, SeqNumber::new(9), now);
        r.handle_datagram(now, from, &datagram);
        r.handle_datagram(now, from, &datagram);
        let _ = r.poll_transmit(now, &mut buf);
        if let Some(Ok(p)) = r.poll_result() {
            assert!(
                p.mss >= MIN_MSS && p.mss <= config.mss,
                "seed={seed:#x} case={case}"
            );
            assert_ne!(p.peer_socket_id, SocketId::HANDSHAKE);
        }
    }
    assert!(accepts > 0, "the mutations never reached Accept");
}

#[test]
fn errors_have_messages_and_io_kinds() {
    for (e, kind) in [
        (ConnectError::TimedOut, io::ErrorKind::TimedOut),
        (ConnectError::Rejected, io::ErrorKind::ConnectionRefused),
        (ConnectError::IsnMismatch, io::ErrorKind::ConnectionAborted),
    ] {
        assert!(!e.to_string().is_empty());
        assert_eq!(io::Error::from(e).kind(), kind);
    }
}
