//! The API pool out of file descriptors: while its own connection is busy, a second
//! request that cannot open one (EMFILE) waits for that connection to come back and goes
//! out on it, instead of failing.
//!
//! RLIMIT_NOFILE is process-wide, so this file is its own test binary and holds one test:
//! nothing else in the process opens a descriptor while the limit is down.

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::pin::pin;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
mod pool_fake;

use pool_fake::{get, pool, read_head, API_TIMEOUT};

const EMFILE: i32 = 24;

/// The process with every descriptor slot taken, until dropped.
struct OutOfDescriptors {
    saved: (u64, u64),
    held: Vec<OwnedFd>,
}

impl OutOfDescriptors {
    fn now() -> OutOfDescriptors {
        let saved = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        // A low soft limit keeps the number of descriptors to fill small.
        setrlimit(Resource::RLIMIT_NOFILE, saved.0.min(256), saved.1).unwrap();
        let mut held = Vec::new();
        let stdin = io::stdin();
        loop {
            match stdin.as_fd().try_clone_to_owned() {
                Ok(fd) => held.push(fd),
                Err(e) if e.raw_os_error() == Some(EMFILE) => break,
                Err(e) => panic!("dup: {e}"),
            }
        }
        OutOfDescriptors { saved, held }
    }
}

impl Drop for OutOfDescriptors {
    fn drop(&mut self) {
        self.held.clear();
        let _ = setrlimit(Resource::RLIMIT_NOFILE, self.saved.0, self.saved.1);
    }
}

#[test]
fn out_of_descriptors_a_request_waits_for_the_pools_busy_connection() {
    // The fake API server: one connection; it tells the test when request one has
    // arrived, answers it only when told, then answers request two on the same connection.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    socket2::SockRef::from(&listener)
        .set_read_timeout(Some(API_TIMEOUT))
        .unwrap();
    let (arrived, arrival) = ws2api_shards::wake::pair().unwrap();
    let (answer_tx, answer_rx) = mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(API_TIMEOUT)).unwrap();
        let one = read_head(&mut conn).unwrap();
        arrived.wake(1);
        answer_rx.recv_timeout(API_TIMEOUT).unwrap();
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
            .unwrap();
        let two = read_head(&mut conn).unwrap();
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
            .unwrap();
        (one, two)
    });

    glommio::LocalExecutor::default().run(async move {
        let pool = Rc::new(pool(addr));
        let mut arrival = arrival.listen().unwrap();
        let first = glommio::spawn_local({
            let pool = pool.clone();
            async move { pool.send(&get("one")).await }
        });
        assert_eq!(
            arrival.next().await,
            Some(1),
            "request one reached the server"
        );
        assert_eq!(
            pool.open_connections(),
            1,
            "the pool's one connection, busy"
        );

        let out = OutOfDescriptors::now();
        let e = TcpStream::connect(addr).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(EMFILE), "out of descriptors: {e}");

        let two = get("two");
        let mut second = pin!(pool.send(&two));
        assert!(
            futures_lite::future::poll_once(second.as_mut())
                .await
                .is_none(),
            "request two waits instead of failing"
        );
        answer_tx.send(()).unwrap();
        let first = first.await.unwrap();
        assert_eq!((first.status, &first.body[..]), (200, &b"one"[..]));
        let second = second.await.unwrap();
        assert_eq!((second.status, &second.body[..]), (200, &b"two"[..]));
        assert_eq!(pool.open_connections(), 1, "still the one connection");
        drop(out);
    });
    let (one, two) = server.join().unwrap();
    assert_eq!(
        one,
        "GET /ws/one HTTP/1.1\r\nHost: api\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(
        two,
        "GET /ws/two HTTP/1.1\r\nHost: api\r\nContent-Length: 0\r\n\r\n"
    );
}
