//! The `imrs` command: `serve` (default), `migrate`, `admin …`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use imrs::config::{Config, Settings};
use imrs::services::accounts;

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
    Admin(Admin),
}

#[derive(Subcommand)]
enum Admin {
    /// Disable a user: revokes their tokens and closes their sockets
    Ban { user_id: i64 },
    /// Enable a disabled user again
    Unban { user_id: i64 },
    /// List users (id, username, role, status)
    List,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IMRS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
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

async fn admin(config: Config, cmd: Admin) -> anyhow::Result<()> {
    let st = imrs::build_state(config).await?;
    match cmd {
        Admin::Ban { user_id } | Admin::Unban { user_id } => {
            let enable = matches!(cmd, Admin::Unban { .. });
            let event = accounts::set_enabled(&st, user_id, enable)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let Some(event) = event else {
                anyhow::bail!("no user with id {user_id}");
            };
            // Return only once every running server has applied it: its effect is immediate.
            if !imrs::wait_for_nodes(&st.db, event, std::time::Duration::from_secs(10)).await {
                eprintln!("warning: a running server has not applied the change within 10 s");
            }
            println!(
                "user {user_id} {}",
                if enable { "enabled" } else { "disabled" }
            );
        }
        Admin::List => {
            let users = imrs::store::users::all(&st.db)
                .await
                .context("listing users")?;
            println!("{:>8}  {:<20} {:<8} status", "id", "username", "role");
            for u in users {
                println!("{:>8}  {:<20} {:<8} {}", u.id, u.username, u.role, u.status);
            }
        }
    }
    st.db.close().await;
    Ok(())
}
