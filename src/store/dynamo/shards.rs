//! The shards of the sparse indexes `holds_by_expiry` and `pending_by_due` (docs/outbox.md,
//! "Index shards"): how many a writer spreads over, which ones a reader covers while the count
//! changes, and which ones each round reads.
//!
//! A shard is one index partition key, and a partition takes about 1,000 WCU/s; the count sets the
//! ceiling of all events together. Readers cover the union of the current and the previous count
//! (shard ids are `0..n`, so the union is `0..max`), so that items written under the old count are
//! still found while a change rolls out. A round reads a bounded window: the shards this process
//! wrote to since its last round first, then the next ones of a rotating cursor.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// The shard count, the previous one during a change, and the shards a round reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardLayout {
    /// `DYNAMODB_INDEX_SHARDS`: what writers spread new items over.
    pub current: u32,
    /// `DYNAMODB_INDEX_SHARDS_PREVIOUS`: the count before a change; readers still cover it.
    pub previous: Option<u32>,
    /// `DYNAMODB_INDEX_SHARDS_PER_ROUND`: shards one relay round or sweep reads.
    pub per_round: u32,
}

impl Default for ShardLayout {
    fn default() -> Self {
        Self {
            current: 64,
            previous: None,
            per_round: 8,
        }
    }
}

impl ShardLayout {
    /// A layout of `n` shards, every one read each round (tests, and the old fixed layout).
    pub fn all(n: u32) -> Self {
        Self {
            current: n,
            previous: None,
            per_round: n,
        }
    }

    /// The shard ids readers cover: `0..span`.
    pub fn span(&self) -> u32 {
        self.current.max(self.previous.unwrap_or(0)).max(1)
    }
}

/// A small stable shard number for spreading a sparse index's partition key.
pub fn shard_of(id: &str, shards: u32) -> u32 {
    let h = id.bytes().fold(0u32, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u32::from(b))
    });
    h % shards.max(1)
}

/// Which shards the next round reads: those marked (written to by this process, or left with
/// more work by the last round) first, then the rotating cursor's, `per_round` in all.
pub struct ShardRounds {
    span: u32,
    per_round: u32,
    cursor: AtomicU32,
    marked: Vec<AtomicBool>,
}

impl ShardRounds {
    pub fn new(layout: &ShardLayout) -> Self {
        let span = layout.span();
        // Processes start at different places so that their windows do not move in step.
        let start = rand::random::<u32>() % span;
        Self {
            span,
            per_round: layout.per_round.clamp(1, span),
            cursor: AtomicU32::new(start),
            marked: (0..span).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Read `shard` in the next round.
    pub fn mark(&self, shard: u32) {
        if let Some(m) = self.marked.get(shard as usize) {
            m.store(true, Ordering::Relaxed);
        }
    }

    /// The shards of the next round; advances the cursor by one window. Marked shards take at
    /// most half of it (the rest stay marked for the next round), so that the cursor always moves
    /// on: shards that keep marking themselves (successors that wait for a predecessor elsewhere)
    /// must not hold the window still, or what they wait for is never read.
    pub fn next_round(&self) -> Vec<u32> {
        let n = self.per_round as usize;
        let marked_room = if self.per_round < self.span {
            (n / 2).max(1)
        } else {
            n
        };
        let start = self.cursor.load(Ordering::Relaxed) % self.span;
        let order = (0..self.span).map(|i| (start + i) % self.span);
        let mut chosen: Vec<u32> = order
            .clone()
            .filter(|&s| self.marked[s as usize].swap(false, Ordering::Relaxed))
            .take(marked_room)
            .collect();
        // The cursor moves past the last shard the window filled in with, so that the shards it
        // skipped for lack of room come first next round.
        let mut passed = 0;
        for s in order {
            if chosen.len() >= n {
                break;
            }
            passed += 1;
            if !chosen.contains(&s) {
                // Read this round: a mark it had is answered (the round marks it again if needed).
                self.marked[s as usize].store(false, Ordering::Relaxed);
                chosen.push(s);
            }
        }
        self.cursor.fetch_add(passed, Ordering::Relaxed);
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_cover_both_counts_and_rounds_cover_every_shard_in_turn() {
        let layout = ShardLayout {
            current: 8,
            previous: Some(64),
            per_round: 8,
        };
        assert_eq!(layout.span(), 64);
        let rounds = ShardRounds::new(&layout);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..8 {
            let r = rounds.next_round();
            assert_eq!(r.len(), 8);
            seen.extend(r);
        }
        assert_eq!(seen.len(), 64);
    }

    #[test]
    fn shards_that_mark_themselves_every_round_do_not_hold_the_window_still() {
        let rounds = ShardRounds::new(&ShardLayout::default());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..16 {
            let r = rounds.next_round();
            assert_eq!(r.len(), 8);
            // Every shard read marks itself again, as a window of blocked successors does.
            for &s in &r {
                rounds.mark(s);
            }
            seen.extend(r);
        }
        assert_eq!(
            seen.len(),
            64,
            "the cursor reached only {} shards",
            seen.len()
        );
    }

    #[test]
    fn a_marked_shard_is_read_in_the_next_round() {
        let rounds = ShardRounds::new(&ShardLayout::default());
        for s in [63, 5, 40] {
            rounds.mark(s);
        }
        let r = rounds.next_round();
        assert_eq!(r.len(), 8);
        for s in [63, 5, 40] {
            assert!(r.contains(&s), "{r:?}");
        }
        assert!(shard_of("rsv_abc", 64) < 64);
    }
}
