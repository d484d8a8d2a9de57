//! The `RateLimiter` seam (ARCHITECTURE backends table): fixed-window counters keyed by text.
//! Embedded: an in-process map, sharded, each shard swept of expired windows only when it has
//! doubled since its last sweep — so every hit costs O(1) amortised, whatever the number of keys.
//! Cluster: Redis (`INCR` + `PEXPIRE` in one script), so every limit is shared by all nodes; while
//! Redis cannot be reached, each node falls back to its own counters (limits then hold per node).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub enum RateLimiter {
    Local(LocalLimiter),
    Redis(RedisLimiter),
}

pub struct RedisLimiter {
    conn: redis::aio::ConnectionManager,
    /// Used while Redis is unreachable.
    fallback: LocalLimiter,
}

/// INCR with the window set at the first hit; over `limit` the hit is taken back (0 = refused).
const TRY_HIT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if tonumber(ARGV[1]) > 0 and n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
return n";
const RELEASE: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) end
return 0";

fn redis_key(key: &str) -> String {
    format!("imrs:rl:{key}")
}

impl RateLimiter {
    pub fn local() -> Self {
        RateLimiter::Local(LocalLimiter::default())
    }

    pub fn redis(conn: redis::aio::ConnectionManager) -> Self {
        RateLimiter::Redis(RedisLimiter {
            conn,
            fallback: LocalLimiter::default(),
        })
    }

    /// The count of the current window (0 when none is running).
    pub async fn count(&self, key: &str) -> u64 {
        match self {
            RateLimiter::Local(l) => l.count(key),
            RateLimiter::Redis(r) => {
                let mut c = r.conn.clone();
                let got: redis::RedisResult<Option<u64>> = redis::cmd("GET")
                    .arg(redis_key(key))
                    .query_async(&mut c)
                    .await;
                got.unwrap_or_else(|_| Some(r.fallback.count(key)))
                    .unwrap_or(0)
            }
        }
    }

    /// Add one; the window starts at the first counted hit and lasts `window`. Returns the new count.
    pub async fn hit(&self, key: &str, window: Duration) -> u64 {
        match self {
            RateLimiter::Local(l) => l.hit(key, window),
            RateLimiter::Redis(r) => match r.script(TRY_HIT, key, 0, window).await {
                Some(n) => n,
                None => r.fallback.hit(key, window),
            },
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
            RateLimiter::Redis(r) => match r.script(TRY_HIT, key, limit, window).await {
                Some(n) => n > 0,
                None => r.fallback.try_hit(key, limit, window),
            },
        }
    }

    /// Give back one hit of the current window (a reserved attempt that turned out not to count).
    pub async fn release(&self, key: &str) {
        match self {
            RateLimiter::Local(l) => l.release(key),
            RateLimiter::Redis(r) => {
                if r.script(RELEASE, key, 0, Duration::ZERO).await.is_none() {
                    r.fallback.release(key);
                }
            }
        }
    }
}

impl RedisLimiter {
    /// Run a limiter script; `None` when Redis could not answer (the caller falls back).
    async fn script(&self, src: &str, key: &str, limit: u64, window: Duration) -> Option<u64> {
        let mut c = self.conn.clone();
        let r: redis::RedisResult<u64> = redis::Script::new(src)
            .key(redis_key(key))
            .arg(limit)
            .arg(window.as_millis().max(1) as u64)
            .invoke_async(&mut c)
            .await;
        match r {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "redis rate limiter unreachable: counting on this node");
                None
            }
        }
    }
}

const SHARDS: usize = 64;
/// A shard below this size is never swept (the scan would cost more than the memory it frees).
const SWEEP_FLOOR: usize = 256;

#[derive(Default)]
struct Shard {
    windows: HashMap<String, (u64, Instant)>,
    /// Size after the last sweep: the next one runs when the shard has doubled.
    swept_len: usize,
}

pub struct LocalLimiter {
    shards: Vec<Mutex<Shard>>,
    /// Entries examined by sweeps, in all (the amortised-cost check of the unit tests).
    scanned: AtomicU64,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        LocalLimiter {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            scanned: AtomicU64::new(0),
        }
    }
}

