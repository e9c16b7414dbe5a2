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
