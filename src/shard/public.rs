//! The public listener of one shard: accept, read the upgrade request and check it
//! once, send it to the shard that owns its ClientId, ask the API server, answer 101
//! or an error.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use futures_lite::AsyncWriteExt;
use glommio::net::{TcpListener, TcpStream};
use ws2api_shards::{listener, Handoff, Pass};

use super::admission::{self, AddressSlot};
use super::session;
use super::wire::{HandshakeFailure, Wire};
use super::{Shard, ShardMsg};
use crate::api::contract::{Connect, ConnectVerdict, EventAnswer, Who};
use crate::error::{Error, Side};
use crate::http::proxy::{ProxyHeader, ProxyTls};
use crate::http::read::{read_head, read_proxy_header, ReadError};
use crate::http::response;
use crate::http::upgrade::Upgrade;
use crate::tls::TlsLink;
use crate::transport::{ClientCert, Transport};
use crate::ws::Conn;

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
                let pass = shard.gate.enter();
                glommio::spawn_local(handshake(shard.clone(), stream, pass)).detach();
            }
            Some(Err(e)) => {
                let e = std::io::Error::from(e);
                log::warn!("shard {}: accept failed: {e}", shard.id);
                glommio::timer::sleep(listener::accept_backoff(&e)).await;
            }
        }
    }
}

/// A connection whose upgrade request was read and checked, on the shard that owns
/// its ClientId: what that shard needs besides the request itself.
pub struct Arrived {
    /// The client's socket.
    pub stream: TcpStream,
    /// The client's address (the PROXY source with `--proxy-protocol`).
    pub peer: SocketAddr,
    /// TLS or not, and the client's certificate.
    pub transport: Transport,
    /// The TLS session, when the gateway terminates TLS itself (`--tls-cert`).
    pub link: Option<Box<RefCell<TlsLink>>>,
    /// Bytes the client sent behind its request head.
    pub leftover: Vec<u8>,
    /// Its pass of the owning shard's gate.
    pub pass: Pass,
    /// Its count in the per-address table, held for its life.
    pub slot: Option<AddressSlot>,
}

/// What a PROXY header's SSL TLV tells of the client's TLS connection to the proxy.
fn transport_of(tls: Option<ProxyTls>) -> Transport {
    match tls {
        None => Transport::default(),
        Some(tls) => Transport {
            tls: true,
            cert: tls.client_cn.map(|cn| ClientCert {
                cn: Some(cn),
                ..ClientCert::default()
            }),
        },
    }
}

/// Why the handshake phase ended early.
enum Early {
    /// The PROXY header or the request head could not be read.
    Read(ReadError),
    /// The TLS handshake failed.
    Tls(HandshakeFailure),
}

/// Reads the upgrade request within `--handshake-timeout` (the TLS handshake first,
/// with `--tls-cert`), checks it, and serves it here or hands it, checked, to its
/// owner.
async fn handshake(shard: Rc<Shard>, mut stream: TcpStream, pass: Pass) {
    let mut peer = match stream.peer_addr() {
        Ok(peer) => peer,
        Err(_) => return,
    };
    let mut transport = Transport::default();
    let _ = stream.set_nodelay(true);
    let mut link = match &shard.tls {
        None => None,
        Some(certs) => match TlsLink::new(certs.current()) {
            Ok(link) => Some(Box::new(RefCell::new(link))),
            Err(e) => {
                log::warn!("shard {}: cannot start a TLS session: {e}", shard.id);
                return;
            }
        },
    };
    let mut buf = Vec::new();
    let max_head = shard.config.limits.max_head_size;
    let proxied = shard.config.proxy_protocol;
    let read = glommio::timer::timeout(shard.config.limits.handshake_timeout, async {
        if proxied {
            match read_proxy_header(&mut stream, &mut buf).await {
                Ok(ProxyHeader::Proxied { source, tls, .. }) => {
                    peer = source;
                    transport = transport_of(tls);
                }
                Ok(ProxyHeader::Local) => {}
                Err(e) => return Ok(Err(Early::Read(e))),
            }
        }
        let mut wire = match link.as_deref_mut().map(RefCell::get_mut) {
            // Bytes behind the PROXY header are the start of the TLS session.
            Some(link) => Wire::tls(&mut stream, link, std::mem::take(&mut buf)),
            None => Wire::plain(&mut stream),
        };
        if let Err(failure) = wire.handshake().await {
            return Ok(Err(Early::Tls(failure)));
        }
        if wire.is_tls() {
            shard.stats.borrow_mut().tls_handshakes += 1;
        }
        let head = read_head(&mut wire, &mut buf, max_head).await;
        wire.finish(&mut buf);
        Ok(head.map_err(Early::Read))
    })
    .await;
    if let Some(link) = &link {
        transport = Transport {
            tls: true,
            cert: link.borrow().client_cert(),
        };
    }
    let checked = match read {
        Err(_) if link.as_ref().is_some_and(|l| l.borrow().is_handshaking()) => {
            return tls_failed(&shard, peer, &HandshakeFailure::Timeout);
        }
        Err(_) => Err(Error::HandshakeTimeout),
        Ok(Ok(Some((head_len, head)))) => Upgrade::new(head)
            .map(|upgrade| (head_len, upgrade))
            .map_err(Error::from),
        Ok(Ok(None)) => return,
        Ok(Err(Early::Tls(failure))) => return tls_failed(&shard, peer, &failure),
        Ok(Err(Early::Read(e))) => Err(e.into()),
    };
    let mut wire = Wire::over(&mut stream, link.as_deref_mut().map(RefCell::get_mut));
    let (head_len, upgrade) = match checked {
        Ok(checked) => checked,
        Err(error) => return refuse(&shard, &mut wire, &error).await,
    };
    if let Err(error) = admission::check_origin(&shard, &upgrade.head) {
        return refuse(&shard, &mut wire, &error).await;
    }
    let slot = match admission::admit_address(&shard, peer.ip()).await {
        Ok(slot) => slot,
        Err(error) => return refuse(&shard, &mut wire, &error).await,
    };
    drop(wire);
    // Exactly what the client sent behind its head (usually nothing, so no allocation):
    // it lives as long as the connection.
    let leftover = buf.split_off(head_len);
    drop(buf);
    let owner = shard.owner_of(&upgrade.client);
    if owner == shard.id {
        let arrived = Arrived {
            stream,
            peer,
            transport,
            link,
            leftover,
            pass,
            slot,
        };
        return self::upgrade(shard, arrived, upgrade).await;
    }
    shard.stats.borrow_mut().handoffs += 1;
    match Handoff::new(stream, peer, leftover) {
        Ok(socket) => {
            let msg = ShardMsg::Adopt {
                socket,
                upgrade: Box::new(upgrade),
                address: slot.map(AddressSlot::hand_over),
                transport,
                link,
            };
            if shard.mesh.send(owner, msg).await.is_err() {
                log::warn!("shard {}: shard {owner} is gone", shard.id);
            }
        }
        Err(e) => log::warn!("shard {}: cannot hand off socket: {e}", shard.id),
    }
}

