//! The `imrs` command: `serve` (default), `migrate`, `admin …`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use imrs::config::{Config, Settings};

mod admin_cli;

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
    /// Create or upgrade the database schema, then exit
    Migrate,
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
        Command::Migrate => {
            imrs::build_state(config).await?;
            println!("migrations applied");
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
