//! Pure buffers behind the batchers: [`Coalescing`] keeps one pending item
//! per key (latest wins, first position and first arrival kept, so nothing
//! waits longer than one flush interval) and [`Fifo`] keeps every item in
//! order. Both hand out batches that skip keys the caller must hold back
//! (sessions with an update in flight). No clocks inside: callers pass `now`.

use std::collections::VecDeque;
use std::hash::Hash;
use std::time::Instant;

use indexmap::IndexMap;

/// One pending value and when its key first became pending.
#[derive(Debug, Clone)]
struct Pending<V> {
    value: V,
    since: Instant,
}

/// Latest-wins buffer keyed by session.
#[derive(Debug, Clone)]
pub struct Coalescing<K, V> {
    items: IndexMap<K, Pending<V>>,
}

impl<K: Hash + Eq + Clone, V> Default for Coalescing<K, V> {
    fn default() -> Self {
        Self {
            items: IndexMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone, V> Coalescing<K, V> {
    /// Adds or replaces; returns true when it replaced (coalesced) an item.
    pub fn push(&mut self, key: K, value: V, now: Instant) -> bool {
        match self.items.get_mut(&key) {
            Some(p) => {
                p.value = value;
                true
            }
            None => {
                self.items.insert(key, Pending { value, since: now });
                false
            }
        }
    }

    /// The value pending for `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.items.get(key).map(|p| &p.value)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.items.shift_remove(key).map(|p| p.value)
    }

    pub fn contains(&self, key: &K) -> bool {
        self.items.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Arrival time of the longest-waiting item.
    pub fn oldest(&self) -> Option<Instant> {
        self.items.values().map(|p| p.since).min()
    }

    /// Removes up to `max` items in arrival order, leaving those whose key
    /// `hold` says must wait.
    pub fn take(&mut self, max: usize, hold: impl Fn(&K) -> bool) -> Vec<(K, V)> {
        let keys: Vec<K> = self
            .items
            .keys()
            .filter(|k| !hold(k))
            .take(max)
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| self.items.shift_remove(&k).map(|p| (k, p.value)))
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.items.iter().map(|(k, p)| (k, &p.value))
    }
}

/// Order-keeping buffer: every item is delivered, in arrival order per key.
#[derive(Debug, Clone)]
pub struct Fifo<K, V> {
    items: VecDeque<(K, V, Instant)>,
}

impl<K, V> Default for Fifo<K, V> {
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
        }
    }
}

impl<K: Hash + Eq + Clone, V> Fifo<K, V> {
    pub fn push(&mut self, key: K, value: V, now: Instant) {
        self.items.push_back((key, value, now));
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn oldest(&self) -> Option<Instant> {
        self.items.front().map(|(_, _, t)| *t)
    }

    /// Removes up to `max` items in order. Once a key is held, all its later
    /// items stay too, so per-key order survives.
    pub fn take(&mut self, max: usize, hold: impl Fn(&K) -> bool) -> Vec<(K, V)> {
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.items.len());
        let mut held: Vec<K> = Vec::new();
        while let Some((k, v, t)) = self.items.pop_front() {
            if taken.len() < max && !held.contains(&k) && !hold(&k) {
                taken.push((k, v));
            } else {
                if !held.contains(&k) {
                    held.push(k.clone());
                }
                kept.push_back((k, v, t));
            }
        }
        self.items = kept;
        taken
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.items.iter().map(|(k, v, _)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn coalescing_keeps_latest_value_at_first_position_and_time() {
        let t0 = Instant::now();
        let mut b = Coalescing::default();
        assert!(!b.push("a", 1, t0));
        b.push("b", 2, t0 + Duration::from_millis(5));
        assert!(b.push("a", 3, t0 + Duration::from_millis(9)));
        assert_eq!(b.len(), 2);
        assert_eq!(b.oldest(), Some(t0), "replacing keeps the first arrival");
        assert_eq!(b.take(10, |_| false), vec![("a", 3), ("b", 2)]);
        assert!(b.is_empty());
    }

    #[test]
    fn coalescing_take_respects_max_and_holds() {
        let t0 = Instant::now();
        let mut b = Coalescing::default();
        for (i, k) in ["a", "b", "c", "d"].into_iter().enumerate() {
            b.push(k, i, t0);
        }
        assert_eq!(b.take(2, |k| *k == "a"), vec![("b", 1), ("c", 2)]);
        assert_eq!(b.take(5, |_| false), vec![("a", 0), ("d", 3)]);
    }

    #[test]
    fn fifo_keeps_every_item_and_per_key_order_when_held() {
        let t0 = Instant::now();
        let mut f = Fifo::default();
        f.push("a", 1, t0);
        f.push("b", 2, t0);
        f.push("a", 3, t0);
        f.push("c", 4, t0);
        // "a" is held: neither of its items may go, and later ones stay behind.
        assert_eq!(f.take(10, |k| *k == "a"), vec![("b", 2), ("c", 4)]);
        assert_eq!(f.take(1, |_| false), vec![("a", 1)]);
        assert_eq!(f.take(10, |_| false), vec![("a", 3)]);
    }

    #[test]
    fn fifo_max_cut_holds_back_later_items_of_the_same_key() {
        let t0 = Instant::now();
        let mut f = Fifo::default();
        f.push("a", 1, t0);
        f.push("b", 2, t0);
        f.push("a", 3, t0);
        assert_eq!(f.take(1, |_| false), vec![("a", 1)]);
        assert_eq!(f.len(), 2);
        assert_eq!(f.oldest(), Some(t0));
    }
}

#[cfg(test)]
#[path = "buffer_props.rs"]
mod props;
