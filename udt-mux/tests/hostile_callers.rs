//! Callers that misbehave against a listener on real sockets (issue 10
//! item 7): a connection that dies before the application accepts it must
//! not hold a backlog place for ever.

mod common;

use std::time::{Duration, Instant};

use common::{bind, config, init};
use udt_mux::ConnectError;

#[test]
fn a_connection_that_died_unaccepted_frees_its_backlog_place() {
    init();
    let server = bind(config());
    let listener = server.listen(1).unwrap();
    let dead = bind(config());
    let _never_used = dead.connect(server.local_addr()).unwrap();
    // The caller's process dies: its connection waits in the accept queue
    // until its idle timeout (3 s in the test configuration).
    dead.abort();
    let client = bind(config());
    let deadline = Instant::now() + Duration::from_secs(15);
    let stream = loop {
        match client.connect(server.local_addr()) {
            Ok(s) => break s,
            Err(ConnectError::Rejected { .. }) if Instant::now() < deadline => {
                // The dead connection still holds the only place: poll
                // until its idle timeout has passed (bounded by `deadline`).
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("the backlog place never came back: {e:?}"),
        }
    };
    let (accepted, from) = listener
        .accept_timeout(Duration::from_secs(5))
        .expect("the live caller is accepted");
    assert_eq!(from, client.local_addr());
    assert_eq!(accepted.peer_addr(), stream.local_addr());
    assert!(server.stats().handshakes_rejected >= 1);
}
