//! `imrs admin …`: operator commands. User commands go through the running server's admin API
//! when it answers (so that bans, deletions and renames reach live sockets and caches at once),
//! and straight to the store otherwise; both paths call the same service functions. The CLI
//! authenticates to its server with a one-minute session it writes into the store itself: whoever
//! can run it with this configuration can reach the store anyway.

use std::io::{BufRead, IsTerminal};

use anyhow::Context;
use clap::Subcommand;
use imrs::services::{admin, managers};
use imrs::state::AppState;
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum Admin {
    /// Disable a user: revokes their tokens and closes their sockets
    Ban { user_id: i64 },
    /// Enable a disabled user again
    Unban { user_id: i64 },
    /// List users (id, username, role, status)
    List,
    /// Create a chat user (password from a prompt or standard input)
    Create {
        username: String,
        #[arg(long)]
        avatar: Option<String>,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's username
    Rename { user_id: i64, username: String },
    /// Set a user's password (from a prompt or standard input)
    Passwd {
        user_id: i64,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user (AF §8: marked deleted, sockets closed, owned groups dissolved)
    Delete { user_id: i64 },
    /// Manager accounts of the back office
    #[command(subcommand)]
    Manager(ManagerCmd),
}

#[derive(Subcommand)]
pub enum ManagerCmd {
    /// Add a manager (password from a prompt or standard input)
    Add {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List managers
    List,
    /// Remove a manager and end their sessions
    Remove { name: String },
    /// Change a manager's password
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let pw = if from_stdin || !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let a = rpassword::prompt_password("password: ")?;
        let b = rpassword::prompt_password("again: ")?;
        anyhow::ensure!(a == b, "the passwords differ");
        a
    };
    anyhow::ensure!(!pw.is_empty(), "empty password");
    Ok(pw)
}

/// The running server's admin API, if it answers.
struct Remote {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Remote {
    async fn connect(st: &AppState) -> Option<Remote> {
        let prefix = st.config.ops.admin_prefix.clone()?;
        let mut addr = st.config.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let base = format!("http://{addr}{}/api", prefix.trim_end_matches('/'));
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .ok()?;
        // Is anything listening there at all?
        http.get(format!("http://{addr}/healthz"))
            .send()
            .await
            .ok()?;
        let (token, _) = managers::open_session(&st.db, managers::CLI_MANAGER, 60)
            .await
            .ok()?;
        let remote = Remote { base, token, http };
        // A different server (another store) on that address does not know our session.
        match remote.call("GET", "/users?limit=1", json!({})).await {
            Ok(_) => Some(remote),
            Err(_) => {
                let _ =
                    imrs::store::managers::delete_session(&st.db, &managers::digest(&remote.token))
                        .await;
                None
            }
        }
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let req = if method == "GET" {
            self.http.get(url)
        } else {
            self.http.post(url).json(&body)
        };
        let res = req.bearer_auth(&self.token).send().await?;
        let v: Value = res.json().await.context("reading the server's answer")?;
        if v["msg"] == "ok" {
            Ok(v["data"].clone())
        } else {
            anyhow::bail!("{}", v["data"].as_str().unwrap_or("failed"))
        }
    }

    async fn close(self) {
        let _ = self.call("POST", "/logout", json!({})).await;
    }
}

fn err(e: imrs::error::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub async fn run(st: &AppState, cmd: Admin) -> anyhow::Result<()> {
    if let Admin::Manager(m) = cmd {
        return manager(st, m).await;
    }
    let remote = Remote::connect(st).await;
    if remote.is_some() {
        eprintln!("(through the running server)");
    }
    let r = user_cmd(st, remote.as_ref(), cmd).await;
    if let Some(r) = remote {
        r.close().await;
    }
    r
}

async fn user_cmd(st: &AppState, remote: Option<&Remote>, cmd: Admin) -> anyhow::Result<()> {
    match cmd {
        Admin::Ban { user_id } | Admin::Unban { user_id } => {
            let enable = matches!(cmd, Admin::Unban { .. });
            match remote {
                Some(r) => {
                    let action = if enable { "enable" } else { "disable" };
                    r.call("POST", &format!("/users/{user_id}/{action}"), json!({}))
                        .await
                        .map_err(|e| anyhow::anyhow!("user {user_id}: {e}"))?;
                }
                None => admin::set_enabled(st, user_id, enable)
                    .await
                    .map_err(|_| anyhow::anyhow!("no user with id {user_id}"))?,
            }
            println!(
                "user {user_id} {}",
                if enable { "enabled" } else { "disabled" }
            );
        }
        Admin::List => {
            println!("{:>8}  {:<20} {:<8} status", "id", "username", "role");
            match remote {
                Some(r) => {
                    let mut page = 1;
                    loop {
                        let v = r
                            .call("GET", &format!("/users?limit=100&page={page}"), json!({}))
                            .await?;
                        let list = v["list"].as_array().cloned().unwrap_or_default();
                        for u in &list {
                            println!(
                                "{:>8}  {:<20} {:<8} {}",
                                u["id"],
                                u["username"].as_str().unwrap_or(""),
                                u["role"].as_str().unwrap_or(""),
                                u["status"]
                            );
                        }
                        if list.len() < 100 {
                            break;
                        }
                        page += 1;
                    }
                }
                None => {
                    for u in imrs::store::users::all(&st.db)
                        .await
                        .context("listing users")?
                        .into_iter()
                        .filter(|u| u.is_deleted == 0)
                    {
                        println!("{:>8}  {:<20} {:<8} {}", u.id, u.username, u.role, u.status);
                    }
                }
            }
        }
        Admin::Create {
            username,
            avatar,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            let id = match remote {
                Some(r) => r
                    .call(
                        "POST",
                        "/users",
                        json!({"username": username, "password": password, "avatar": avatar}),
                    )
                    .await?["id"]
                    .as_i64()
                    .unwrap_or_default(),
                None => admin::create_user(st, &username, &password, avatar.as_deref())
                    .await
                    .map_err(err)?,
            };
            println!("创建成功: user {id}");
        }
        Admin::Rename { user_id, username } => {
            match remote {
                Some(r) => {
                    r.call(
                        "POST",
                        &format!("/users/{user_id}/edit"),
                        json!({"username": username}),
                    )
                    .await?;
                }
                None => {
                    let e = admin::UserEdit {
                        username: Some(username),
                        ..Default::default()
                    };
                    admin::edit_user(st, user_id, e).await.map_err(err)?
                }
            }
            println!("修改成功");
        }
        Admin::Passwd {
            user_id,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            match remote {
                Some(r) => {
                    r.call(
                        "POST",
                        &format!("/users/{user_id}/password"),
                        json!({"password": password}),
                    )
                    .await?;
                }
                None => admin::reset_password(st, user_id, &password)
                    .await
                    .map_err(err)?,
            }
            println!("修改成功");
        }
        Admin::Delete { user_id } => {
            match remote {
                Some(r) => {
                    r.call("POST", &format!("/users/{user_id}/delete"), json!({}))
                        .await?;
                }
                None => admin::delete_user(st, user_id).await.map_err(err)?,
            }
            println!("删除成功");
        }
        Admin::Manager(_) => unreachable!("handled by run"),
    }
    Ok(())
}

async fn manager(st: &AppState, cmd: ManagerCmd) -> anyhow::Result<()> {
    let kib = st.config.argon2_memory_kib;
    match cmd {
        ManagerCmd::Add {
            name,
            password_stdin,
        } => {
            let pw = read_password(password_stdin)?;
            managers::add(&st.db, kib, &name, &pw).await.map_err(err)?;
            println!("manager {name} added");
        }
        ManagerCmd::List => {
            println!("{:>6}  {:<20} {:<20} last login", "id", "name", "created");
            for m in managers::list(&st.db).await.map_err(err)? {
                let last = m.last_login.map(|t| t.to_string()).unwrap_or_default();
                println!(
                    "{:>6}  {:<20} {:<20} {last}",
                    m.id,
                    m.name,
                    m.create_time.to_string()
                );
            }
        }
        ManagerCmd::Remove { name } => {
            managers::remove(&st.db, &name).await.map_err(err)?;
            println!("manager {name} removed");
        }
        ManagerCmd::Passwd {
            name,
            password_stdin,
        } => {
            let pw = read_password(password_stdin)?;
            managers::set_password(&st.db, kib, &name, &pw)
                .await
                .map_err(err)?;
            println!("password of {name} changed");
        }
    }
    Ok(())
}
