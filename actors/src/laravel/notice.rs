//! Rate-limited operator notices: during an outage every batch is held, and
//! a line per batch would bury the log. [`Notice`] lets one line through per
//! interval and counts the ones it swallowed, so the next line can say
//! "and N more". Pure (takes `now`), used by `LaravelClient`.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Notice {
    every: Duration,
    /// When the last line went out.
    last: Option<Instant>,
    /// Events since then that were not logged.
    suppressed: u64,
}

impl Notice {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// An event happened. `Some(n)`: log it now, mentioning `n` earlier
    /// events that were swallowed; `None`: stay quiet.
    pub fn event(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_the_rest() {
        let mut n = Notice::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(n.event(t0), Some(0));
        for i in 1..=99 {
            assert_eq!(n.event(t0 + Duration::from_millis(i * 100)), None);
        }
        assert_eq!(n.event(t0 + Duration::from_secs(30)), Some(99));
        assert_eq!(n.event(t0 + Duration::from_secs(31)), None);
        assert_eq!(n.event(t0 + Duration::from_secs(61)), Some(1));
    }
}
