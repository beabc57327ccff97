//! The operations a shard carries out on the clients it owns ([`Op`]), for itself or
//! for another shard over the mesh, and the handling of every message the mesh brings.

use std::rc::Rc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use ws2api_shards::calls::Reply;

use super::{public, Delivery, Op, OpReply, Shard, ShardMsg};
use crate::stats::ShardStats;
use crate::ws::{Conn, PushError};

/// How long a control request waits for the owning shard's reply.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl Shard {
    /// Carries out `op` on this shard (it must own the client).
    pub fn execute(&self, op: Op) -> OpReply {
        match op {
            Op::Push {
                client,
                payload,
                binary,
                received,
            } => {
                let delivery = match self.conn(&client) {
                    None => Delivery::NotFound,
                    Some(conn) => {
                        match conn.send(&payload, binary, self.config.limits.max_outbound_bytes) {
                            Ok(()) => Delivery::Done,
                            Err(PushError::Closed) => Delivery::NotFound,
                            Err(PushError::Full) => Delivery::Full,
                        }
                    }
                };
                let mut stats = self.stats.borrow_mut();
                match delivery {
                    Delivery::Done => {
                        stats.pushes_ok += 1;
                        stats.messages_out += 1;
                        stats.bytes_out += payload.len() as u64;
                        stats.latency.push.record(received.elapsed());
                    }
                    Delivery::NotFound => stats.pushes_not_found += 1,
                    Delivery::Full => stats.pushes_full += 1,
                }
                OpReply::Delivery(delivery)
            }
            Op::Close { client, code } => OpReply::Delivery(match self.conn(&client) {
                Some(conn) if !conn.is_closing() => {
                    conn.close(code, "closed by API");
                    Delivery::Done
                }
                _ => Delivery::NotFound,
            }),
            Op::Info { client } => {
                let table = self.table.borrow();
                OpReply::Info(
                    table
                        .get_by_name(&client)
                        .map(|(_, conn)| self.describe(conn)),
                )
            }
            Op::Stats => OpReply::Stats(Box::new(self.local_stats())),
        }
    }

    /// This shard's counters, with the gauges read now.
    fn local_stats(&self) -> ShardStats {
        let mut snapshot = self.stats.borrow().clone();
        snapshot.api_connections = self.api.open_connections() as u64;
        snapshot
    }

    fn describe(&self, conn: &Conn) -> String {
        let since = conn
            .connected_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        format!(
            "{{\"client_id\":\"{}\",\"connection_id\":\"{}\",\"shard\":{},\"remote_addr\":\"{}\",\"connected_at\":{:.3},\"messages_in\":{},\"messages_out\":{},\"queued_bytes\":{}}}\n",
            conn.client_id,
            conn.conn_id,
            self.id,
            conn.peer,
            since,
            conn.messages_in(),
            conn.messages_out(),
            conn.queued_bytes()
        )
    }

    /// Carries out `op` on shard `to` (this one or another) and returns its reply.
    /// `None` if the owner could not be reached or did not answer in time.
    pub async fn call(&self, to: usize, op: Op) -> Option<OpReply> {
        if to == self.id {
            return Some(self.execute(op));
        }
        let (call, reply) = self.send_call(to, op).await?;
        self.await_reply(call, reply, Instant::now() + CALL_TIMEOUT)
            .await
    }

    /// Sends `op` to shard `to` as a call; its reply is to be awaited.
    async fn send_call(&self, to: usize, op: Op) -> Option<(u64, Reply<OpReply>)> {
        self.stats.borrow_mut().forwards += 1;
        let (call, reply) = self.calls.register();
        let msg = ShardMsg::Call {
            from: self.id,
            call,
            op,
            sent: Instant::now(),
        };
        if self.mesh.send(to, msg).await.is_err() {
            self.calls.forget(call);
            return None;
        }
        Some((call, reply))
    }

    async fn await_reply(
        &self,
        call: u64,
        reply: Reply<OpReply>,
        deadline: Instant,
    ) -> Option<OpReply> {
        let left = deadline.saturating_duration_since(Instant::now());
        match glommio::timer::timeout(left, async { Ok(reply.wait().await) }).await {
            Ok(reply) => reply,
            Err(_) => {
                self.calls.forget(call);
                None
            }
        }
    }

    /// Every shard's counters, in shard order (the local one read directly). Every
    /// other shard is asked before any reply is awaited, so the calls are in flight
    /// together; a shard that does not answer in time counts as empty.
    pub async fn gather_stats(&self) -> Vec<ShardStats> {
        let mut waiting = Vec::with_capacity(self.count);
        for shard in 0..self.count {
            waiting.push(match shard == self.id {
                true => None,
                false => self.send_call(shard, Op::Stats).await,
            });
        }
        let deadline = Instant::now() + CALL_TIMEOUT;
        let mut all = Vec::with_capacity(self.count);
        for (shard, pending) in waiting.into_iter().enumerate() {
            let stats = match pending {
                None if shard == self.id => Some(self.local_stats()),
                None => None,
                Some((call, reply)) => match self.await_reply(call, reply, deadline).await {
                    Some(OpReply::Stats(stats)) => Some(*stats),
                    _ => None,
                },
            };
            all.push(stats.unwrap_or_default());
        }
        all
    }

    /// Handles one message from the mesh. Never blocks: anything that waits is spawned.
    pub fn on_mesh(self: &Rc<Self>, _from: usize, msg: ShardMsg) {
        match msg {
            ShardMsg::Adopt { socket, upgrade } => {
                let pass = self.gate.enter();
                let shard = self.clone();
                glommio::spawn_local(async move {
                    let (stream, peer, leftover) = socket.into_stream();
                    public::upgrade(shard, stream, peer, *upgrade, leftover, pass).await;
                })
                .detach();
            }
            ShardMsg::Call {
                from,
                call,
                op,
                sent,
            } => {
                self.stats.borrow_mut().latency.hop.record(sent.elapsed());
                let reply = self.execute(op);
                let mesh = self.mesh.clone();
                glommio::spawn_local(async move {
                    let reply = ShardMsg::Reply {
                        call,
                        reply,
                        sent: Instant::now(),
                    };
                    let _ = mesh.send(from, reply).await;
                })
                .detach();
            }
            ShardMsg::Reply { call, reply, sent } => {
                self.stats.borrow_mut().latency.hop.record(sent.elapsed());
                self.calls.complete(call, reply);
            }
        }
    }
}
