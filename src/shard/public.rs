//! The public listener of one shard: accept, read the upgrade request, send it to
//! the shard that owns its ClientId, ask the API server, answer 101 or an error.

use std::net::SocketAddr;
use std::rc::Rc;

use futures_lite::AsyncWriteExt;
use glommio::net::{TcpListener, TcpStream};
use ws2api_shards::{listener, Handoff};

use super::session;
use super::tracker::Token;
use super::{Shard, ShardMsg};
use crate::api::{ApiMethod, ApiRequest};
use crate::error::Error;
use crate::http::proxy::ProxyHeader;
use crate::http::read::{read_head, read_proxy_header};
use crate::http::request::{self, RequestHead};
use crate::http::response;
use crate::ws::Conn;

/// Headers of the client's upgrade request passed on to the API server's Connect.
const FORWARDED: [(&str, &str); 5] = [
    ("cookie", "Cookie"),
    ("authorization", "Authorization"),
    ("origin", "Origin"),
    ("user-agent", "User-Agent"),
    ("sec-websocket-protocol", "Sec-WebSocket-Protocol"),
];

/// Accepts connections until the shard begins to stop.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shard.stopping().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                let token = shard.tracker.token();
                glommio::spawn_local(handshake(shard.clone(), stream, token)).detach();
            }
            Some(Err(e)) => {
                let e = std::io::Error::from(e);
                log::warn!("shard {}: accept failed: {e}", shard.id);
                glommio::timer::sleep(listener::accept_backoff(&e)).await;
            }
        }
    }
}

