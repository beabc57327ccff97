//! The control listener of one shard: pushes, closes and client info for the API
//! server, counters and health for operators. A request about a client is carried
//! out by the shard that owns it and answered after the owner acted.

use std::rc::Rc;
use std::time::Instant;

use futures_lite::AsyncWriteExt;
use glommio::net::{TcpListener, TcpStream};
use ws2api_shards::listener;

use super::{group_control, Delivery, Op, OpReply, Shard};
use crate::api::contract;
use crate::error::Error;
use crate::http::read::{read_exact_into, read_head};
use crate::http::request::{Method, RequestError, RequestHead};
use crate::http::response;
use crate::stats;

/// How long a control connection may sit idle between requests.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// An answer to a control request.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    /// `200 ok`.
    fn ok() -> Reply {
        Reply::text(200, "ok\n")
    }

    /// An error, with the status [`Error::status`] decides and its text as the body.
    fn error(error: &Error) -> Reply {
        Reply::text(error.status(), format!("{error}\n"))
    }

    fn text(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// Accepts control connections until the shard ends.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                let e = std::io::Error::from(e);
                log::warn!("shard {}: control accept failed: {e}", shard.id);
                glommio::timer::sleep(listener::accept_backoff(&e)).await;
            }
        }
    }
}

/// Serves requests on one control connection (HTTP/1.1 keep-alive).
async fn serve(shard: Rc<Shard>, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let max_head = shard.config.limits.max_head_size;
        let read = glommio::timer::timeout(IDLE_TIMEOUT, async {
            Ok(read_head(&mut stream, &mut buf, max_head).await)
        })
        .await;
        let (head_len, head) = match read {
            Ok(Ok(Some(parsed))) => parsed,
            Ok(Ok(None)) | Err(_) => return,
            Ok(Err(error)) => {
                let _ = respond(&mut stream, &Reply::error(&error.into()), false).await;
                return;
            }
        };
        buf.drain(..head_len);
        let reply = match read_body(&shard, &mut stream, &mut buf, &head).await {
            Ok(body) => route(&shard, &head, body).await,
            Err(error) => {
                let _ = respond(&mut stream, &Reply::error(&error), false).await;
                return;
            }
        };
        if respond(&mut stream, &reply, head.keep_alive).await.is_err() || !head.keep_alive {
            return;
        }
    }
}

async fn respond(stream: &mut TcpStream, reply: &Reply, keep_alive: bool) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(128 + reply.body.len());
    response::write_response(
        &mut out,
        reply.status,
        Some(reply.content_type),
        &[],
        &reply.body,
        keep_alive,
    );
    stream.write_all(&out).await
}

/// Reads the request body (Content-Length only), bounded by `--max-message-size`.
async fn read_body(
    shard: &Shard,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head: &RequestHead,
) -> Result<Vec<u8>, Error> {
    if head.chunked {
        return Err(Error::Request(RequestError::Malformed(
            "chunked request bodies are not supported; send Content-Length".into(),
        )));
    }
    let len = head.content_length.unwrap_or(0);
    if len > shard.config.limits.max_message_size {
        return Err(Error::BodyTooLarge);
    }
    read_exact_into(stream, buf, len).await?;
    let rest = buf.split_off(len);
    Ok(std::mem::replace(buf, rest))
}

