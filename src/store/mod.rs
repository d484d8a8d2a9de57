//! The only place that writes SQL. One `Db` over two real backends (SQLite embedded, MySQL/MariaDB
//! shared); most statements are shared text (`?` placeholders, backtick quoting work on both), the few
//! dialect differences go through the small helpers here. Legacy table/column names are kept (AF §5).

pub mod admin;
pub mod cache;
pub mod friends;
pub mod groups;
pub mod legacy;
pub mod managers;
pub mod timeline;
pub mod tokens;
pub mod users;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDateTime;
use sqlx::mysql::MySqlRow;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::sqlite::SqliteRow;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::FromRow;

#[derive(Clone)]
pub enum Db {
    /// Reads go to `r`; every write transaction goes through the single connection of `w`, so
    /// SQLite never sees two writers (no SQLITE_BUSY upgrades) and commit order is well defined.
    Sqlite {
        r: SqlitePool,
        w: SqlitePool,
        /// Hot rows kept in memory: the embedded node is the only process writing this file.
        cache: Arc<cache::Cache>,
    },
    MySql(MySqlPool),
}

/// A write transaction on either backend.
pub enum Tx {
    Sqlite(
        sqlx::Transaction<'static, sqlx::Sqlite>,
        Arc<cache::Cache>,
        u8,
    ),
    MySql(sqlx::Transaction<'static, sqlx::MySql>),
}

/// A bound parameter; statements are written once and bound the same way on both backends.
#[derive(Clone, Debug)]
pub enum Arg {
    Int(i64),
    Str(Option<String>),
    Time(Option<NaiveDateTime>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Str(Some(v.to_string()))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Str(Some(v.clone()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Str(Some(v))
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::Str(v.map(String::from))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::Str(v)
    }
}
impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Self {
        Arg::Str(v.clone())
    }
}
impl From<NaiveDateTime> for Arg {
    fn from(v: NaiveDateTime) -> Self {
        Arg::Time(Some(v))
    }
}
impl From<Option<NaiveDateTime>> for Arg {
    fn from(v: Option<NaiveDateTime>) -> Self {
        Arg::Time(v)
    }
}

/// `args![a, b, …]`: the bound parameters of one statement.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => { vec![$($crate::store::Arg::from($a)),*] };
}

/// What a write statement did.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    pub rows: u64,
    /// Id of the row a single-row INSERT created.
    pub id: i64,
}

/// A row type readable from both backends.
pub trait Row:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, MySqlRow> + Send + Unpin
{
}
impl<T> Row for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, MySqlRow> + Send + Unpin
{
}

macro_rules! bind_each {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::Int(v) => q.bind(*v),
                Arg::Str(v) => q.bind(v.clone()),
                Arg::Time(v) => q.bind(*v),
            };
        }
        q
    }};
}

impl Db {
    /// All rows of a read.
    pub async fn all<T: Row>(&self, sql: &str, args: Vec<Arg>) -> sqlx::Result<Vec<T>> {
        match self {
            Db::Sqlite { r, .. } => {
                bind_each!(sqlx::query_as::<_, T>(sql), &args)
                    .fetch_all(r)
                    .await
            }
            Db::MySql(p) => {
                bind_each!(sqlx::query_as::<_, T>(sql), &args)
                    .fetch_all(p)
                    .await
            }
        }
    }

    /// At most one row of a read.
    pub async fn opt<T: Row>(&self, sql: &str, args: Vec<Arg>) -> sqlx::Result<Option<T>> {
        match self {
            Db::Sqlite { r, .. } => {
                bind_each!(sqlx::query_as::<_, T>(sql), &args)
                    .fetch_optional(r)
                    .await
            }
            Db::MySql(p) => {
                bind_each!(sqlx::query_as::<_, T>(sql), &args)
                    .fetch_optional(p)
                    .await
            }
        }
    }

    /// One write statement in its own transaction.
    pub async fn exec(&self, sql: &str, args: Vec<Arg>) -> sqlx::Result<Done> {
        let mut tx = self.begin().await?;
        let done = tx.exec(sql, args).await?;
        tx.commit().await?;
        Ok(done)
    }
}

impl Tx {
    pub async fn all<T: Row>(&mut self, sql: &str, args: Vec<Arg>) -> sqlx::Result<Vec<T>> {
        match self {
            Tx::Sqlite(t, ..) => {
                bind_each!(sqlx::query_as::<_, T>(sql), &args)
                    .fetch_all(&mut **t)
                    .await
            }
            Tx::MySql(t) => {
                bind_each!(sqlx::query_as::<_, T>(sql), &args)
                    .fetch_all(&mut **t)
                    .await
            }
        }
    }

