//! Folding per-shard statistics: each shard keeps its own, and they are added up only
//! when someone asks (a scrape, a dump), never on the hot path.

/// Statistics that can be merged by addition.
pub trait Fold: Default {
    /// Adds `other` into `self`.
    fn fold(&mut self, other: &Self);
}

/// The sum of every shard's statistics.
pub fn fold_all<'a, S: Fold + 'a>(parts: impl IntoIterator<Item = &'a S>) -> S {
    let mut total = S::default();
    for part in parts {
        total.fold(part);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug, PartialEq)]
    struct Counters {
        opened: u64,
        active: u64,
    }

    impl Fold for Counters {
        fn fold(&mut self, other: &Self) {
            self.opened += other.opened;
            self.active += other.active;
        }
    }

    #[test]
    fn folds_by_addition() {
        let shards = [
            Counters {
                opened: 3,
                active: 1,
            },
            Counters {
                opened: 4,
                active: 2,
            },
        ];
        assert_eq!(
            fold_all(&shards),
            Counters {
                opened: 7,
                active: 3
            }
        );
        assert_eq!(fold_all::<Counters>([]), Counters::default());
    }
}
