//! An accepted connection on its owning shard: runs the WebSocket loop, turns each
//! message into a POST to the API server, and sends exactly one Disconnect at the end,
//! whatever ended it.

use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpStream;
use ws2api_shards::{Key, Pass};

use super::admission::AddressSlot;
use super::Shard;
use crate::api::contract::{self, EventAnswer, Who};
use crate::api::ApiError;
use crate::ws::codec::{server_may_send, WsDecoder};
use crate::ws::connection;
use crate::ws::{Conn, Ended, InFlight, Message, PushError};

/// Tries of a Disconnect before it is counted as failed: with the backoff below they
/// span about 16 s, enough for an API server to restart.
pub const DISCONNECT_ATTEMPTS: u32 = 8;

/// Pause before the first retry of a Disconnect; it doubles each time up to the cap.
const DISCONNECT_BACKOFF: Duration = Duration::from_millis(200);
const DISCONNECT_BACKOFF_CAP: Duration = Duration::from_secs(5);

/// Serves one accepted connection until it ends and its Disconnect is sent. `_held`:
/// its pass of the shard's gate and its per-address count, both given back at the end.
pub async fn serve(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    conn: Rc<Conn>,
    key: Key,
    leftover: Vec<u8>,
    _held: (Pass, Option<AddressSlot>),
) {
    let decoder = WsDecoder::new(shard.config.limits.max_message_size);
    let on_message =
        |inflight: InFlight, message: Message| post_message(&shard, key, inflight, message);
    let ended = connection::run(
        &mut stream,
        &conn,
        decoder,
        &leftover,
        &shard.conns,
        &on_message,
    )
    .await;
    drop(leftover);
    drop(stream);
    shard.remove(key);
    {
        let mut stats = shard.stats.borrow_mut();
        stats.connections_closed += 1;
        *stats.closes.entry(ended.code).or_default() += 1;
    }
    log::debug!(
        "shard {}: {} ({}) ended: {} {}",
        shard.id,
        conn.client_id,
        conn.conn_id,
        ended.code,
        ended.reason
    );
    // Boxed: the Disconnect's request state stays out of every idle connection's future.
    Box::pin(disconnect(&shard, &conn, &ended)).await;
    conn.finish();
}

/// Sends `message` to the API server in its own task. A 2xx answer's group changes
/// apply to the connection (table key `key`) first, then a non-empty body goes back to
/// the client, then the close it asks for, if any. The connection reads on once
/// `inflight` drops with the task.
fn post_message(shard: &Rc<Shard>, key: Key, inflight: InFlight, message: Message) {
    {
        let mut stats = shard.stats.borrow_mut();
        stats.messages_in += 1;
        stats.bytes_in += match &message {
            Message::Text(body) | Message::Binary(body) => body.len() as u64,
        };
    }
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let conn = inflight.conn();
        let (body, binary) = match message {
            Message::Text(body) => (body, false),
            Message::Binary(body) => (body, true),
        };
        let who = who(conn);
        let event = contract::Message::new(who, &body, binary);
        let headers = event.headers();
        let answer = shard.api_request(&event.request(&headers)).await;
        match answer.map(EventAnswer::new) {
            Ok(answer) if answer.is_success() => {
                let changes = answer.group_changes();
                if !changes.is_empty() {
                    shard.apply_group_changes(key, &changes);
                }
                drop(changes);
                let close = answer.close();
                if let Some(reply) = answer.reply() {
                    if reply.not_utf8 {
                        log::info!(
                            "shard {}: answer to {} is not UTF-8; sent as a binary frame",
                            shard.id,
                            conn.client_id
                        );
                    }
                    match conn.send(
                        &reply.body,
                        reply.binary,
                        shard.config.limits.max_outbound_bytes,
                    ) {
                        Ok(()) => {
                            let mut stats = shard.stats.borrow_mut();
                            stats.messages_out += 1;
                            stats.bytes_out += reply.body.len() as u64;
                        }
                        // It keeps sending but reads nothing: its answers cannot go anywhere.
                        Err(PushError::Full) => conn.close(1008, "send queue full"),
                        // Answers are not held to the outbound budget.
                        Err(PushError::Closed | PushError::OverBudget) => {}
                    }
                }
                if let Some(asked) = close {
                    match asked.code {
                        Ok(code) if server_may_send(code) => conn.close(code, &asked.reason),
                        code => log::warn!(
                            "shard {}: answer to {} asks for close code {:?}, which a server may not send; ignored",
                            shard.id,
                            conn.client_id,
                            code.map_or_else(|text| text, |code| code.to_string())
                        ),
                    }
                }
            }
            Ok(answer) => crate::log_limited!(
                shard.upstream_log,
                log::Level::Warn,
                "shard {}: message from {} answered {}",
                shard.id,
                conn.client_id,
                answer.status()
            ),
            Err(e) => crate::log_limited!(
                shard.upstream_log,
                log::Level::Warn,
                "shard {}: message from {} failed: {e}",
                shard.id,
                conn.client_id
            ),
        }
        drop(inflight);
    })
    .detach();
}

/// Who the requests of `conn`'s events are about.
fn who(conn: &Conn) -> Who<'_> {
    Who::new(
        conn.client_id.as_str(),
        &conn.conn_id,
        conn.peer.ip(),
        conn.proto(),
    )
}

/// The Disconnect: `DELETE {api}{ClientId}` with the reason as body and
/// `X-Close-Code`. Retried with backoff on failure or a 5xx; never dropped silently.
async fn disconnect(shard: &Shard, conn: &Conn, ended: &Ended) {
    let who = who(conn);
    let event = contract::Disconnect::new(who, ended.code, &ended.reason);
    let headers = event.headers();
    let request = event.request(&headers);
    let mut backoff = DISCONNECT_BACKOFF;
    for attempt in 1..=DISCONNECT_ATTEMPTS {
        match shard.api_request(&request).await.map(EventAnswer::new) {
            Ok(answer) if answer.settles_disconnect() => {
                if !answer.is_success() {
                    log::info!(
                        "shard {}: disconnect of {} answered {}",
                        shard.id,
                        conn.client_id,
                        answer.status()
                    );
                }
                return;
            }
            Ok(answer) => crate::log_limited!(
                shard.upstream_log,
                log::Level::Warn,
                "shard {}: disconnect of {} answered {} (attempt {attempt})",
                shard.id,
                conn.client_id,
                answer.status()
            ),
            Err(ApiError::Closed) => break,
            Err(e) => crate::log_limited!(
                shard.upstream_log,
                log::Level::Warn,
                "shard {}: disconnect of {} failed (attempt {attempt}): {e}",
                shard.id,
                conn.client_id
            ),
        }
        if attempt < DISCONNECT_ATTEMPTS {
            glommio::timer::sleep(backoff).await;
            backoff = (backoff * 2).min(DISCONNECT_BACKOFF_CAP);
        }
    }
    shard.stats.borrow_mut().disconnects_failed += 1;
    log::warn!(
        "shard {}: disconnect of {} ({}) lost after {DISCONNECT_ATTEMPTS} attempts",
        shard.id,
        conn.client_id,
        conn.conn_id
    );
}