    pub async fn opt<T: Row>(&mut self, sql: &str, args: Vec<Arg>) -> sqlx::Result<Option<T>> {
        match self {
            Tx::Sqlite(t, ..) => {
                bind_each!(sqlx::query_as::<_, T>(sql), &args)
                    .fetch_optional(&mut **t)
                    .await
            }
            Tx::MySql(t) => {
                bind_each!(sqlx::query_as::<_, T>(sql), &args)
                    .fetch_optional(&mut **t)
                    .await
            }
        }
    }

    pub async fn exec(&mut self, sql: &str, args: Vec<Arg>) -> sqlx::Result<Done> {
        match self {
            Tx::Sqlite(t, _, touched) => {
                *touched |= cache::touched_by(sql);
                let r = bind_each!(sqlx::query(sql), &args)
                    .execute(&mut **t)
                    .await?;
                Ok(Done {
                    rows: r.rows_affected(),
                    id: r.last_insert_rowid(),
                })
            }
            Tx::MySql(t) => {
                let r = bind_each!(sqlx::query(sql), &args)
                    .execute(&mut **t)
                    .await?;
                Ok(Done {
                    rows: r.rows_affected(),
                    id: r.last_insert_id() as i64,
                })
            }
        }
    }
}

impl Db {
    pub async fn connect(url: &str, data_dir: &std::path::Path) -> anyhow::Result<Db> {
        if url.starts_with("sqlite:") {
            crate::create_private_dir(data_dir)
                .with_context(|| format!("creating data directory {}", data_dir.display()))?;
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: every commit is on disk before a message is acknowledged (ARCHITECTURE:
                // durable before ack); writes are batched so the fsync cost is shared.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(false);
            let w = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .connect_with(opts.clone())
                .await
                .with_context(|| format!("opening {url}"))?;
            // Few readers: each SQLite connection is a thread, and hot rows are cached anyway.
            let r = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts.read_only(false))
                .await?;
            Ok(Db::Sqlite {
                r,
                w,
                cache: Arc::default(),
            })
        } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            let url = url.replacen("mariadb:", "mysql:", 1);
            let opts = MySqlConnectOptions::from_str(&url)?
                .charset("utf8mb4")
                .timezone(Some(String::from("+00:00")));
            let pool = MySqlPoolOptions::new()
                .max_connections(32)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .context("connecting to MySQL/MariaDB")?;
            Ok(Db::MySql(pool))
        } else {
            anyhow::bail!("IMRS_DATABASE_URL must start with sqlite: or mysql:")
        }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite { w, .. } => sqlx::migrate!("./migrations/sqlite").run(w).await?,
            Db::MySql(p) => {
                // Never change an original's (or an unknown) schema by itself (issue 16).
                match legacy::classify(self).await? {
                    legacy::Schema::Original { .. } => anyhow::bail!(legacy::ORIGINAL_ADVICE),
                    legacy::Schema::Unknown(why) => anyhow::bail!(why),
                    legacy::Schema::Fresh | legacy::Schema::Imrs => {}
                }
                legacy::MIGRATOR.run(p).await?
            }
        }
        Ok(())
    }

    pub async fn begin(&self) -> sqlx::Result<Tx> {
        Ok(match self {
            Db::Sqlite { w, cache, .. } => Tx::Sqlite(w.begin().await?, cache.clone(), 0),
            Db::MySql(p) => Tx::MySql(p.begin().await?),
        })
    }

    /// The in-memory cache of the embedded backend (`None` on MySQL, where other nodes may write).
    pub fn cache(&self) -> Option<&cache::Cache> {
        match self {
            Db::Sqlite { cache, .. } => Some(cache),
            Db::MySql(_) => None,
        }
    }

    pub fn is_mysql(&self) -> bool {
        matches!(self, Db::MySql(_))
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite { r, w, .. } => {
                r.close().await;
                w.close().await;
            }
            Db::MySql(p) => p.close().await,
        }
    }
}

impl Tx {
    pub async fn commit(self) -> sqlx::Result<()> {
        match self {
            Tx::Sqlite(t, cache, touched) => {
                t.commit().await?;
                cache.invalidate(touched);
                Ok(())
            }
            Tx::MySql(t) => t.commit().await,
        }
    }

    /// `" FOR UPDATE"` on MySQL (a locking read inside the transaction); SQLite's single writer
    /// already serialises write transactions.
    pub fn for_update(&self) -> &'static str {
        match self {
            Tx::Sqlite(..) => "",
            Tx::MySql(_) => " FOR UPDATE",
        }
    }

    /// `INSERT OR IGNORE` / `INSERT IGNORE`.
    pub fn insert_ignore(&self) -> &'static str {
        match self {
            Tx::Sqlite(..) => "INSERT OR IGNORE",
            Tx::MySql(_) => "INSERT IGNORE",
        }
    }
}

/// True when `e` is a unique-key violation (a lost race on an insert).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Escape `%`, `_` and the escape character itself for `LIKE … ESCAPE '!'` (AF §9 D11).
pub fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '!') {
            out.push('!');
        }
        out.push(ch);
    }
    out
}