impl LocalLimiter {
    fn shard(&self, key: &str) -> &Mutex<Shard> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    fn count(&self, key: &str) -> u64 {
        let now = Instant::now();
        match self.shard(key).lock().windows.get(key) {
            Some((n, end)) if *end > now => *n,
            _ => 0,
        }
    }

    /// The live window of `key`, started now if none runs.
    fn with_window<R>(
        &self,
        key: &str,
        window: Duration,
        f: impl FnOnce(&mut (u64, Instant)) -> R,
    ) -> R {
        let mut shard = self.shard(key).lock();
        let now = Instant::now();
        self.maybe_sweep(&mut shard, now);
        let slot = match shard.windows.get_mut(key) {
            Some(s) => s,
            None => shard
                .windows
                .entry(key.to_string())
                .or_insert((0, now + window)),
        };
        if slot.1 <= now {
            *slot = (0, now + window);
        }
        f(slot)
    }

    fn hit(&self, key: &str, window: Duration) -> u64 {
        self.with_window(key, window, |slot| {
            slot.0 += 1;
            slot.0
        })
    }

    fn try_hit(&self, key: &str, limit: u64, window: Duration) -> bool {
        self.with_window(key, window, |slot| {
            if slot.0 >= limit {
                return false;
            }
            slot.0 += 1;
            true
        })
    }

    fn release(&self, key: &str) {
        let now = Instant::now();
        if let Some(slot) = self.shard(key).lock().windows.get_mut(key) {
            if slot.1 > now {
                slot.0 = slot.0.saturating_sub(1);
            }
        }
    }

    /// Drop expired windows once a shard has doubled since its last sweep: each sweep scans at
    /// most twice the entries inserted since the previous one, so memory follows the active keys
    /// and every hit costs O(1) amortised.
    fn maybe_sweep(&self, shard: &mut Shard, now: Instant) {
        let len = shard.windows.len();
        if len < SWEEP_FLOOR || len < shard.swept_len.saturating_mul(2) {
            return;
        }
        self.scanned.fetch_add(len as u64, Ordering::Relaxed);
        shard.windows.retain(|_, (_, end)| *end > now);
        shard.swept_len = shard.windows.len().max(SWEEP_FLOOR / 2);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().windows.len()).sum()
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
        l.release("k").await;
        assert_eq!(l.count("k").await, 1);
        assert!(l.try_hit("k", 2, w).await);
        assert_eq!(l.hit("other", w).await, 1);
        assert!(l.try_hit("k", 0, w).await, "0 means unlimited");
    }

    /// 100,000 live keys: the sweeps together examine O(hits) entries, not O(hits × keys) as a
    /// scan per hit did (that was 10⁵ × 10⁵ = 10¹⁰).
    #[test]
    fn a_hit_costs_o1_amortised_with_100k_live_keys() {
        let l = LocalLimiter::default();
        let w = Duration::from_secs(3600);
        let keys = 100_000u64;
        for i in 0..keys {
            l.hit(&format!("k{i}"), w);
        }
        // A second round over the same keys, then 100,000 more distinct ones.
        for i in 0..keys {
            assert_eq!(l.hit(&format!("k{i}"), w), 2);
        }
        for i in keys..2 * keys {
            assert!(l.try_hit(&format!("k{i}"), 5, w));
        }
        let hits = 3 * keys;
        let scanned = l.scanned.load(Ordering::Relaxed);
        assert!(
            scanned <= 4 * hits,
            "sweeps scanned {scanned} entries for {hits} hits: not amortised O(1)"
        );
        assert_eq!(l.len(), 2 * keys as usize, "no live window is lost");
    }

    #[test]
    fn expired_windows_are_swept_so_memory_follows_the_live_keys() {
        let l = LocalLimiter::default();
        for i in 0..50_000 {
            l.hit(&format!("old{i}"), Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(5));
        for i in 0..50_000 {
            l.hit(&format!("new{i}"), Duration::from_secs(60));
        }
        assert!(
            l.len() < 80_000,
            "expired windows were kept: {} entries",
            l.len()
        );
        assert_eq!(l.count("new1"), 1);
        assert_eq!(l.count("old1"), 0);
    }
}
