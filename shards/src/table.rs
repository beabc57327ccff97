//! The shard-local connection table: a generational slab of entries plus a name index.
//!
//! Every connection a shard owns lives in one slot. A [`Key`] names a slot *and* the
//! generation of its occupant, so a stale key (kept by a task whose connection already
//! left, and whose slot was reused) finds nothing instead of the wrong connection.
//! The name index maps a name (the ClientId) to the newest entry with that name: a
//! second connection with the same name takes the name over, and the older entry stays
//! in the table, reachable by its key, until its own task removes it.
//!
//! Why not `sharded-slab`: it is built for many threads sharing one slab (atomics on
//! every access, a page per thread). Here only the owning shard ever touches its table,
//! so a plain `Vec` with a free list is smaller and faster, and keeps the rule that no
//! shared structure sits on the hot path.

use std::collections::HashMap;
use std::hash::Hash;

/// Names one entry: its slot and the generation of that slot when it was inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    index: u32,
    generation: u32,
}

impl Key {
    /// The slot index (stable for the entry's life; reused after removal).
    pub fn index(self) -> u32 {
        self.index
    }

    /// The generation: how many times the slot had been filled before this entry.
    pub fn generation(self) -> u32 {
        self.generation
    }
}

enum Slot<N, V> {
    Occupied {
        generation: u32,
        name: N,
        value: V,
    },
    Vacant {
        generation: u32,
        next_free: Option<u32>,
    },
}

/// A shard-local table of named entries.
pub struct Table<N, V> {
    slots: Vec<Slot<N, V>>,
    free_head: Option<u32>,
    by_name: HashMap<N, Key>,
    len: usize,
}

impl<N: Clone + Eq + Hash, V> Default for Table<N, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<N: Clone + Eq + Hash, V> Table<N, V> {
    /// An empty table.
    pub fn new() -> Self {
        Table {
            slots: Vec::new(),
            free_head: None,
            by_name: HashMap::new(),
            len: 0,
        }
    }

