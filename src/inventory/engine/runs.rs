//! Where best-available looks: each row's longest run of free seats, in a max-tree over the rows,
//! so that finding the first row that can seat a party costs O(log rows) however full the hall
//! is, instead of a scan over the sold seats in front of it. Hand-written: a tree of one `u32`
//! per row, with a "first index at or after `from` with a value of at least `x`" query that
//! general-purpose segment-tree crates do not offer.

#[derive(Clone, Debug)]
pub struct RunIndex {
    /// Leaves at `[size, size + rows)`; node `i` holds the max of `2i` and `2i + 1`.
    tree: Vec<u32>,
    size: usize,
}

impl RunIndex {
    /// Every row wholly free: its run is its length.
    pub fn new(rows: impl ExactSizeIterator<Item = u32>) -> Self {
        let size = rows.len().next_power_of_two().max(1);
        let mut tree = vec![0u32; 2 * size];
        for (i, n) in rows.enumerate() {
            tree[size + i] = n;
        }
        for i in (1..size).rev() {
            tree[i] = tree[2 * i].max(tree[2 * i + 1]);
        }
        Self { tree, size }
    }

    pub fn set(&mut self, row: usize, run: u32) {
        let mut i = self.size + row;
        if self.tree[i] == run {
            return;
        }
        self.tree[i] = run;
        while i > 1 {
            i /= 2;
            let m = self.tree[2 * i].max(self.tree[2 * i + 1]);
            if self.tree[i] == m {
                break;
            }
            self.tree[i] = m;
        }
    }

    /// The first row at or after `from` whose longest free run is at least `x` (`x` ≥ 1).
    pub fn first_at_least(&self, from: usize, x: u32) -> Option<usize> {
        if from >= self.size {
            return None;
        }
        let mut i = self.size + from;
        // Climb: every node looked at covers only rows at or after `from`.
        while self.tree[i] < x {
            while i % 2 == 1 {
                i /= 2;
                if i == 0 {
                    return None;
                }
            }
            i += 1;
        }
        while i < self.size {
            i = if self.tree[2 * i] >= x {
                2 * i
            } else {
                2 * i + 1
            };
        }
        Some(i - self.size)
    }

    pub fn heap_bytes(&self) -> usize {
        self.tree.capacity() * std::mem::size_of::<u32>()
    }
}

/// The longest run of `true` in `free`.
pub fn longest_run(free: impl Iterator<Item = bool>) -> u32 {
    let (mut best, mut cur) = (0u32, 0u32);
    for f in free {
        cur = if f { cur + 1 } else { 0 };
        best = best.max(cur);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_row_with_a_long_enough_run_at_or_after_a_start() {
        let mut t = RunIndex::new([10u32, 10, 10, 10, 10].into_iter());
        assert_eq!(t.first_at_least(0, 10), Some(0));
        assert_eq!(t.first_at_least(0, 11), None);
        for r in 0..4 {
            t.set(r, 0);
        }
        t.set(2, 3);
        assert_eq!(t.first_at_least(0, 1), Some(2));
        assert_eq!(t.first_at_least(0, 4), Some(4));
        assert_eq!(t.first_at_least(3, 1), Some(4));
        assert_eq!(t.first_at_least(5, 1), None);
        t.set(4, 0);
        assert_eq!(t.first_at_least(0, 4), None);
        assert_eq!(t.first_at_least(0, 3), Some(2));
        // A brute-force check over every start and length.
        let runs = [0u32, 7, 2, 0, 5, 1, 0, 9, 3];
        let mut t = RunIndex::new(runs.iter().copied());
        t.set(0, 4);
        let mut runs = runs;
        runs[0] = 4;
        for from in 0..runs.len() + 2 {
            for x in 1..11 {
                let want = (from..runs.len()).find(|&r| runs[r] >= x);
                assert_eq!(t.first_at_least(from, x), want, "from {from} x {x}");
            }
        }
        assert_eq!(
            longest_run([true, true, false, true, true, true].into_iter()),
            3
        );
    }
}