/// Reads the upgrade request within `--handshake-timeout`, checks it, and serves it
/// here or hands it to its owner.
async fn handshake(shard: Rc<Shard>, mut stream: TcpStream, token: Token) {
    let mut peer = match stream.peer_addr() {
        Ok(peer) => peer,
        Err(_) => return,
    };
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let max_head = shard.config.limits.max_head_size;
    let proxied = shard.config.proxy_protocol;
    let read = glommio::timer::timeout(shard.config.limits.handshake_timeout, async {
        if proxied {
            match read_proxy_header(&mut stream, &mut buf).await {
                Ok(ProxyHeader::Proxied { source, .. }) => peer = source,
                Ok(ProxyHeader::Local) => {}
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(read_head(&mut stream, &mut buf, max_head).await)
    })
    .await;
    let head = match read {
        Err(_) => Err(Error::HandshakeTimeout),
        Ok(Ok(Some((_, head)))) => Ok(head),
        Ok(Ok(None)) => return,
        Ok(Err(e)) => Err(e),
    };
    let owner = head.and_then(|head| {
        let client = head.client_id()?;
        head.websocket_accept()?;
        Ok(shard.owner_of(&client))
    });
    match owner {
        Err(error) => refuse(&shard, &mut stream, &error).await,
        Ok(owner) if owner == shard.id => upgrade(shard, stream, peer, buf, token).await,
        Ok(owner) => {
            shard.stats.borrow_mut().handoffs += 1;
            match Handoff::new(stream, peer, buf) {
                Ok(handoff) => {
                    if shard
                        .mesh
                        .send(owner, ShardMsg::Adopt(handoff))
                        .await
                        .is_err()
                    {
                        log::warn!("shard {}: shard {owner} is gone", shard.id);
                    }
                }
                Err(e) => log::warn!("shard {}: cannot hand off socket: {e}", shard.id),
            }
        }
    }
}

/// Answers a refused handshake with its status and closes.
async fn refuse(shard: &Shard, stream: &mut TcpStream, error: &Error) {
    let status = error.status();
    log::debug!("shard {}: upgrade refused with {status}: {error}", shard.id);
    shard.stats.borrow_mut().upgrades_refused += 1;
    if matches!(error, Error::ClientIo(_) | Error::Proxy(_)) {
        // Gone, or not speaking our protocol at all: nothing to answer.
        return;
    }
    let extra: &[(&str, &str)] = match error {
        Error::Request(e) => e.extra_headers(),
        _ => &[],
    };
    let mut out = Vec::with_capacity(160);
    let body = format!("{}\n", response::reason(status));
    response::write_response(
        &mut out,
        status,
        Some("text/plain"),
        extra,
        body.as_bytes(),
        false,
    );
    let _ = glommio::timer::timeout(shard.config.limits.handshake_timeout, async {
        let _ = stream.write_all(&out).await;
        let _ = stream.close().await;
        Ok(())
    })
    .await;
}

/// On the owning shard: asks the API server, answers, and starts the connection.
/// `buf` holds the request head and maybe bytes behind it.
pub async fn upgrade(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    peer: SocketAddr,
    buf: Vec<u8>,
    token: Token,
) {
    let prepared = prepare(&shard, &buf);
    let (head_len, head, client, accept) = match prepared {
        Ok(p) => p,
        Err(error) => return refuse(&shard, &mut stream, &error).await,
    };
    let conn_id = shard.next_conn_id();
    let protocol = match connect_request(&shard, &head, &client, &conn_id, peer).await {
        Ok(protocol) => protocol,
        Err(error) => {
            if error.side() == crate::error::Side::Upstream {
                crate::log_limited!(
                    shard.upstream_log,
                    log::Level::Warn,
                    "shard {}: connect {client} from {peer} refused: {error}",
                    shard.id
                );
            }
            return refuse(&shard, &mut stream, &error).await;
        }
    };
    let mut first = Vec::with_capacity(160);
    response::write_switching_protocols(&mut first, &accept, protocol.as_deref());
    let conn = Rc::new(Conn::new(client.clone(), conn_id, peer, first));
    let (key, replaced) = shard
        .table
        .borrow_mut()
        .insert(client.clone(), conn.clone());
    shard.stats.borrow_mut().connections_opened += 1;
    if let Some(old_key) = replaced {
        let old = shard.table.borrow().get(old_key).cloned();
        if let Some(old) = old {
            // The older connection gets its Disconnect before this one is accepted.
            old.close(4000, "replaced");
            old.finished().await;
        }
    }
    if shard.draining() {
        conn.close(1001, "shutdown");
    }
    bound_kernel_send_buffer(&stream, shard.config.limits.max_outbound_bytes);
    let leftover = buf[head_len..].to_vec();
    drop(buf);
    glommio::spawn_local(session::serve(shard, stream, conn, key, leftover, token)).detach();
}

/// Caps the kernel's send buffer of a client socket at a quarter of
/// `--max-outbound-bytes` (16 KiB to 256 KiB; the kernel doubles it). Left to
/// autotuning, a client that stops reading lets the kernel absorb megabytes of its
/// queue, which at 250k sockets is memory nobody bounded, and hides the stall from
/// the gateway's own queue bound.
fn bound_kernel_send_buffer(stream: &TcpStream, max_outbound: usize) {
    use std::os::fd::{AsRawFd, BorrowedFd};
    let size = (max_outbound / 4).clamp(16 << 10, 256 << 10);
    // SAFETY: the descriptor is open for as long as `stream` lives, and only borrowed here.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    if let Err(e) = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::SndBuf, &size) {
        log::debug!("SO_SNDBUF {size}: {e}");
    }
}

type Prepared = (usize, RequestHead, crate::client_id::ClientId, String);

fn prepare(shard: &Shard, buf: &[u8]) -> Result<Prepared, Error> {
    let (head_len, head) = request::parse(buf, shard.config.limits.max_head_size)?
        .ok_or_else(|| Error::Internal("handed-off request head is incomplete".into()))?;
    let client = head.client_id()?;
    let accept = head.websocket_accept()?;
    if shard.draining() {
        return Err(Error::Draining);
    }
    if shard.table.borrow().len() >= shard.connection_limit() {
        return Err(Error::Full);
    }
    Ok((head_len, head, client, accept))
}

/// The Connect request: `GET {api}{ClientId}[?query]`. Returns the subprotocol the
/// API server chose, if any.
async fn connect_request(
    shard: &Shard,
    head: &RequestHead,
    client: &crate::client_id::ClientId,
    conn_id: &str,
    peer: SocketAddr,
) -> Result<Option<String>, Error> {
    let peer_ip = crate::http::forwarded::IpText::new(peer.ip());
    let mut headers: Vec<(&str, &[u8])> = Vec::with_capacity(8);
    headers.push(("X-Connection-Id", conn_id.as_bytes()));
    headers.push(("X-Forwarded-For", peer_ip.as_bytes()));
    for (lower, name) in FORWARDED {
        if let Some(value) = head.header(lower) {
            headers.push((name, value));
        }
    }
    let request = ApiRequest {
        method: ApiMethod::Get,
        client_id: client.as_str(),
        query: head.query.as_deref(),
        headers: &headers,
        body: b"",
    };
    let answer = shard.api_request(&request).await;
    match answer {
        Err(e) => Err(Error::Api(e)),
        Ok(answer) if !(200..300).contains(&answer.status) => Err(Error::ApiStatus(answer.status)),
        Ok(answer) if answer.body != b"ok" => Err(Error::ApiRefused(
            String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)]).into_owned(),
        )),
        Ok(answer) => Ok(answer
            .header("sec-websocket-protocol")
            .and_then(|p| std::str::from_utf8(p).ok())
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())),
    }
}
