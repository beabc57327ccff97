//! What the API pool tests share: the pool in front of a fake API server, the request
//! they send, and reading one request head on the fake's side.

#![allow(dead_code)] // each pool test binary uses a part of this module

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ws2api::api::{ApiError, ApiMethod, ApiPool, ApiRequest, ApiTarget};

/// Longest a pool request may take before the test fails (no test should come near it).
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// A pool of four connections to `addr`, base path `/ws/`, Host `api`.
pub fn pool(addr: SocketAddr) -> ApiPool {
    let target = ApiTarget {
        addr,
        host: "api".into(),
        base: "/ws/".into(),
    };
    ApiPool::new(target, 4, API_TIMEOUT, 1 << 20)
}

/// A Connect-like `GET /ws/<client_id>`.
pub fn get(client_id: &str) -> ApiRequest<'_> {
    ApiRequest {
        method: ApiMethod::Get,
        client_id,
        query: None,
        headers: &[],
        body: b"",
    }
}

/// The bytes [`get`] puts on the wire.
pub fn request(client_id: &str) -> String {
    format!("GET /ws/{client_id} HTTP/1.1\r\nHost: api\r\nContent-Length: 0\r\n\r\n")
}

/// Reads one request head (the pool's GETs have no body); `\r\n\r\n` ends it.
pub fn read_head(conn: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8(head).unwrap())
}

/// Asserts that a request failed on a connection that broke before answering.
pub fn assert_broken<T: std::fmt::Debug>(result: Result<T, ApiError>) {
    match result {
        Err(ApiError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}"),
        other => panic!("expected a broken connection, got {other:?}"),
    }
}
