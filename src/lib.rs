//! imrs: a drop-in compatible, durable instant-messaging server.
//! `App::build` turns a `Config` into a bound server (config → state → router); `main.rs` and the
//! end-to-end tests both start it this way (tests on port 0).

pub mod blob;
pub mod config;
pub mod delivery;
pub mod error;
pub mod gateway;
pub mod http;
pub mod ratelimit;
pub mod services;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod time;

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use config::Config;
use state::{AppState, Inner, KeyedLocks};
use store::Db;

pub struct App {
    listener: TcpListener,
    state: AppState,
}

impl App {
    /// Connect the store (creating and migrating it), build the state and bind the listener.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let state = build_state_for(config, true).await?;
        let listener = TcpListener::bind(state.config.listen)
            .await
            .with_context(|| format!("binding {}", state.config.listen))?;
        Ok(App { listener, state })
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serve until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let router = http::router(self.state.clone());
        let node = self.state.config.node_id.clone();
        // Report at once, so an operator command that starts now waits for this node.
        let seen = store::admin::latest(&self.state.db).await.unwrap_or(0);
        if let Err(e) = store::admin::node_seen(&self.state.db, &node, seen, time::now_ms()).await {
            tracing::warn!(error = %e, "registering this node failed");
        }
        let background = tokio::spawn(maintenance(self.state.clone(), node.clone(), seen));
        let delivery = self.state.delivery.clone();
        // Websockets end without a Close frame when the server stops (MR §3.8).
        let stop = async move {
            shutdown.await;
            delivery.shutdown();
        };
        axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop)
        .await?;
        background.abort();
        let _ = store::admin::node_gone(&self.state.db, &node).await;
        self.state.db.close().await;
        Ok(())
    }
}

/// How often a node looks for operator events (and so the longest an `imrs admin` command waits).
const ADMIN_POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// A node that has not reported for this long is not waited for.
pub const NODE_ALIVE_MS: i64 = 3_000;

/// Periodic work: apply operator bans made by other processes (`imrs admin ban`) to this node's
/// sockets and caches, and report which events were applied (the command waits for that), forget
/// ended tokens past their retention, sweep old unreferenced screenshots (S10).
async fn maintenance(st: AppState, node: String, mut last: i64) {
    let mut tick = tokio::time::interval(ADMIN_POLL);
    let mut n: u64 = 0;
    let mut reported: Option<(i64, i64)> = None;
    loop {
        tick.tick().await;
        if let Ok(rows) = store::admin::after(&st.db, last).await {
            for (id, user, kind) in rows {
                // Another process changed the store: nothing cached may be trusted.
                if let Some(c) = st.db.cache() {
                    c.invalidate_all();
                }
                if kind == "disable" {
                    // Every node applies the event itself: no need to tell the others.
                    st.delivery.user_disabled_here(user);
                }
                last = id;
            }
        }
        // Report when something was applied, and as a heartbeat every second.
        let now = time::now_ms();
        let due = match reported {
            Some((seen, at)) => seen != last || now - at >= 1_000,
            None => true,
        };
        if due {
            match store::admin::node_seen(&st.db, &node, last, now).await {
                Ok(()) => reported = Some((last, now)),
                Err(e) => tracing::warn!(error = %e, "reporting this node's applied events failed"),
            }
        }
        // One chart sample a minute (the loop ticks every 100 ms).
        if n % 600 == 599 {
            telemetry::sample();
        }
        // Every 6 h, first a minute after start (not while a fresh node is still warming up).
        if n % 216_000 == 600 {
            let _ = store::managers::prune_sessions(&st.db, time::now_ms()).await;
            if let Err(e) = store::tokens::prune(&st.db, st.config.ended_token_days).await {
                tracing::warn!(error = %e, "pruning ended tokens failed");
            }
            match services::media::sweep_screenshots(&st, st.config.media.retention_days).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "old unreferenced screenshots removed"),
                Err(e) => tracing::warn!(error = %e, "sweeping screenshots failed"),
            }
        }
        n += 1;
    }
}

/// After an operator change (event `event`), wait until every running node has applied it, so
/// that its effect is in force everywhere when the command returns. False on timeout.
pub async fn wait_for_nodes(db: &Db, event: i64, timeout: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let alive_since = time::now_ms() - NODE_ALIVE_MS;
        match store::admin::nodes_behind(db, event, alive_since).await {
            Ok(behind) if behind.is_empty() => return true,
            Ok(_) | Err(_) if tokio::time::Instant::now() >= deadline => return false,
            _ => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

/// The state for a command (`imrs admin`, `imrs migrate`): store connected and migrated, secrets
/// resolved; it never touches the files of a server that may be running on the same data.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    build_state_for(config, false).await
}

/// The state of a process; only a serving one (`serving`) cleans up leftovers of earlier runs.
async fn build_state_for(config: Config, serving: bool) -> anyhow::Result<AppState> {
    telemetry::init();
    let db = Db::connect(&config.database_url, &config.data_dir).await?;
    db.migrate().await.context("applying migrations")?;
    let secret = jwt_secret(&config)?;
    // Cluster mode: shared limits and the bus over Redis (a command needs neither).
    let redis = match (&config.redis_url, serving) {
        (Some(url), true) => {
            let client = redis::Client::open(url.expose_secret())
                .context("IMRS_REDIS_URL is not a valid Redis URL")?;
            let conn = client
                .get_connection_manager()
                .await
                .context("connecting to Redis (IMRS_REDIS_URL)")?;
            Some((client, conn))
        }
        _ => None,
    };
    let limiter = match &redis {
        Some((_, conn)) => ratelimit::RateLimiter::redis(conn.clone()),
        None => ratelimit::RateLimiter::local(),
    };
    let delivery = delivery::Delivery::new(db.clone());
    if let Some((client, _)) = redis {
        let bus =
            delivery::cluster::Bus::start(client, config.node_id.clone(), delivery.clone()).await?;
        delivery.attach_cluster(bus);
        tracing::info!(node = %config.node_id, "cluster mode: Redis bus and shared limits");
    }
    Ok(AppState::new(Inner {
        keys: services::tokens::Keys::new(secret.as_bytes()),
        limiter,
        delivery,
        locks: KeyedLocks::default(),
        blobs: blob::BlobStore::from_config(&config, serving)?,
        media: services::media::Media::new(&config, serving)?,
        db,
        config,
    }))
}

/// The configured JWT secret, or one generated once and kept in the data directory.
fn jwt_secret(config: &Config) -> anyhow::Result<String> {
    if let Some(s) = &config.jwt_secret {
        return Ok(s.expose_secret().to_string());
    }
    let path = config.data_dir.join("jwt_secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        if !s.trim().is_empty() {
            return Ok(s.trim().to_string());
        }
    }
    create_private_dir(&config.data_dir)?;
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let secret = hex::encode(bytes);
    let _ = std::fs::remove_file(&path); // an empty leftover
    write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "IMRS_JWT_SECRET is not set: generated a secret in the data directory; production must set one"
    );
    Ok(secret)
}

/// Create `dir` (mode 0700 for what imrs creates itself; an existing directory is left as it is).
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Write a secret to a new file readable by its owner only (0600), never through a wider mode.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
