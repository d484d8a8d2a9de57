//! Cluster mode (ARCHITECTURE "Cluster"): the bus between nodes over Redis pub/sub.
//!
//! Every node publishes what it must tell the others — committed entries, token and account
//! events, membership changes, offline-pull requests, proto-2 frames — on one channel, pipelined
//! by a publisher task; every node applies what the others publish to its own sockets. The bus
//! is never trusted for durability: entries live in the shared database, so a node that missed
//! something (Redis restarted or unreachable, a gap in a publisher's sequence numbers) re-syncs
//! its connected users from the store: their tokens and groups are checked again and their
//! pending entries flushed from their cursors.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::Delivery;

const CHANNEL: &str = "imrs:bus";
/// Messages published in one pipeline at most.
const PIPELINE: usize = 512;

/// What one node tells the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Msg {
    /// A committed entry: for these users, or for a group's members.
    Entry {
        frame: String,
        seq: i64,
        conv_seq: i64,
        kind: i64,
        from: i64,
        users: Option<Vec<i64>>,
        group: Option<i64>,
    },
    /// Tokens replaced by a new issuance (retired: `kick` false and `inert`; revoked with a kick).
    TokensEnded {
        user: i64,
        /// (jti, kick)
        ended: Vec<(String, bool)>,
        kick_frame: Option<String>,
    },
    Retired {
        user: i64,
        jti: String,
    },
    Disabled {
        user: i64,
    },
    /// Membership: 0 joined, 1 leaving, 2 stays, 3 left.
    Member {
        group: i64,
        user: i64,
        change: u8,
    },
    /// API 二十二 on another node: flush the user's socket of this token here.
    Replay {
        user: i64,
        jti: String,
    },
    Proto2 {
        user: i64,
        frame: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    /// Origin node.
    n: String,
    /// The origin's sequence number: a gap means something was lost.
    s: u64,
    m: Msg,
}

/// This node's end of the bus.
pub struct Bus {
    node: String,
    seq: AtomicU64,
    tx: mpsc::UnboundedSender<String>,
    connected: AtomicBool,
}

impl Bus {
    /// Connect to Redis (fails when it cannot be reached at start) and start the publisher and
    /// the subscriber; `delivery` receives what other nodes publish.
    pub async fn start(
        client: redis::Client,
        node: String,
        delivery: Delivery,
    ) -> anyhow::Result<Arc<Bus>> {
        let conn = client.get_connection_manager().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let bus = Arc::new(Bus {
            node,
            seq: AtomicU64::new(0),
            tx,
            connected: AtomicBool::new(false),
        });
        tokio::spawn(publisher(conn, rx));
        tokio::spawn(subscriber(client, bus.clone(), delivery));
        Ok(bus)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether this node currently receives the bus (for `/readyz` and metrics).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn publish(&self, m: Msg) {
        let s = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let env = Envelope {
            n: self.node.clone(),
            s,
            m,
        };
        if let Ok(text) = serde_json::to_string(&env) {
            let _ = self.tx.send(text);
        }
    }
}

/// Publishes queued messages in pipelines; what fails is dropped (receivers see the gap).
async fn publisher(
    mut conn: redis::aio::ConnectionManager,
    mut rx: mpsc::UnboundedReceiver<String>,
) {
    let mut batch = Vec::with_capacity(PIPELINE);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < PIPELINE {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let mut pipe = redis::pipe();
        for m in batch.drain(..) {
            pipe.cmd("PUBLISH").arg(CHANNEL).arg(m).ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            tracing::warn!(error = %e, "publishing on the cluster bus failed; other nodes re-sync from the store");
        }
    }
}

/// Receives the bus, reconnecting with backoff; re-syncs this node's users after every
/// (re)subscription and whenever a publisher's sequence has a gap.
async fn subscriber(client: redis::Client, bus: Arc<Bus>, delivery: Delivery) {
    let mut backoff = Duration::from_millis(100);
    let mut last: HashMap<String, u64> = HashMap::new();
    loop {
        let sub = async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(CHANNEL).await?;
            redis::RedisResult::Ok(ps)
        }
        .await;
        let ps = match sub {
            Ok(ps) => ps,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cluster bus unreachable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        bus.connected.store(true, Ordering::Relaxed);
        tracing::info!(node = bus.node(), "cluster bus subscribed");
        // Whatever was published while this node was not listening is in the store.
        last.clear();
        delivery.resync_all();
        let mut stream = ps.into_on_message();
        while let Some(msg) = stream.next().await {
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            let Ok(env) = serde_json::from_str::<Envelope>(&payload) else {
                tracing::warn!("an unreadable cluster bus message was skipped");
                continue;
            };
            if env.n == bus.node {
                continue;
            }
            let gap = match last.insert(env.n.clone(), env.s) {
                Some(prev) => env.s != prev + 1,
                None => false,
            };
            if gap {
                tracing::warn!(from = %env.n, "cluster bus messages were lost: re-syncing from the store");
                delivery.resync_all();
            }
            delivery.apply_remote(env.m);
        }
        bus.connected.store(false, Ordering::Relaxed);
        tracing::warn!(
            node = bus.node(),
            "cluster bus connection lost; reconnecting"
        );
    }
}
