//! `AppState`: what every service call shares — configuration, the store, token keys, the rate
//! limiter and the delivery layer. Cheap to clone.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::blob::BlobStore;
use crate::config::Config;
use crate::delivery::Delivery;
use crate::ratelimit::RateLimiter;
use crate::services::tokens::Keys;
use crate::store::Db;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub db: Db,
    pub keys: Keys,
    pub limiter: RateLimiter,
    pub delivery: Delivery,
    /// Serialises work per key (e.g. visitor calls per device, AF API 十三).
    pub locks: KeyedLocks,
    /// Uploaded files (local directory or S3-compatible bucket).
    pub blobs: BlobStore,
    /// Video decoder jobs and the poster cache.
    pub media: crate::services::media::Media,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }
}

/// Named async mutexes, created on demand and dropped when nobody holds them.
#[derive(Default)]
pub struct KeyedLocks {
    map: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = self.map.lock();
            if map.len() > 1024 {
                map.retain(|_, w| w.strong_count() > 0);
            }
            match map.get(key).and_then(Weak::upgrade) {
                Some(m) => m,
                None => {
                    let m = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(key.to_string(), Arc::downgrade(&m));
                    m
                }
            }
        };
        m.lock_owned().await
    }
}
