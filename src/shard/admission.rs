//! The edge's checks of a new connection, made on the shard that read its upgrade
//! request, before any API request: its `Origin` against `--allowed-origins`, then
//! its address against the per-address table, which lives on the shard that owns the
//! address (asked once per connection, over the mesh when that is another shard).
//! An admitted connection holds an [`AddressSlot`] for its whole life; dropping it
//! gives the count back to the address's shard.

use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{Op, OpReply, Shard, ShardMsg};
use crate::error::Error;
use crate::http::request::RequestHead;

/// How often each shard forgets the idle entries of its per-address table.
const FORGET_EVERY: Duration = Duration::from_secs(1);

/// A connection counted in its address's entry; released when dropped.
pub struct AddressSlot {
    ip: IpAddr,
    /// `None` once handed over to another shard (as plain data, in `Adopt`).
    shard: Option<Rc<Shard>>,
}

impl AddressSlot {
    /// The slot of a connection adopted from another shard, which counted it.
    pub fn adopt(shard: &Rc<Shard>, ip: IpAddr) -> AddressSlot {
        AddressSlot {
            ip,
            shard: Some(shard.clone()),
        }
    }

    /// Gives the slot up without releasing it: the adopting shard takes it over.
    pub fn hand_over(mut self) -> IpAddr {
        self.shard = None;
        self.ip
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Some(shard) = self.shard.take() {
            shard.release_address(self.ip);
        }
    }
}

/// `--allowed-origins`: a browser's upgrade from an origin not listed is refused;
/// a request without `Origin` passes.
pub fn check_origin(shard: &Shard, head: &RequestHead) -> Result<(), Error> {
    let Some(allowed) = &shard.config.edge.allowed_origins else {
        return Ok(());
    };
    match head.header("origin") {
        Some(origin) if !allowed.allows(origin) => Err(Error::OriginNotAllowed),
        _ => Ok(()),
    }
}

/// Counts a new connection from `ip` on the shard that owns the address; `None` while
/// the per-address limits are off.
pub async fn admit_address(shard: &Rc<Shard>, ip: IpAddr) -> Result<Option<AddressSlot>, Error> {
    if !shard.config.edge.per_address() {
        return Ok(None);
    }
    match shard
        .call(shard.owner_of_address(ip), Op::Admit { ip })
        .await
    {
        Some(OpReply::Admission(Ok(()))) => Ok(Some(AddressSlot::adopt(shard, ip))),
        Some(OpReply::Admission(Err(refusal))) => Err(Error::Address(refusal)),
        _ => Err(Error::OwnerSilent),
    }
}

impl Shard {
    /// A connection admitted from `ip` ended: its address's shard counts it no more.
    pub fn release_address(&self, ip: IpAddr) {
        let owner = self.owner_of_address(ip);
        if owner == self.id {
            self.addresses.borrow_mut().release(ip, Instant::now());
            return;
        }
        let mesh = self.mesh.clone();
        glommio::spawn_local(async move {
            let _ = mesh.send(owner, ShardMsg::Release { ip }).await;
        })
        .detach();
    }
}

/// Forgets, every second, the addresses of this shard's table that have no
/// connection and no burst left to pay back (only while the limits are on).
pub async fn forget_idle_addresses(shard: Rc<Shard>) {
    if !shard.config.edge.per_address() {
        return;
    }
    while !shard.draining() {
        glommio::timer::sleep(FORGET_EVERY).await;
        shard.addresses.borrow_mut().sweep(Instant::now());
    }
}
