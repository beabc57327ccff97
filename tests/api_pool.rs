//! The API pool against a scripted fake API server on 127.0.0.1:0: a reused keep-alive
//! connection the server has closed is retried once on a fresh one; a connection closed
//! before it answers is an error, never retried without end.
//!
//! The fake is a std thread with a std listener, bound before anything starts; each
//! accepted connection follows its script, and what it saw comes back over a channel.
//! The pool runs inside a glommio `LocalExecutor` on the test's thread.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

mod pool_fake;

use pool_fake::{assert_broken, get, pool, read_head, request, API_TIMEOUT};

/// What the fake server does on one connection, in order.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Reads one request and writes these bytes.
    Answer(&'static [u8]),
    /// Reads one request and closes without a word.
    CloseUnanswered,
    /// Closes the connection (after the previous step).
    Close,
}

/// What the fake server saw and did, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// Connection `n` (from 0) was accepted.
    Accepted(usize),
    /// A request head on connection `n`.
    Request(usize, String),
    /// Connection `n` was closed by the server.
    Closed(usize),
}

/// A fake API server: one script per connection, accepted in order.
struct FakeApi {
    addr: SocketAddr,
    seen: mpsc::Receiver<Seen>,
    thread: JoinHandle<TcpListener>,
}

impl FakeApi {
    fn start(scripts: Vec<Vec<Step>>) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // On Linux SO_RCVTIMEO bounds accept() too: a connection the pool never opens
        // fails the test instead of hanging it.
        socket2::SockRef::from(&listener)
            .set_read_timeout(Some(API_TIMEOUT))
            .unwrap();
        let (tx, seen) = mpsc::channel();
        let thread = thread::spawn(move || {
            for (n, script) in scripts.into_iter().enumerate() {
                let (mut conn, _) = listener
                    .accept()
                    .unwrap_or_else(|e| panic!("connection {n} never came: {e}"));
                conn.set_read_timeout(Some(API_TIMEOUT)).unwrap();
                tx.send(Seen::Accepted(n)).unwrap();
                for step in script {
                    match step {
                        Step::Answer(bytes) => {
                            tx.send(Seen::Request(n, read_head(&mut conn).unwrap()))
                                .unwrap();
                            conn.write_all(bytes).unwrap();
                        }
                        Step::CloseUnanswered => {
                            tx.send(Seen::Request(n, read_head(&mut conn).unwrap()))
                                .unwrap();
                            break;
                        }
                        Step::Close => break,
                    }
                }
                drop(conn);
                tx.send(Seen::Closed(n)).unwrap();
            }
            listener
        });
        FakeApi { addr, seen, thread }
    }

    /// Waits for the server to report `want` (bounded: the sender hangs up when done).
    fn wait_for(&self, want: &Seen) {
        loop {
            match self.seen.recv_timeout(API_TIMEOUT) {
                Ok(seen) if &seen == want => return,
                Ok(_) => continue,
                Err(e) => panic!("waiting for {want:?}: {e}"),
            }
        }
    }

    /// Ends the server thread; returns everything it saw, and whether one more
    /// connection was waiting to be accepted (there should be none).
    fn finish(self) -> (Vec<Seen>, bool) {
        let listener = self
            .thread
            .join()
            .expect("the fake API server followed its script");
        let seen = self.seen.try_iter().collect();
        listener.set_nonblocking(true).unwrap();
        let another = match listener.accept() {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) => panic!("accept: {e}"),
        };
        (seen, another)
    }
}

fn on_executor(body: impl std::future::Future<Output = ()>) {
    glommio::LocalExecutor::default().run(body);
}

#[test]
fn a_reused_connection_the_server_closed_is_retried_once_on_a_fresh_one() {
    let api = FakeApi::start(vec![
        vec![
            Step::Answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"),
            Step::Close,
        ],
        vec![Step::Answer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond",
        )],
    ]);
    on_executor(async {
        let pool = pool(api.addr);
        let first = pool.send(&get("one")).await.unwrap();
        assert_eq!((first.status, &first.body[..]), (200, &b"first"[..]));
        assert!(first.keep_alive);
        assert_eq!(pool.open_connections(), 1, "kept for the next request");

        // The server closes the idle connection before the pool uses it again.
        api.wait_for(&Seen::Closed(0));
        let second = pool.send(&get("two")).await.unwrap();
        assert_eq!((second.status, &second.body[..]), (200, &b"second"[..]));
        assert_eq!(pool.open_connections(), 1, "the closed one is gone");
    });
    let (seen, another) = api.finish();
    assert_eq!(
        seen,
        // (what came before Closed(0) was read by `wait_for`)
        [
            Seen::Accepted(1),
            Seen::Request(1, request("two")),
            Seen::Closed(1),
        ],
        "request two went once, on a fresh connection"
    );
    assert!(!another, "no third connection");
}

#[test]
fn a_fresh_connection_closed_before_answering_is_an_error_not_a_retry() {
    let api = FakeApi::start(vec![vec![Step::CloseUnanswered]]);
    on_executor(async {
        let pool = pool(api.addr);
        assert_broken(pool.send(&get("one")).await);
        assert_eq!(pool.open_connections(), 0);
    });
    let (seen, another) = api.finish();
    assert_eq!(
        seen,
        [
            Seen::Accepted(0),
            Seen::Request(0, request("one")),
            Seen::Closed(0),
        ]
    );
    assert!(!another, "the pool did not try again");
}

#[test]
fn a_stale_connection_is_retried_once_and_a_retry_closed_unanswered_is_an_error() {
    let api = FakeApi::start(vec![
        vec![
            Step::Answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            Step::Close,
        ],
        vec![Step::CloseUnanswered],
    ]);
    on_executor(async {
        let pool = pool(api.addr);
        assert_eq!(pool.send(&get("one")).await.unwrap().body, b"ok");
        api.wait_for(&Seen::Closed(0));
        assert_broken(pool.send(&get("two")).await);
        assert_eq!(pool.open_connections(), 0);
    });
    let (seen, another) = api.finish();
    // (what came before Closed(0) was read by `wait_for`)
    assert_eq!(
        seen,
        [
            Seen::Accepted(1),
            Seen::Request(1, request("two")),
            Seen::Closed(1)
        ]
    );
    assert!(!another, "one retry only");
}
