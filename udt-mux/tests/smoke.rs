use std::io::{Read, Write};
use udt_mux::{Config, Endpoint};

#[test]
fn smoke() {
    let _ = env_logger::builder().is_test(true).try_init();
    let server = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default()).unwrap();
    let listener = server.listen(4).unwrap();
    let client = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default()).unwrap();
    let mut s = client.connect(server.local_addr()).unwrap();
    let (mut a, _) = listener.accept().unwrap();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7) as u8).collect();
    let d2 = data.clone();
    let t = std::thread::spawn(move || { s.write_all(&d2).unwrap(); s.close().unwrap(); });
    let mut got = Vec::new();
    a.read_to_end(&mut got).unwrap();
    t.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data);
    eprintln!("{:?}", client.stats());
}

#[test]
fn rdv() {
    let _ = env_logger::builder().is_test(true).try_init();
    let cfg = Config { rendezvous_timeout: std::time::Duration::from_secs(2), ..Config::default() };
    let a = Endpoint::bind("127.0.0.1:0".parse().unwrap(), cfg.clone()).unwrap();
    let b = Endpoint::bind("127.0.0.1:0".parse().unwrap(), cfg).unwrap();
    let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
    let t = std::thread::spawn(move || b.rendezvous(a_addr));
    let s = a.rendezvous(b_addr).unwrap();
    assert_eq!(s.peer_addr(), b_addr);
    t.join().unwrap().unwrap();
}

#[test]
fn bulk() {
    let n: usize = std::env::var("BULK_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(64) << 20;
    let server = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default()).unwrap();
    let listener = server.listen(4).unwrap();
    let client = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default()).unwrap();
    let mut s = client.connect(server.local_addr()).unwrap();
    let (mut a, _) = listener.accept().unwrap();
    let start = std::time::Instant::now();
    let t = std::thread::spawn(move || { let buf = vec![7u8; 1 << 16]; let mut left = n; while left > 0 { let k = left.min(buf.len()); s.write_all(&buf[..k]).unwrap(); left -= k; } let st = s.stats(); s.close().unwrap(); st });
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0;
    loop { let k = a.read(&mut buf).unwrap(); if k == 0 { break } total += k; }
    let st = t.join().unwrap();
    let el = start.elapsed();
    assert_eq!(total, n);
    eprintln!("{} MiB in {:?}: {:.1} MB/s; sender {:?}", n >> 20, el, n as f64 / el.as_secs_f64() / 1e6, st);
    eprintln!("client {:?}\nserver {:?}\nreceiver {:?}", client.stats(), server.stats(), a.stats());
}
