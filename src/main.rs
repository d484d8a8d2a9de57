//! The `imrs` command: `serve` (default), `migrate`, `admin …`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use imrs::config::{Config, Settings};

mod admin_cli;
use anyhow::Context;
use imrs::services::legacy_import;
use imrs::store::legacy::{self, Outcome, UpgradeOptions};
use imrs::store::Db;

#[derive(Parser)]
#[command(
    name = "imrs",
    version,
    about = "imrs: a drop-in compatible, durable instant-messaging server"
)]
struct Cli {
    /// Optional TOML file with the same settings (environment and flags win over it)
    #[arg(long, env = "IMRS_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default)
    Serve,
    /// Create or upgrade the database schema (also an original's database, in place), then exit
    Migrate {
        /// Print the plan (each statement, the rows it merges) and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Import the original's Redis offline queues into the timelines (after `imrs migrate`)
    ImportRedis {
        /// The original's Redis, e.g. redis://127.0.0.1:6379/0 (only read, never changed)
        #[arg(long)]
        redis_url: String,
        /// Read and count, write nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Operator actions
    #[command(subcommand)]
    Admin(admin_cli::Admin),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMRS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    // One JSON object per line (request logs carry id, route, status and latency) when asked.
    if std::env::var("IMRS_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().init();
    } else {
        logs.init();
    }
    let cli = Cli::parse();
    let config = Config::load(cli.settings, cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate { dry_run } => migrate(config, dry_run).await,
        Command::ImportRedis { redis_url, dry_run } => {
            let db = Db::connect(&config.database_url, &config.data_dir).await?;
            let report = legacy_import::import_redis(&db, &redis_url, dry_run).await?;
            println!("{report}");
            db.close().await;
            Ok(())
        }
        Command::Admin(a) => admin(config, a).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Every websocket is a descriptor: use the whole hard limit.
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
    let backend = if config.is_sqlite() {
        "sqlite (embedded)"
    } else {
        "mysql"
    };
    let node = config.node_id.clone();
    let app = imrs::App::build(config).await?;
    tracing::info!(addr = %app.local_addr(), backend, node = %node, "imrs listening");
    app.run(shutdown_signal()).await
}

/// `imrs migrate`: an original's database is upgraded in place first (issue 16), then imrs's
/// migrations run as usual.
async fn migrate(config: Config, dry_run: bool) -> anyhow::Result<()> {
    let db = Db::connect(&config.database_url, &config.data_dir).await?;
    // A test hook: stop after step N as if killed (the upgrade resumes on the next run).
    let exit_after_step = match std::env::var("IMRS_MIGRATE_EXIT_AFTER_STEP") {
        Ok(v) if !v.is_empty() => Some(
            v.parse()
                .context("IMRS_MIGRATE_EXIT_AFTER_STEP must be a step number")?,
        ),
        _ => None,
    };
    let opts = UpgradeOptions {
        legacy_offset_secs: config.legacy_tz.local_minus_utc(),
        dry_run,
        exit_after_step,
    };
    let started = std::time::Instant::now();
    match legacy::upgrade(&db, &opts).await? {
        Outcome::Planned => return Ok(()),
        Outcome::Stopped(n) => {
            eprintln!("stopped after step {n} (IMRS_MIGRATE_EXIT_AFTER_STEP): run `imrs migrate` again to resume");
            std::process::exit(3);
        }
        Outcome::Done { ran } => println!(
            "the original's database now has imrs's schema ({ran} steps ran, {:.1} s)",
            started.elapsed().as_secs_f64()
        ),
        Outcome::NotLegacy if dry_run => {
            println!(
                "not an original's database: `imrs migrate` applies imrs's own migrations only"
            );
            return Ok(());
        }
        Outcome::NotLegacy => {}
    }
    db.close().await;
    imrs::build_state(config).await?;
    println!("migrations applied");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

async fn admin(config: Config, cmd: admin_cli::Admin) -> anyhow::Result<()> {
    let st = imrs::build_state(config).await?;
    let r = admin_cli::run(&st, cmd).await;
    st.db.close().await;
    r
}
