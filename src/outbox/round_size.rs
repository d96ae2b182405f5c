//! The size of the outbox relay's next round, adapted to the store (docs/outbox.md,
//! "Rounds that fit the store").

/// How many events the next round claims: multiplicative decrease when the store times out or
/// throttles, growth by a quarter after [`RoundSize::GROW_AFTER`] good rounds in a row (so that a
/// store near its limit is probed rarely, and each probe that fails strands at most one round's
/// claims until their lease ends).
#[derive(Debug)]
pub struct RoundSize {
    max: usize,
    current: std::sync::atomic::AtomicUsize,
    good: std::sync::atomic::AtomicU32,
}

impl RoundSize {
    const GROW_AFTER: u32 = 3;

    pub fn new(max: usize) -> Self {
        metrics::gauge!("outbox_round_size").set(max.max(1) as f64);
        Self {
            max: max.max(1),
            current: max.max(1).into(),
            good: 0.into(),
        }
    }

    pub fn get(&self) -> usize {
        self.current.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The store timed out or throttled: halve the round.
    pub fn shrink(&self) -> usize {
        use std::sync::atomic::Ordering::Relaxed;
        self.good.store(0, Relaxed);
        let next = (self.get() / 2).max(1);
        self.current.store(next, Relaxed);
        metrics::gauge!("outbox_round_size").set(next as f64);
        next
    }

    /// A round whose store requests all succeeded.
    pub fn succeeded(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let current = self.get();
        if current >= self.max {
            return;
        }
        if self.good.fetch_add(1, Relaxed) + 1 >= Self::GROW_AFTER {
            self.good.store(0, Relaxed);
            let next = (current + current.div_ceil(4)).min(self.max);
            self.current.store(next, Relaxed);
            metrics::gauge!("outbox_round_size").set(next as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_halves_on_overload_and_grows_back_after_good_rounds() {
        let size = RoundSize::new(100);
        assert_eq!(size.get(), 100);
        assert_eq!(size.shrink(), 50);
        assert_eq!(size.shrink(), 25);
        size.succeeded();
        size.succeeded();
        assert_eq!(size.get(), 25, "grows only after a run of good rounds");
        size.succeeded();
        assert_eq!(size.get(), 32);
        for _ in 0..30 {
            size.succeeded();
        }
        assert_eq!(size.get(), 100, "never past the configured batch");
        for _ in 0..10 {
            size.shrink();
        }
        assert_eq!(size.get(), 1, "never below one event");
        size.succeeded();
        size.succeeded();
        size.succeeded();
        assert_eq!(size.get(), 2);
    }

    #[test]
    fn a_lost_shrink_resets_the_run_of_good_rounds() {
        let size = RoundSize::new(100);
        size.shrink();
        size.succeeded();
        size.succeeded();
        size.shrink();
        size.succeeded();
        size.succeeded();
        assert_eq!(size.get(), 25);
    }
}
