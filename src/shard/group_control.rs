//! The control listener's group routes (SPEC "Groups and broadcast"):
//!
//! - `POST /groups/<group>[?except=<ClientId>]`: broadcast, answered once every shard
//!   queued it (one mesh message per shard, the payload shared, not copied);
//! - `GET /groups/<group>`: members counted over every shard;
//! - `PUT` / `DELETE /groups/<group>/<ClientId>`: join / leave, on the client's owner.

use std::sync::Arc;

use super::{Membership, Op, OpReply, Shard};
use crate::api::contract;
use crate::client_id::ClientId;
use crate::error::Error;
use crate::group::{Audience, GroupName};
use crate::http::request::{Method, RequestHead};

/// What a group route answers: its status is 200, the body JSON or `ok`.
pub enum Answer {
    /// `200 ok`.
    Ok,
    /// `200` with a JSON body.
    Json(String),
}

/// Serves `/groups/<rest>`.
pub async fn route(
    shard: &Shard,
    head: &RequestHead,
    rest: &str,
    body: Vec<u8>,
) -> Result<Answer, Error> {
    match rest.split_once('/') {
        None => {
            let audience = Audience::parse(rest.as_bytes()).map_err(Error::BadGroup)?;
            match head.method {
                Method::Post => broadcast(shard, head, audience, body).await,
                Method::Get => count(shard, audience).await,
                _ => Err(Error::MethodNotAllowed),
            }
        }
        Some((group, client)) => {
            let group = GroupName::parse(group.as_bytes()).map_err(Error::BadGroup)?;
            let client = ClientId::parse(client.as_bytes()).map_err(|_| Error::NotFound)?;
            let op = match head.method {
                Method::Put => Op::Join { client, group },
                Method::Delete => Op::Leave { client, group },
                _ => return Err(Error::MethodNotAllowed),
            };
            let owner = match &op {
                Op::Join { client, .. } | Op::Leave { client, .. } => shard.owner_of(client),
                _ => unreachable!("a join or a leave"),
            };
            match shard.call(owner, op).await {
                Some(OpReply::Membership(Membership::Done)) => Ok(Answer::Ok),
                Some(OpReply::Membership(Membership::NotFound)) => Err(Error::NotFound),
                Some(OpReply::Membership(Membership::AtCap)) => Err(Error::TooManyGroups),
                _ => Err(Error::OwnerSilent),
            }
        }
    }
}

/// `POST /groups/<group>[?except=<ClientId>]`.
async fn broadcast(
    shard: &Shard,
    head: &RequestHead,
    audience: Audience,
    body: Vec<u8>,
) -> Result<Answer, Error> {
    let except = except(head.query.as_deref())?;
    let payload: Arc<[u8]> = Arc::from(body);
    let binary = contract::is_binary(head.header("content-type"));
    let replies = shard
        .call_all(|| Op::Broadcast {
            audience: audience.clone(),
            payload: payload.clone(),
            binary,
            except: except.clone(),
        })
        .await;
    let (mut queued, mut full) = (0u64, 0u64);
    for reply in replies {
        match reply {
            Some(OpReply::Broadcast { queued: q, full: f }) => {
                queued += q;
                full += f;
            }
            _ => return Err(Error::OwnerSilent),
        }
    }
    Ok(Answer::Json(format!(
        "{{\"queued\": {queued}, \"full\": {full}}}\n"
    )))
}

/// `GET /groups/<group>`.
async fn count(shard: &Shard, audience: Audience) -> Result<Answer, Error> {
    let mut members = 0u64;
    for reply in shard
        .call_all(|| Op::Count {
            audience: audience.clone(),
        })
        .await
    {
        match reply {
            Some(OpReply::Count(n)) => members += n,
            _ => return Err(Error::OwnerSilent),
        }
    }
    Ok(Answer::Json(format!(
        "{{\"group\": \"{audience}\", \"members\": {members}}}\n"
    )))
}

/// The `except` of a broadcast's query, if any.
fn except(query: Option<&str>) -> Result<Option<ClientId>, Error> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("except=") {
            return ClientId::parse(value.as_bytes())
                .map(Some)
                .map_err(|e| Error::BadQuery(format!("except: {e}")));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn except_from_the_query() {
        assert_eq!(except(None).unwrap(), None);
        assert_eq!(except(Some("x=1")).unwrap(), None);
        assert_eq!(
            except(Some("x=1&except=alice")).unwrap(),
            Some(ClientId::parse(b"alice").unwrap())
        );
        assert!(except(Some("except=a%20b")).is_err());
        assert!(except(Some("except=")).is_err());
    }
}