/// A TLS handshake that failed: counted, logged at debug, and the socket dropped (the
/// alert, if any, was sent).
fn tls_failed(shard: &Shard, peer: SocketAddr, failure: &HandshakeFailure) {
    log::debug!(
        "shard {}: TLS handshake from {peer} failed: {failure}",
        shard.id
    );
    shard.count_tls_failure(failure.reason());
}

/// Answers a refused handshake with its status and closes.
async fn refuse(shard: &Shard, stream: &mut Wire<'_>, error: &Error) {
    let status = error.status();
    log::debug!("shard {}: upgrade refused with {status}: {error}", shard.id);
    shard.stats.borrow_mut().upgrades_refused += 1;
    if let Some(reason) = error.edge_reason() {
        shard.count_refusal(reason);
    }
    if error.unanswerable() {
        // Gone, or not speaking our protocol at all: nothing to answer.
        return;
    }
    let extra = error.extra_headers();
    let extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let mut out = Vec::with_capacity(160);
    let body = format!("{}\n", response::reason(status));
    response::write_response(
        &mut out,
        status,
        Some("text/plain"),
        &extra,
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
pub async fn upgrade(shard: Rc<Shard>, arrived: Arrived, upgrade: Upgrade) {
    let Arrived {
        mut stream,
        peer,
        transport,
        mut link,
        leftover,
        pass,
        slot,
    } = arrived;
    let admitted = if shard.draining() {
        Err(Error::Draining)
    } else if shard.full() {
        Err(Error::Full)
    } else {
        Ok(())
    };
    if let Err(error) = admitted {
        return refuse(
            &shard,
            &mut Wire::over(&mut stream, link.as_deref_mut().map(RefCell::get_mut)),
            &error,
        )
        .await;
    }
    let Upgrade {
        head,
        client,
        accept,
    } = upgrade;
    let conn_id = shard.next_conn_id();
    let who = Who::new(client.as_str(), &conn_id, peer.ip(), transport.proto());
    let connect = Connect::new(who, head.query.as_deref(), |name| head.header(name))
        .with_cert(transport.cert.as_ref());
    let headers = connect.headers();
    let (verdict, answer) = match shard.api_request(&connect.request(&headers)).await {
        Err(e) => (Err(Error::Api(e)), None),
        Ok(answer) => {
            let answer = EventAnswer::new(answer);
            let verdict = match answer.connect() {
                ConnectVerdict::Accept { subprotocol } => Ok(subprotocol),
                ConnectVerdict::Status(status) => Err(Error::ApiStatus(status)),
                ConnectVerdict::Refused(body) => Err(Error::ApiRefused(body)),
            };
            (verdict, Some(answer))
        }
    };
    drop(headers);
    drop(connect);
    let protocol = match verdict {
        Ok(protocol) => protocol,
        Err(error) => {
            if error.side() == Side::Upstream {
                crate::log_limited!(
                    shard.upstream_log,
                    log::Level::Warn,
                    "shard {}: connect {client} from {peer} refused: {error}",
                    shard.id
                );
            }
            return refuse(
                &shard,
                &mut Wire::over(&mut stream, link.as_deref_mut().map(RefCell::get_mut)),
                &error,
            )
            .await;
        }
    };
    drop(head);
    let mut first = Vec::with_capacity(160);
    response::write_switching_protocols(&mut first, &accept, protocol.as_deref());
    let conn = Conn::new(
        client.clone(),
        conn_id,
        (peer, transport.tls),
        first,
        shard.budget.clone(),
    );
    let conn = Rc::new(match link {
        Some(link) => conn.with_tls(link),
        None => conn,
    });
    let (key, replaced) = shard.admit(client, conn.clone());
    shard.stats.borrow_mut().connections_opened += 1;
    // Groups the Connect answer joins take effect before the 101 goes out: a broadcast
    // from now on queues behind it.
    if let Some(answer) = answer {
        let changes = answer.group_changes();
        if !changes.is_empty() {
            shard.apply_group_changes(key, &changes);
        }
    }
    if let Some(old_key) = replaced {
        let old = shard.table.borrow().get(old_key).map(|e| e.conn.clone());
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
    glommio::spawn_local(session::serve(
        shard,
        stream,
        conn,
        key,
        leftover,
        (pass, slot),
    ))
    .detach();
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