fn authorized(shard: &Shard, head: &RequestHead) -> bool {
    let Some(token) = shard.config.control.token() else {
        return true;
    };
    let Some(value) = head.header("authorization") else {
        return false;
    };
    value
        .strip_prefix(b"Bearer ")
        .is_some_and(|given| constant_time_eq(given, token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn route(shard: &Rc<Shard>, head: &RequestHead, body: Vec<u8>) -> Reply {
    match answer(shard, head, body).await {
        Ok(reply) => reply,
        Err(error) => Reply::error(&error),
    }
}

/// Every shard's outbound budget has room for one client's full queue
/// (`--max-outbound-bytes`); a shard that does not answer counts as ready.
async fn budget_ready(shard: &Rc<Shard>) -> bool {
    shard
        .call_all(|| Op::Ready)
        .await
        .iter()
        .all(|reply| !matches!(reply, Some(OpReply::Ready(false))))
}

async fn answer(shard: &Rc<Shard>, head: &RequestHead, body: Vec<u8>) -> Result<Reply, Error> {
    let received = Instant::now();
    let path = head.path.as_str();
    match (head.method, path) {
        (Method::Get, "/healthz") => return Ok(Reply::ok()),
        (Method::Get, "/readyz") => {
            return if shard.draining() {
                Err(Error::NotReady("draining"))
            } else if shard.full() {
                Err(Error::NotReady("full: --max-connections reached"))
            } else if !budget_ready(shard).await {
                Err(Error::NotReady(
                    "outbound budget used up: --max-outbound-total",
                ))
            } else {
                Ok(Reply::ok())
            }
        }
        _ => {}
    }
    if !authorized(shard, head) {
        return Err(Error::Unauthorized);
    }
    match (head.method, path) {
        (Method::Get, "/") => {
            let all = shard.gather_stats().await;
            let total: crate::stats::ShardStats = ws2api_shards::stats::fold_all(&all);
            return Ok(Reply::text(200, stats::render_reference(&total)));
        }
        (Method::Get, "/metrics") => {
            let all = shard.gather_stats().await;
            return Ok(Reply {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: stats::render_prometheus(&all).into_bytes(),
            });
        }
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/groups/") {
        return match group_control::route(shard, head, rest, body).await? {
            group_control::Answer::Ok => Ok(Reply::ok()),
            group_control::Answer::Json(json) => Ok(Reply {
                status: 200,
                content_type: "application/json",
                body: json.into_bytes(),
            }),
        };
    }
    let client = head.client_id().map_err(|_| Error::NotFound)?;
    let owner = shard.owner_of(&client);
    match head.method {
        Method::Post => {
            let op = Op::Push {
                client,
                payload: body,
                binary: contract::is_binary(head.header("content-type")),
                received,
            };
            delivered(shard.call(owner, op).await)
        }
        Method::Delete => {
            let code = close_code(head.query.as_deref()).map_err(Error::BadQuery)?;
            delivered(shard.call(owner, Op::Close { client, code }).await)
        }
        Method::Get => match shard.call(owner, Op::Info { client }).await {
            Some(OpReply::Info(Some(json))) => Ok(Reply {
                status: 200,
                content_type: "application/json",
                body: json.into_bytes(),
            }),
            Some(_) => Err(Error::NotFound),
            None => Err(Error::OwnerSilent),
        },
        _ => Err(Error::MethodNotAllowed),
    }
}

/// The answer to a push or close, once its owner acted.
fn delivered(reply: Option<OpReply>) -> Result<Reply, Error> {
    match reply {
        Some(OpReply::Delivery(Delivery::Done)) => Ok(Reply::ok()),
        Some(OpReply::Delivery(Delivery::NotFound)) => Err(Error::NotFound),
        Some(OpReply::Delivery(Delivery::Full)) => Err(Error::QueueFull),
        _ => Err(Error::OwnerSilent),
    }
}

/// The `code` of `DELETE /<ClientId>?code=N`: default 1000; must be one a server may send.
fn close_code(query: Option<&str>) -> Result<u16, String> {
    let Some(query) = query else { return Ok(1000) };
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("code=") {
            let code: u16 = value
                .parse()
                .map_err(|_| format!("bad close code {value:?}"))?;
            return if crate::ws::codec::server_may_send(code) {
                Ok(code)
            } else {
                Err(format!(
                    "close code {code} is not one a server may send (1000, 1001, 1008, 1011-1013, 3000-4999)"
                ))
            };
        }
    }
    Ok(1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_id::ClientId;

    #[test]
    fn close_codes_from_the_query() {
        assert_eq!(close_code(None), Ok(1000));
        assert_eq!(close_code(Some("code=4001")), Ok(4001));
        assert_eq!(close_code(Some("x=1&code=1001")), Ok(1001));
        assert!(close_code(Some("code=1005")).is_err());
        assert!(close_code(Some("code=abc")).is_err());
        assert!(close_code(Some("code=70000")).is_err());
    }

    #[test]
    fn bearer_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn client_ids_are_owned_by_one_shard() {
        let id = ClientId::parse(b"alice").unwrap();
        assert_eq!(ws2api_shards::shard_of(id.as_bytes(), 2), 1);
    }
}
