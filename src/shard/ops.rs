//! The operations a shard carries out on the clients it owns ([`Op`]), for itself or
//! for another shard over the mesh, and the handling of every message the mesh brings.

use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use ws2api_shards::calls::Reply;

use super::admission::AddressSlot;
use super::{public, Client, Delivery, Membership, Op, OpReply, Shard, ShardMsg};
use crate::client_id::ClientId;
use crate::group::Audience;
use crate::stats::ShardStats;
use crate::ws::{codec, PushError};

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
                        match conn.push(&payload, binary, self.config.limits.max_outbound_bytes) {
                            Ok(()) => Delivery::Done,
                            Err(PushError::Closed) => Delivery::NotFound,
                            Err(PushError::Full) => Delivery::Full,
                            Err(PushError::OverBudget) => {
                                self.count_refusal("outbound_budget");
                                Delivery::Full
                            }
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
                        .map(|(_, entry)| self.describe(entry)),
                )
            }
            Op::Stats => OpReply::Stats(Box::new(self.local_stats())),
            Op::Join { client, group } => {
                let key = self.table.borrow().lookup(&client);
                OpReply::Membership(match key {
                    Some(key) => self.join(key, &group),
                    None => Membership::NotFound,
                })
            }
            Op::Leave { client, group } => {
                let key = self.table.borrow().lookup(&client);
                OpReply::Membership(match key {
                    Some(key) => self.leave(key, &group),
                    None => Membership::NotFound,
                })
            }
            Op::Broadcast {
                audience,
                payload,
                binary,
                except,
            } => {
                let (queued, full) = self.broadcast(&audience, &payload, binary, except.as_ref());
                OpReply::Broadcast { queued, full }
            }
            Op::Count { audience } => OpReply::Count(match &audience {
                Audience::Everyone => self.table.borrow().len() as u64,
                Audience::Group(group) => self.groups.borrow().count(group) as u64,
            }),
            Op::Admit { ip } => {
                let admitted = self.addresses.borrow_mut().admit(ip, Instant::now());
                OpReply::Admission(admitted)
            }
            Op::Ready => {
                OpReply::Ready(!self.budget.exhausted(self.config.limits.max_outbound_bytes))
            }
        }
    }

    /// Queues `payload` to this shard's members of `audience` but `except`: the frame
    /// is encoded once and shared by every member's queue; a member whose queue is full
    /// is skipped and counted, never waited for. Returns (queued, full).
    fn broadcast(
        &self,
        audience: &Audience,
        payload: &[u8],
        binary: bool,
        except: Option<&ClientId>,
    ) -> (u64, u64) {
        let mut encoded = Vec::new();
        match binary {
            true => codec::encode_binary(&mut encoded, payload),
            false => codec::encode_text(&mut encoded, payload),
        }
        let frame: Rc<[u8]> = Rc::from(encoded);
        let limit = self.config.limits.max_outbound_bytes;
        let (mut queued, mut full, mut over_budget) = (0u64, 0u64, 0u64);
        let mut deliver = |entry: &Client| {
            if except.is_some_and(|id| *id == entry.conn.client_id) {
                return;
            }
            match entry.conn.send_shared(&frame, limit) {
                Ok(()) => queued += 1,
                Err(PushError::Full) => full += 1,
                Err(PushError::OverBudget) => {
                    full += 1;
                    over_budget += 1;
                }
                Err(PushError::Closed) => {}
            }
        };
        let table = self.table.borrow();
        match audience {
            Audience::Everyone => table.iter().for_each(|(_, _, entry)| deliver(entry)),
            Audience::Group(group) => self
                .groups
                .borrow()
                .members(group)
                .filter_map(|key| table.get(key))
                .for_each(deliver),
        }
        let mut stats = self.stats.borrow_mut();
        stats.broadcasts += 1;
        stats.broadcast_queued += queued;
        stats.broadcast_full += full;
        if over_budget > 0 {
            *stats.refused.entry("outbound_budget").or_default() += over_budget;
        }
        stats.messages_out += queued;
        stats.bytes_out += queued * payload.len() as u64;
        (queued, full)
    }

    /// This shard's counters, with the gauges read now.
    fn local_stats(&self) -> ShardStats {
        let mut snapshot = self.stats.borrow().clone();
        snapshot.api_connections = self.api.open_connections() as u64;
        snapshot.throttled = self.conns.throttled.get();
        snapshot.tracked_addresses = self.addresses.borrow().len() as u64;
        snapshot.outbound_queued_bytes = self.budget.used() as u64;
        snapshot.outbound_budget_bytes = self.budget.limit() as u64;
        let groups = self.groups.borrow();
        snapshot.groups = groups.len() as u64;
        snapshot.group_memberships = groups.memberships() as u64;
        snapshot
    }

    fn describe(&self, entry: &Client) -> String {
        let conn = &entry.conn;
        let since = conn
            .connected_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        format!(
            "{{\"client_id\":\"{}\",\"connection_id\":\"{}\",\"shard\":{},\"remote_addr\":\"{}\",\"connected_at\":{:.3},\"messages_in\":{},\"messages_out\":{},\"queued_bytes\":{},\"groups\":[{}]}}\n",
            conn.client_id,
            conn.conn_id,
            self.id,
            conn.peer,
            since,
            conn.messages_in(),
            conn.messages_out(),
            conn.queued_bytes(),
            self.group_list(entry)
        )
    }

    /// `"a","b"`: the names of `entry`'s groups, sorted, as JSON strings (group names
    /// need no escaping).
    fn group_list(&self, entry: &Client) -> String {
        let groups = self.groups.borrow();
        let mut names: Vec<&str> = entry
            .groups
            .iter()
            .filter_map(|&id| groups.name(id))
            .map(|name| name.as_str())
            .collect();
        names.sort_unstable();
        let mut out = String::new();
        for (i, name) in names.iter().enumerate() {
            let _ = write!(out, "{}\"{name}\"", if i > 0 { "," } else { "" });
        }
        out
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

    /// Carries out `op(shard)` on every shard, this one included, and returns the
    /// replies in shard order. Every other shard is asked before any reply is awaited,
    /// so the calls are in flight together; `None` for a shard that could not be
    /// reached or did not answer in time.
    pub async fn call_all(&self, op: impl Fn() -> Op) -> Vec<Option<OpReply>> {
        let mut waiting = Vec::with_capacity(self.count);
        for shard in 0..self.count {
            waiting.push(match shard == self.id {
                true => None,
                false => self.send_call(shard, op()).await,
            });
        }
        let deadline = Instant::now() + CALL_TIMEOUT;
        let mut all = Vec::with_capacity(self.count);
        for (shard, pending) in waiting.into_iter().enumerate() {
            all.push(match pending {
                None if shard == self.id => Some(self.execute(op())),
                None => None,
                Some((call, reply)) => self.await_reply(call, reply, deadline).await,
            });
        }
        all
    }

    /// Every shard's counters, in shard order; a shard that does not answer in time
    /// counts as empty.
    pub async fn gather_stats(&self) -> Vec<ShardStats> {
        self.call_all(|| Op::Stats)
            .await
            .into_iter()
            .map(|reply| match reply {
                Some(OpReply::Stats(stats)) => *stats,
                _ => ShardStats::default(),
            })
            .collect()
    }

    /// Handles one message from the mesh. Never blocks: anything that waits is spawned.
    pub fn on_mesh(self: &Rc<Self>, _from: usize, msg: ShardMsg) {
        match msg {
            ShardMsg::Adopt {
                socket,
                upgrade,
                address,
                transport,
                link,
            } => {
                let pass = self.gate.enter();
                let slot = address.map(|ip| AddressSlot::adopt(self, ip));
                let shard = self.clone();
                glommio::spawn_local(async move {
                    let (stream, peer, leftover) = socket.into_stream();
                    let arrived = public::Arrived {
                        stream,
                        peer,
                        transport,
                        link,
                        leftover,
                        pass,
                        slot,
                    };
                    public::upgrade(shard, arrived, *upgrade).await;
                })
                .detach();
            }
            ShardMsg::Release { ip } => {
                self.addresses.borrow_mut().release(ip, Instant::now());
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