    /// Number of entries (including ones whose name was taken over).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts `value` under `name`. Returns its key and, if another entry held the
    /// name, that entry's key: it keeps its slot but is no longer found by name.
    pub fn insert(&mut self, name: N, value: V) -> (Key, Option<Key>) {
        let key = match self.free_head {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                let (generation, next_free) = match *slot {
                    Slot::Vacant {
                        generation,
                        next_free,
                    } => (generation, next_free),
                    Slot::Occupied { .. } => unreachable!("free list points at an occupied slot"),
                };
                self.free_head = next_free;
                *slot = Slot::Occupied {
                    generation,
                    name: name.clone(),
                    value,
                };
                Key { index, generation }
            }
            None => {
                let index = u32::try_from(self.slots.len()).expect("more than 2^32 entries");
                self.slots.push(Slot::Occupied {
                    generation: 0,
                    name: name.clone(),
                    value,
                });
                Key {
                    index,
                    generation: 0,
                }
            }
        };
        self.len += 1;
        let previous = self.by_name.insert(name, key);
        (key, previous)
    }

    /// The key of the newest entry named `name`.
    pub fn lookup(&self, name: &N) -> Option<Key> {
        self.by_name.get(name).copied()
    }

    /// The entry behind `key`, if it is still there.
    pub fn get(&self, key: Key) -> Option<&V> {
        match self.slots.get(key.index as usize)? {
            Slot::Occupied {
                generation, value, ..
            } if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// The entry behind `key`, mutably, if it is still there.
    pub fn get_mut(&mut self, key: Key) -> Option<&mut V> {
        match self.slots.get_mut(key.index as usize)? {
            Slot::Occupied {
                generation, value, ..
            } if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// The newest entry named `name`.
    pub fn get_by_name(&self, name: &N) -> Option<(Key, &V)> {
        let key = self.lookup(name)?;
        self.get(key).map(|v| (key, v))
    }

    /// Removes the entry behind `key`. Its name is unmapped only if it still points to
    /// this entry (a newer connection with the same name keeps it).
    pub fn remove(&mut self, key: Key) -> Option<V> {
        let slot = self.slots.get_mut(key.index as usize)?;
        match slot {
            Slot::Occupied { generation, .. } if *generation == key.generation => {}
            _ => return None,
        }
        let vacant = Slot::Vacant {
            generation: key.generation.wrapping_add(1),
            next_free: self.free_head,
        };
        let Slot::Occupied { name, value, .. } = std::mem::replace(slot, vacant) else {
            unreachable!("checked above")
        };
        self.free_head = Some(key.index);
        self.len -= 1;
        if self.by_name.get(&name) == Some(&key) {
            self.by_name.remove(&name);
        }
        Some(value)
    }

    /// Every entry, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (Key, &N, &V)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| match slot {
                Slot::Occupied {
                    generation,
                    name,
                    value,
                } => Some((
                    Key {
                        index: index as u32,
                        generation: *generation,
                    },
                    name,
                    value,
                )),
                Slot::Vacant { .. } => None,
            })
    }

    /// Keys of every entry (a snapshot, so the caller may mutate the table while walking it).
    pub fn keys(&self) -> Vec<Key> {
        self.iter().map(|(key, _, _)| key).collect()
    }

    /// The entries whose slot index is `part` modulo `parts`: walking `part` = 0, 1, …,
    /// `parts - 1` visits every entry exactly once, and an entry stays in the same
    /// part for its whole life, however the table grows. Costs O(slots / parts).
    pub fn slice(&self, part: usize, parts: usize) -> impl Iterator<Item = (Key, &V)> {
        let parts = parts.max(1);
        self.slots
            .iter()
            .enumerate()
            .skip(part % parts)
            .step_by(parts)
            .filter_map(|(index, slot)| match slot {
                Slot::Occupied {
                    generation, value, ..
                } => Some((
                    Key {
                        index: index as u32,
                        generation: *generation,
                    },
                    value,
                )),
                Slot::Vacant { .. } => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove() {
        let mut t: Table<&str, u32> = Table::new();
        let (a, prev) = t.insert("a", 1);
        assert_eq!(prev, None);
        assert_eq!(t.get(a), Some(&1));
        assert_eq!(t.get_by_name(&"a"), Some((a, &1)));
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove(a), Some(1));
        assert_eq!(t.get(a), None);
        assert_eq!(t.lookup(&"a"), None);
        assert!(t.is_empty());
    }

    #[test]
    fn a_stale_key_finds_nothing_after_the_slot_is_reused() {
        let mut t: Table<&str, u32> = Table::new();
        let (old, _) = t.insert("a", 1);
        t.remove(old);
        let (new, _) = t.insert("b", 2);
        assert_eq!(new.index(), old.index(), "slot is reused");
        assert_eq!(new.generation(), old.generation() + 1);
        assert_eq!(t.get(old), None);
        assert_eq!(t.get_mut(old), None);
        assert_eq!(
            t.remove(old),
            None,
            "a stale remove must not evict the new entry"
        );
        assert_eq!(t.get(new), Some(&2));
    }

    #[test]
    fn a_second_entry_takes_the_name_and_the_first_stays_by_key() {
        let mut t: Table<&str, u32> = Table::new();
        let (first, _) = t.insert("a", 1);
        let (second, replaced) = t.insert("a", 2);
        assert_eq!(replaced, Some(first));
        assert_eq!(t.lookup(&"a"), Some(second));
        assert_eq!(t.get(first), Some(&1));
        assert_eq!(t.len(), 2);
        // The replaced one leaves: the name still belongs to the second.
        assert_eq!(t.remove(first), Some(1));
        assert_eq!(t.lookup(&"a"), Some(second));
        assert_eq!(t.remove(second), Some(2));
        assert_eq!(t.lookup(&"a"), None);
    }

    #[test]
    fn slices_visit_every_entry_once() {
        let mut t: Table<u32, u32> = Table::new();
        for i in 0..23 {
            t.insert(i, i);
        }
        t.remove(t.lookup(&5).unwrap());
        let mut seen: Vec<u32> = (0..4)
            .flat_map(|part| t.slice(part, 4).map(|(_, v)| *v))
            .collect();
        seen.sort();
        let want: Vec<u32> = (0..23).filter(|&i| i != 5).collect();
        assert_eq!(seen, want);
        assert!(t.slice(1, 4).all(|(key, _)| key.index() % 4 == 1));
    }

    #[test]
    fn free_slots_are_reused_last_freed_first() {
        let mut t: Table<u32, u32> = Table::new();
        let keys: Vec<Key> = (0..4).map(|i| t.insert(i, i).0).collect();
        t.remove(keys[1]);
        t.remove(keys[3]);
        assert_eq!(t.insert(10, 10).0.index(), 3);
        assert_eq!(t.insert(11, 11).0.index(), 1);
        assert_eq!(t.insert(12, 12).0.index(), 4);
        let names: Vec<u32> = t.iter().map(|(_, n, _)| *n).collect();
        assert_eq!(names, vec![0, 11, 2, 10, 12]);
        assert_eq!(t.keys().len(), 5);
    }
}
