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
        let state = build_state(config).await?;
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
        let background = tokio::spawn(maintenance(self.state.clone()));
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
        self.state.db.close().await;
        Ok(())
    }
}

/// Periodic work: apply operator bans made by other processes (`imrs admin ban`) to this node's
/// sockets, forget ended tokens past their retention, sweep old unreferenced screenshots (S10).
async fn maintenance(st: AppState) {
    let mut last = store::admin::latest(&st.db).await.unwrap_or(0);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        if let Ok(rows) = store::admin::after(&st.db, last).await {
            for (id, user, kind) in rows {
                // Another process changed the store: nothing cached may be trusted.
                if let Some(c) = st.db.cache() {
                    c.invalidate_all();
                }
                if kind == "disable" {
                    st.delivery.user_disabled(user);
                }
                last = id;
            }
        }
        if n % 60 == 59 {
            telemetry::sample();
        }
        if n.is_multiple_of(21_600) {
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

/// The state of a server: store connected and migrated, secrets resolved.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    telemetry::init();
    let db = Db::connect(&config.database_url, &config.data_dir).await?;
    db.migrate().await.context("applying migrations")?;
    let secret = jwt_secret(&config)?;
    Ok(AppState::new(Inner {
        keys: services::tokens::Keys::new(secret.as_bytes()),
        limiter: ratelimit::RateLimiter::local(),
        delivery: delivery::Delivery::new(db.clone()),
        locks: KeyedLocks::default(),
        blobs: blob::BlobStore::from_config(&config)?,
        media: services::media::Media::new(&config)?,
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
    std::fs::create_dir_all(&config.data_dir)?;
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let secret = hex::encode(bytes);
    std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "IMRS_JWT_SECRET is not set: generated a secret in the data directory; production must set one"
    );
    Ok(secret)
}
