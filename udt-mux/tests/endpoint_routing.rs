//! The multiplexer routes through udt-core's endpoint: the same code the
//! simulator runs. These tests script a peer on a raw UDP socket to pin down
//! two routing decisions on real sockets: the data packet that completes a
//! rendezvous reaches the new connection, and datagrams that are not UDT
//! (STUN) reach the registered handler, whose answers leave from the port.

mod common;

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bind, config, init};
use udt_core::endpoint::{DatagramHandler, STUN_MAGIC_COOKIE};
use udt_core::packet::{
    self, Control, ControlPacket, DataHeader, Handshake, Packet, PacketPosition, PeerIp, ReqType,
};
use udt_core::{MsgNumber, SeqNumber, SocketId};

fn raw_peer() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind raw peer");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    s
}

/// Receives until a handshake arrives; returns it.
fn next_handshake(sock: &UdpSocket) -> Handshake {
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let (n, _) = sock
            .recv_from(&mut buf)
            .expect("a datagram from the endpoint");
        if let Ok(Packet::Control(ControlPacket {
            control: Control::Handshake(hs),
            ..
        })) = packet::decode(&buf[..n])
        {
            return hs;
        }
    }
    panic!("no handshake from the endpoint");
}

#[test]
fn the_data_packet_that_completes_a_rendezvous_is_delivered() {
    init();
    let endpoint = bind(config());
    let peer = raw_peer();
    let peer_addr = peer.local_addr().expect("peer address");
    let ep_addr = endpoint.local_addr();
    let t = std::thread::spawn(move || {
        let mut s = endpoint.rendezvous(peer_addr)?;
        s.set_read_timeout(Some(Duration::from_secs(3)));
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf)?;
        Ok::<_, std::io::Error>(buf)
    });
    // The endpoint's first rendezvous request tells us its ID and ISN.
    let theirs = next_handshake(&peer);
    assert_eq!(theirs.req_type, ReqType::Rendezvous);
    // Answer as a peer that already counts itself connected (§4.2): our
    // −1 response, then data straight away. The endpoint completes on the
    // data packet, which must be the stream's first bytes.
    let our_id = SocketId(77);
    let our_isn = SeqNumber::new(1000);
    let mut out = Vec::new();
    Handshake {
        version: Handshake::VERSION,
        socket_type: 1,
        isn: our_isn,
        mss: 1500,
        flow_window: 8192,
        req_type: ReqType::Response,
        socket_id: our_id,
        cookie: 0,
        peer_ip: PeerIp::from_addr(ep_addr.ip()),
    }
    .encode(0, theirs.socket_id, &mut out);
    peer.send_to(&out, ep_addr).expect("send response");
    let answer = next_handshake(&peer);
    assert_eq!(answer.req_type, ReqType::Response, "still connecting");
    out.clear();
    Packet::Data {
        header: DataHeader {
            seq: our_isn,
            position: PacketPosition::Only,
            in_order: true,
            msg: MsgNumber::new(1),
            timestamp: 1,
            dest: theirs.socket_id,
        },
        payload: b"hello",
    }
    .encode(&mut out);
    peer.send_to(&out, ep_addr).expect("send data");
    // Sent once and never again: only the completing packet can carry it.
    let got = t
        .join()
        .expect("rendezvous thread")
        .expect("read the first data");
    assert_eq!(&got, b"hello");
}

/// A STUN responder for the test: answers each request with a datagram
/// carrying the same transaction ID, and records what it saw.
#[derive(Debug, Default)]
struct Responder {
    seen: Arc<Mutex<Vec<SocketAddr>>>,
    answers: Vec<(SocketAddr, Vec<u8>)>,
}

impl DatagramHandler for Responder {
    fn handle_datagram(&mut self, _now: Instant, from: SocketAddr, datagram: &[u8]) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(from);
        }
        let mut answer = datagram.to_vec();
        // Binding success response (0x0101), no attributes.
        answer[0] = 0x01;
        answer[1] = 0x01;
        self.answers.push((from, answer));
    }

    fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let (to, d) = self.answers.pop()?;
        buf.extend_from_slice(&d);
        Some(to)
    }
}

#[test]
fn stun_on_the_port_reaches_the_handler_and_its_answer_leaves() {
    init();
    let endpoint = bind(config());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let old = endpoint.set_datagram_handler(Some(Box::new(Responder {
        seen: seen.clone(),
        answers: Vec::new(),
    })));
    assert!(old.is_none());
    let peer = raw_peer();
    let mut request = vec![0x00, 0x01, 0x00, 0x00];
    request.extend_from_slice(&STUN_MAGIC_COOKIE.to_be_bytes());
    request.extend_from_slice(b"transaction1");
    peer.send_to(&request, endpoint.local_addr())
        .expect("send STUN");
    let mut buf = [0u8; 256];
    let (n, from) = peer.recv_from(&mut buf).expect("the handler's answer");
    assert_eq!(from, endpoint.local_addr());
    assert_eq!(&buf[..2], &[0x01, 0x01]);
    assert_eq!(&buf[8..20], b"transaction1");
    assert_eq!(n, 20);
    assert_eq!(
        seen.lock().expect("seen").as_slice(),
        &[peer.local_addr().expect("addr")]
    );
    assert_eq!(endpoint.stats().foreign, 1);
    assert_eq!(endpoint.stats().unknown_destination, 0);
}

/// The receive thread feeds a run of datagrams with one source and one
/// socket ID to a connection under one routing decision. A run from an
/// address that is not the connection's peer must still be refused, every
/// datagram of it, and the connection must carry on.
#[test]
fn a_run_of_datagrams_from_a_stranger_is_refused_datagram_by_datagram() {
    init();
    let server = bind(config());
    let listener = server.listen(1).unwrap();
    let client = bind(config());
    let mut outgoing = client.connect(server.local_addr()).unwrap();
    let (mut accepted, _) = listener.accept().unwrap();
    let before = server.stats().wrong_source;
    let stranger = raw_peer();
    const FORGED: u64 = 40;
    for i in 0..FORGED {
        let mut out = Vec::new();
        Packet::Data {
            header: DataHeader {
                seq: SeqNumber::new(i as u32),
                position: PacketPosition::Only,
                in_order: true,
                msg: MsgNumber::new(1),
                timestamp: 1,
                dest: accepted.socket_id(),
            },
            payload: b"forged",
        }
        .encode(&mut out);
        stranger.send_to(&out, server.local_addr()).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats().wrong_source < before + FORGED {
        assert!(Instant::now() < deadline, "{:?}", server.stats());
        std::thread::yield_now();
    }
    assert_eq!(server.stats().wrong_source, before + FORGED);
    // The connection carries on: its peer's bytes arrive, not the forged.
    std::io::Write::write_all(&mut outgoing, b"genuine").unwrap();
    let mut got = [0u8; 7];
    accepted.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"genuine");
}
