//! One shard's groups: which of its own connections belong to which group. Shard-local
//! like the connection table it indexes into; a broadcast reaches the other shards'
//! members through one mesh message per shard, never through this registry.
//!
//! A group is a set of table keys under a small id; each connection's entry in the
//! table lists the ids of its groups ([`Memberships`]), so a connection that leaves
//! the table leaves every group at once, and a replacement starts in none. A group
//! with no member left is forgotten.

use std::collections::{HashMap, HashSet};

use ws2api_shards::Key;

use crate::group::GroupName;

/// The ids of one connection's groups, kept with its table entry.
pub type Memberships = Vec<u32>;

struct Group {
    name: GroupName,
    members: HashSet<Key>,
}

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtCap;

/// The groups of one shard.
#[derive(Default)]
pub struct Groups {
    ids: HashMap<GroupName, u32>,
    slots: Vec<Option<Group>>,
    free: Vec<u32>,
    memberships: usize,
}

impl Groups {
    /// Adds connection `key` (whose groups are `mine`) to `name`. `Ok(false)` if it
    /// was a member already; `Err(AtCap)` if it is in `cap` groups.
    pub fn join(
        &mut self,
        name: &GroupName,
        key: Key,
        mine: &mut Memberships,
        cap: usize,
    ) -> Result<bool, AtCap> {
        if let Some(&id) = self.ids.get(name) {
            if mine.contains(&id) {
                return Ok(false);
            }
        }
        if mine.len() >= cap {
            return Err(AtCap);
        }
        let id = match self.ids.get(name) {
            Some(&id) => id,
            None => self.create(name),
        };
        if let Some(group) = self.slots[id as usize].as_mut() {
            group.members.insert(key);
        }
        mine.push(id);
        self.memberships += 1;
        Ok(true)
    }

    /// Removes connection `key` (whose groups are `mine`) from `name`; false if it was
    /// not a member.
    pub fn leave(&mut self, name: &GroupName, key: Key, mine: &mut Memberships) -> bool {
        let Some(&id) = self.ids.get(name) else {
            return false;
        };
        let Some(at) = mine.iter().position(|&g| g == id) else {
            return false;
        };
        mine.swap_remove(at);
        self.remove_member(id, key);
        true
    }

    /// Removes connection `key` from every group in `mine` (it is leaving the table).
    pub fn leave_all(&mut self, key: Key, mine: &Memberships) {
        for &id in mine {
            self.remove_member(id, key);
        }
    }

    /// The table keys of `name`'s members on this shard.
    pub fn members(&self, name: &GroupName) -> impl Iterator<Item = Key> + '_ {
        self.ids
            .get(name)
            .and_then(|&id| self.slots[id as usize].as_ref())
            .into_iter()
            .flat_map(|group| group.members.iter().copied())
    }

    /// How many of this shard's connections are in `name`.
    pub fn count(&self, name: &GroupName) -> usize {
        self.ids
            .get(name)
            .and_then(|&id| self.slots[id as usize].as_ref())
            .map_or(0, |group| group.members.len())
    }

    /// The name of group `id` (an id from a [`Memberships`]).
    pub fn name(&self, id: u32) -> Option<&GroupName> {
        self.slots
            .get(id as usize)
            .and_then(Option::as_ref)
            .map(|group| &group.name)
    }

    /// Groups with at least one member on this shard.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no group has a member here.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// (connection, group) pairs on this shard.
    pub fn memberships(&self) -> usize {
        self.memberships
    }

    fn create(&mut self, name: &GroupName) -> u32 {
        let group = Group {
            name: name.clone(),
            members: HashSet::new(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(group);
                id
            }
            None => {
                self.slots.push(Some(group));
                (self.slots.len() - 1) as u32
            }
        };
        self.ids.insert(name.clone(), id);
        id
    }

    fn remove_member(&mut self, id: u32, key: Key) {
        let Some(group) = self.slots.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        if group.members.remove(&key) {
            self.memberships -= 1;
        }
        if group.members.is_empty() {
            if let Some(group) = self.slots[id as usize].take() {
                self.ids.remove(&group.name);
            }
            self.free.push(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ws2api_shards::Table;

    fn name(s: &str) -> GroupName {
        GroupName::parse(s.as_bytes()).unwrap()
    }

    fn keys(n: usize) -> Vec<Key> {
        let mut table = Table::new();
        (0..n).map(|i| table.insert(i, ()).0).collect()
    }

    #[test]
    fn join_leave_and_counts() {
        let (mut groups, k) = (Groups::default(), keys(3));
        let (mut a, mut b) = (Memberships::new(), Memberships::new());
        assert_eq!(groups.join(&name("room"), k[0], &mut a, 64), Ok(true));
        assert_eq!(groups.join(&name("room"), k[0], &mut a, 64), Ok(false));
        assert_eq!(groups.join(&name("room"), k[1], &mut b, 64), Ok(true));
        assert_eq!(groups.join(&name("other"), k[1], &mut b, 64), Ok(true));
        assert_eq!(groups.count(&name("room")), 2);
        assert_eq!((groups.len(), groups.memberships()), (2, 3));
        let mut members: Vec<Key> = groups.members(&name("room")).collect();
        members.sort_by_key(|k| k.index());
        assert_eq!(members, [k[0], k[1]]);
        assert!(groups.leave(&name("room"), k[0], &mut a));
        assert!(!groups.leave(&name("room"), k[0], &mut a));
        assert!(!groups.leave(&name("nowhere"), k[0], &mut a));
        assert!(a.is_empty());
        assert_eq!(groups.count(&name("room")), 1);
        assert_eq!(groups.members(&name("nowhere")).count(), 0);
    }

    #[test]
    fn the_cap_counts_each_connections_groups() {
        let (mut groups, k) = (Groups::default(), keys(1));
        let mut mine = Memberships::new();
        assert_eq!(groups.join(&name("a"), k[0], &mut mine, 2), Ok(true));
        assert_eq!(groups.join(&name("b"), k[0], &mut mine, 2), Ok(true));
        assert_eq!(groups.join(&name("c"), k[0], &mut mine, 2), Err(AtCap));
        // Already a member is not over the cap.
        assert_eq!(groups.join(&name("a"), k[0], &mut mine, 2), Ok(false));
        assert_eq!(groups.count(&name("c")), 0);
        assert_eq!(groups.len(), 2);
    }

    #[test]
    fn leaving_the_table_leaves_every_group_and_empty_groups_are_forgotten() {
        let (mut groups, k) = (Groups::default(), keys(2));
        let (mut a, mut b) = (Memberships::new(), Memberships::new());
        for g in ["x", "y", "z"] {
            groups.join(&name(g), k[0], &mut a, 64).unwrap();
        }
        groups.join(&name("y"), k[1], &mut b, 64).unwrap();
        groups.leave_all(k[0], &a);
        assert_eq!((groups.len(), groups.memberships()), (1, 1));
        assert_eq!(groups.count(&name("y")), 1);
        assert_eq!(groups.count(&name("x")), 0);
        // Slots are reused, and an old id names the group now in it, not the old one.
        let mut c = Memberships::new();
        groups.join(&name("w"), k[0], &mut c, 64).unwrap();
        assert_eq!(groups.name(c[0]), Some(&name("w")));
        assert_eq!(groups.len(), 2);
    }
}
