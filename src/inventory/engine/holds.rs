//! The holds of one event, beside the seats: records in a slab addressed by a `u32` that the held
//! seats carry, and a map from reservation id to slot. Nothing here grows by copying everything
//! under the event's lock: the slab grows a chunk at a time, and the map is split in shards that
//! each resize alone (1/64 of the records), pre-sized from the hall.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;

use chrono::{DateTime, Utc};

use super::HoldState;
use crate::inventory::ReleaseOutcome;

#[derive(Clone, Debug)]
pub struct Hold {
    pub reservation: Box<str>,
    pub user_id: Box<str>,
    /// Event-wide seat indices, in the order the hold named or picked them.
    pub seats: Box<[u32]>,
    pub until: DateTime<Utc>,
    pub state: HoldState,
    pub committed_at: Option<DateTime<Utc>>,
    /// The intent of the first commit, repeated to every later one.
    pub payment_intent_id: Box<str>,
    /// The first release's answer, repeated to every later release.
    pub release: Option<(ReleaseOutcome, DateTime<Utc>)>,
}

enum Slot {
    Used(Hold),
    /// Free, with the next free slot (`u32::MAX`: none).
    Vacant(u32),
}

const CHUNK: usize = 1024;
const SHARDS: usize = 64;
const NONE: u32 = u32::MAX;

pub struct Holds {
    chunks: Vec<Box<[Slot]>>,
    next_free: u32,
    shards: Vec<HashMap<Box<str>, u32>>,
    hasher: RandomState,
    len: usize,
}

impl Holds {
    /// Room for about one hold per `seats / 8` without any resize; past that, shards grow alone.
    pub fn with_seats(seats: usize) -> Self {
        let per_shard = (seats / 8 / SHARDS).max(4);
        Self {
            chunks: Vec::new(),
            next_free: NONE,
            shards: (0..SHARDS)
                .map(|_| HashMap::with_capacity(per_shard))
                .collect(),
            hasher: RandomState::new(),
            len: 0,
        }
    }

    fn shard(&self, reservation: &str) -> usize {
        self.hasher.hash_one(reservation) as usize % SHARDS
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn find(&self, reservation: &str) -> Option<u32> {
        self.shards[self.shard(reservation)]
            .get(reservation)
            .copied()
    }

    pub fn get(&self, slot: u32) -> Option<&Hold> {
        match self
            .chunks
            .get(slot as usize / CHUNK)?
            .get(slot as usize % CHUNK)?
        {
            Slot::Used(h) => Some(h),
            Slot::Vacant(_) => None,
        }
    }

    pub fn get_mut(&mut self, slot: u32) -> Option<&mut Hold> {
        match self
            .chunks
            .get_mut(slot as usize / CHUNK)?
            .get_mut(slot as usize % CHUNK)?
        {
            Slot::Used(h) => Some(h),
            Slot::Vacant(_) => None,
        }
    }

    /// Keep a new hold (its reservation must not have one); its slot.
    pub fn insert(&mut self, hold: Hold) -> u32 {
        if self.next_free == NONE {
            let base = (self.chunks.len() * CHUNK) as u32;
            assert!(base < NONE - CHUNK as u32, "under 2^32 holds per event");
            let chunk: Box<[Slot]> = (0..CHUNK as u32)
                .map(|i| {
                    Slot::Vacant(if i + 1 < CHUNK as u32 {
                        base + i + 1
                    } else {
                        NONE
                    })
                })
                .collect();
            self.chunks.push(chunk);
            self.next_free = base;
        }
        let slot = self.next_free;
        let shard = self.shard(&hold.reservation);
        self.shards[shard].insert(hold.reservation.clone(), slot);
        let cell = &mut self.chunks[slot as usize / CHUNK][slot as usize % CHUNK];
        let Slot::Vacant(next) = std::mem::replace(cell, Slot::Used(hold)) else {
            unreachable!("the free list holds vacant slots")
        };
        self.next_free = next;
        self.len += 1;
        slot
    }

    pub fn remove(&mut self, slot: u32) {
        let next = self.next_free;
        let Some(cell) = self
            .chunks
            .get_mut(slot as usize / CHUNK)
            .and_then(|c| c.get_mut(slot as usize % CHUNK))
        else {
            return;
        };
        if let Slot::Used(h) = std::mem::replace(cell, Slot::Vacant(next)) {
            let shard = self.hasher.hash_one(&*h.reservation) as usize % SHARDS;
            self.shards[shard].remove(&h.reservation);
            self.next_free = slot;
            self.len -= 1;
        } else {
            *cell = Slot::Vacant(next);
        }
    }

    pub fn heap_bytes(&self) -> usize {
        let map: usize = self
            .shards
            .iter()
            .map(|s| s.capacity() * (std::mem::size_of::<(Box<str>, u32)>() + 1))
            .sum();
        map + self.chunks.len() * CHUNK * std::mem::size_of::<Slot>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(r: &str) -> Hold {
        Hold {
            reservation: r.into(),
            user_id: "u".into(),
            seats: Box::new([1, 2]),
            until: Utc::now(),
            state: HoldState::Active,
            committed_at: None,
            payment_intent_id: "".into(),
            release: None,
        }
    }

    #[test]
    fn slots_are_found_by_reservation_and_reused_after_removal() {
        let mut h = Holds::with_seats(100);
        let slots: Vec<u32> = (0..3000)
            .map(|n| h.insert(hold(&format!("r{n}"))))
            .collect();
        assert_eq!(h.len(), 3000);
        assert_eq!(h.find("r2999"), Some(slots[2999]));
        assert_eq!(&*h.get(slots[17]).unwrap().reservation, "r17");
        h.remove(slots[17]);
        h.remove(slots[17]);
        assert_eq!(h.len(), 2999);
        assert_eq!(h.find("r17"), None);
        assert!(h.get(slots[17]).is_none());
        assert_eq!(h.insert(hold("again")), slots[17], "the freed slot first");
        assert_eq!(h.find("again"), Some(slots[17]));
        assert_eq!(h.chunks.len(), 3);
    }

    #[test]
    fn a_growing_map_never_resizes_more_than_one_shard_at_once() {
        let mut h = Holds::with_seats(8_000);
        let caps = |h: &Holds| h.shards.iter().map(|s| s.capacity()).collect::<Vec<_>>();
        let mut before = caps(&h);
        let mut worst = 0.0f64;
        for n in 0..100_000 {
            h.insert(hold(&format!("r{n}")));
            let after = caps(&h);
            let grown: Vec<usize> = (0..SHARDS).filter(|&i| after[i] != before[i]).collect();
            assert!(grown.len() <= 1, "one shard at a time");
            if let (Some(&g), true) = (grown.first(), h.len() >= 10_000) {
                // The records a resize moves, as a share of all records.
                worst = worst.max(h.shards[g].len() as f64 / h.len() as f64);
            }
            before = after;
        }
        assert!(worst > 0.0, "the shards did grow");
        assert!(
            worst <= 1.0 / 16.0,
            "a resize moved {worst:.3} of the records"
        );
    }
}
