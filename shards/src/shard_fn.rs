//! The shard function: which shard owns a key. Pure, stable across releases and machines.
//!
//! The owner of a ClientId is `fnv1a64(bytes) % shards`. FNV-1a is chosen because it is
//! tiny, has no per-process random seed (so every shard, every restart and every tool
//! that wants to predict placement agrees), and spreads short ASCII ids well. The golden
//! values in the tests pin it: a change to this function moves every client and must be
//! deliberate.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `key`.
pub fn fnv1a64(key: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET;
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// The shard (0-based) that owns `key` among `shards` shards. `shards` must be at least 1.
pub fn shard_of(key: &[u8], shards: usize) -> usize {
    debug_assert!(shards > 0, "shard_of needs at least one shard");
    (fnv1a64(key) % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_published_vectors() {
        // Vectors from the FNV reference test suite.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn golden_owners_never_change() {
        // Values computed by an independent implementation (Python). If this test fails, every client moves to another shard: only change it on purpose.
        let cases: &[(&[u8], usize, usize)] = &[
            (b"alice", 2, 1),
            (b"bob", 2, 0),
            (b"client-1", 2, 0),
            (b"client-2", 2, 1),
            (b"alice", 16, 7),
            (b"bob", 16, 4),
            (b"client-1", 16, 8),
            (b"client-2", 16, 1),
            (b"x", 1, 0),
        ];
        for &(key, shards, owner) in cases {
            assert_eq!(
                shard_of(key, shards),
                owner,
                "owner of {:?} among {shards}",
                std::str::from_utf8(key).unwrap()
            );
        }
    }

    #[test]
    fn spreads_sequential_ids_evenly() {
        let shards = 8;
        let mut counts = vec![0usize; shards];
        for i in 0..80_000 {
            counts[shard_of(format!("client-{i}").as_bytes(), shards)] += 1;
        }
        for (shard, &count) in counts.iter().enumerate() {
            assert!(
                (9_000..11_000).contains(&count),
                "shard {shard} got {count} of 80000"
            );
        }
    }
}
