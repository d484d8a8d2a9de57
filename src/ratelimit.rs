//! The `RateLimiter` seam (ARCHITECTURE backends table): fixed-window counters keyed by text.
//! Embedded: an in-process map. A Redis implementation (`INCR` + `EXPIRE`) joins it with cluster mode.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub enum RateLimiter {
    Local(LocalLimiter),
}

impl RateLimiter {
    pub fn local() -> Self {
        RateLimiter::Local(LocalLimiter::default())
    }

    /// The count of the current window (0 when none is running).
    pub async fn count(&self, key: &str) -> u64 {
        match self {
            RateLimiter::Local(l) => l.count(key),
        }
    }

    /// Add one; the window starts at the first counted hit and lasts `window`. Returns the new count.
    pub async fn hit(&self, key: &str, window: Duration) -> u64 {
        match self {
            RateLimiter::Local(l) => l.hit(key, window),
        }
    }

    /// Count a hit unless the window is already at `limit`: true when the hit was allowed.
    /// `limit` 0 means unlimited.
    pub async fn try_hit(&self, key: &str, limit: u64, window: Duration) -> bool {
        if limit == 0 {
            return true;
        }
        match self {
            RateLimiter::Local(l) => l.try_hit(key, limit, window),
        }
    }
}

#[derive(Default)]
pub struct LocalLimiter {
    windows: Mutex<HashMap<String, (u64, Instant)>>,
}

impl LocalLimiter {
    fn count(&self, key: &str) -> u64 {
        let now = Instant::now();
        match self.windows.lock().get(key) {
            Some((n, end)) if *end > now => *n,
            _ => 0,
        }
    }

    fn hit(&self, key: &str, window: Duration) -> u64 {
        let mut map = self.windows.lock();
        let now = Instant::now();
        Self::sweep(&mut map, now);
        let slot = map.entry(key.to_string()).or_insert((0, now + window));
        if slot.1 <= now {
            *slot = (0, now + window);
        }
        slot.0 += 1;
        slot.0
    }

    fn try_hit(&self, key: &str, limit: u64, window: Duration) -> bool {
        let mut map = self.windows.lock();
        let now = Instant::now();
        Self::sweep(&mut map, now);
        let slot = map.entry(key.to_string()).or_insert((0, now + window));
        if slot.1 <= now {
            *slot = (0, now + window);
        }
        if slot.0 >= limit {
            return false;
        }
        slot.0 += 1;
        true
    }

    /// Drop expired windows once the map grows, so memory follows the active keys only.
    fn sweep(map: &mut HashMap<String, (u64, Instant)>, now: Instant) {
        if map.len() > 10_000 {
            map.retain(|_, (_, end)| *end > now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fixed_window_counts_and_refuses_at_the_limit() {
        let l = RateLimiter::local();
        let w = Duration::from_secs(60);
        assert!(l.try_hit("k", 2, w).await);
        assert!(l.try_hit("k", 2, w).await);
        assert!(!l.try_hit("k", 2, w).await);
        assert_eq!(l.count("k").await, 2);
        assert_eq!(l.hit("other", w).await, 1);
        assert!(l.try_hit("k", 0, w).await, "0 means unlimited");
    }
}
