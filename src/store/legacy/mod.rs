//! Taking over the original's MySQL database (spec LT1, LT4): detection of what a database holds,
//! and the in-place upgrade of an original's schema to exactly the schema of imrs's migrations.
//! Every step looks at `information_schema` before acting and can be repeated, so an upgrade
//! killed at any point resumes when run again, and a finished one is a no-op.
//!
//! Each legacy table is rebuilt, not altered: the imrs `CREATE TABLE` (taken from the migration
//! itself) is created as `<t>__new`, the rows are copied with their conversions, then one atomic
//! `RENAME TABLE <t> TO <t>__old, <t>__new TO <t>` swaps them and `<t>__old` is dropped. Until the
//! swap the original table is untouched; after it the new one holds every row.

pub mod import;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use anyhow::{bail, Context};
use sqlx::MySqlPool;

use super::Db;

/// The six tables of the original (LT1), in the order they are rebuilt.
pub const LEGACY_TABLES: [&str; 6] = [
    "user",
    "user_info",
    "goodfriend",
    "goodfriendapply",
    "group",
    "group_user",
];
/// The original's migration table (LT1).
const SEQUELIZE_META: &str = "SequelizeMeta";
const SQLX_MIGRATIONS: &str = "_sqlx_migrations";
/// The imrs migrations whose schema the upgrade produces; later ones are applied by the normal
/// migrator afterwards.
const UPGRADE_TARGET_VERSION: i64 = 1;
/// The original's group icon (its model default), for groups whose avatar is NULL.
const GROUP_ICON: &str = "https://docs-51yrc-com.oss-cn-hangzhou.aliyuncs.com/chat/group.png";
/// Columns later versions of the original added to `user` (absent on early installs, LT1).
const LATER_USER_COLUMNS: [&str; 7] = [
    "devicefingeruuid",
    "uniplatform",
    "devicemodel",
    "deviceos",
    "devicebrand",
    "userset",
    "invite_confirm",
];
/// Columns every install of the original has (what recognition requires, besides `id`).
fn required_columns(table: &str) -> &'static [&'static str] {
    match table {
        "user" => &[
            "uuid",
            "username",
            "password",
            "nickname",
            "avatar",
            "mobile",
            "email",
            "status",
            "last_login",
            "last_login_ip",
            "register_time",
            "register_ip",
            "is_deleted",
            "wechat_openid",
            "qq_openid",
            "weibo_uid",
            "role",
            "is_email_verified",
            "is_mobile_verified",
            "order",
            "create_time",
            "update_time",
        ],
        "user_info" => &[
            "user_id",
            "gender",
            "birthday",
            "bio",
            "location",
            "website",
            "order",
            "create_time",
            "update_time",
        ],
        "goodfriend" | "goodfriendapply" => &[
            "user_id",
            "friend_id",
            "nickname",
            "friendlookme",
            "melookfriend",
            "ismystarfriend",
            "isblack",
            "status",
            "order",
            "create_time",
            "update_time",
        ],
        "group" => &[
            "uuid",
            "user_id",
            "name",
            "avatar",
            "remark",
            "invite_confirm",
            "status",
            "order",
            "create_time",
            "update_time",
        ],
        "group_user" => &[
            "group_id",
            "user_id",
            "nickname",
            "avatar",
            "status",
            "order",
            "create_time",
            "update_time",
        ],
        _ => &[],
    }
}

/// What a database holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Schema {
    /// Nothing of imrs or of the original: the normal migrations create everything.
    Fresh,
    /// imrs's own schema (`_sqlx_migrations`, no `SequelizeMeta`).
    Imrs,
    /// The original's schema, possibly part-way through an interrupted upgrade.
    Original { early: bool, partial: bool },
    /// Something else: refused, never altered.
    Unknown(String),
}

/// The advice `imrs serve` (and every command that needs the imrs schema) prints on an original's
/// database: the schema is never changed without an explicit `imrs migrate`.
pub const ORIGINAL_ADVICE: &str = "this database was created by the original (egg.js) server: it has the original's tables and \
SequelizeMeta (an upgrade may be under way). imrs does not change it by itself. To take it over:\n  \
1. stop the original server and back up MySQL (mysqldump --single-transaction --routines DB > backup.sql) and Redis;\n  \
2. run `imrs migrate --dry-run` to see the plan and the rows it will merge;\n  \
3. run `imrs migrate` to upgrade the schema in place (resumable if interrupted);\n  \
4. run `imrs import-redis --redis-url redis://…` to import the offline queues;\n  \
then start imrs again. See the README, \"Taking over a running deployment\".";

#[derive(Debug, Clone)]
struct Col {
    name: String,
    data_type: String,
    column_type: String,
}

/// What `information_schema` says about the current database.
struct Inspect {
    tables: HashSet<String>,
    cols: HashMap<String, Vec<Col>>,
    foreign_keys: Vec<(String, String)>,
    auto_increment: HashMap<String, i64>,
}

impl Inspect {
    async fn load(p: &MySqlPool) -> sqlx::Result<Inspect> {
        let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
            "SELECT CAST(TABLE_NAME AS CHAR), CAST(AUTO_INCREMENT AS SIGNED) FROM information_schema.TABLES \
WHERE TABLE_SCHEMA = DATABASE()",
        )
        .fetch_all(p)
        .await?;
        let mut tables = HashSet::new();
        let mut auto_increment = HashMap::new();
        for (t, ai) in rows {
            if let Some(ai) = ai {
                auto_increment.insert(t.clone(), ai);
            }
            tables.insert(t);
        }
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT CAST(TABLE_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR), CAST(COLUMN_TYPE AS CHAR) \
FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION",
        )
        .fetch_all(p)
        .await?;
        let mut cols: HashMap<String, Vec<Col>> = HashMap::new();
        for (t, name, data_type, column_type) in rows {
            cols.entry(t).or_default().push(Col {
                name: name.to_ascii_lowercase(),
                data_type: data_type.to_ascii_lowercase(),
                column_type: column_type.to_ascii_lowercase(),
            });
        }
        let foreign_keys: Vec<(String, String)> = sqlx::query_as(
            "SELECT CAST(TABLE_NAME AS CHAR), CAST(CONSTRAINT_NAME AS CHAR) FROM information_schema.TABLE_CONSTRAINTS \
WHERE TABLE_SCHEMA = DATABASE() AND CONSTRAINT_TYPE = 'FOREIGN KEY' ORDER BY TABLE_NAME, CONSTRAINT_NAME",
        )
        .fetch_all(p)
        .await?;
        Ok(Inspect {
            tables,
            cols,
            foreign_keys,
            auto_increment,
        })
    }

    fn has(&self, table: &str) -> bool {
        self.tables.contains(table)
    }

    fn has_col(&self, table: &str, col: &str) -> bool {
        self.cols
            .get(table)
            .is_some_and(|c| c.iter().any(|c| c.name == col))
    }

    /// The original's tables have `INT UNSIGNED` ids; imrs's are signed `BIGINT`.
    fn is_legacy_shape(&self, table: &str) -> bool {
        self.cols.get(table).is_some_and(|c| {
            c.iter().any(|c| {
                c.name == "id" && (c.data_type != "bigint" || c.column_type.contains("unsigned"))
            })
        })
    }
}

/// Classify the database (MySQL/MariaDB; SQLite is always imrs's own).
pub async fn classify(db: &Db) -> anyhow::Result<Schema> {
    let Db::MySql(p) = db else {
        return Ok(Schema::Imrs);
    };
    let i = Inspect::load(p)
        .await
        .context("reading information_schema")?;
    Ok(classify_inspected(&i))
}

fn imrs_tables() -> Vec<String> {
    parse_migration(target_sql())
        .into_iter()
        .map(|t| t.name)
        .collect()
}

fn classify_inspected(i: &Inspect) -> Schema {
    let has_meta = i.has(SEQUELIZE_META);
    if !has_meta {
        if i.has(SQLX_MIGRATIONS) {
            return Schema::Imrs;
        }
        let known: Vec<String> = imrs_tables()
            .into_iter()
            .flat_map(|t| [format!("{t}__new"), format!("{t}__old"), t])
            .filter(|t| i.has(t))
            .collect();
        if known.is_empty() {
            return Schema::Fresh;
        }
        return Schema::Unknown(format!(
            "the database has table(s) {} but neither imrs's _sqlx_migrations nor the original's SequelizeMeta; \
refusing to touch it (restore a backup, or point IMRS_DATABASE_URL at another database)",
            known.join(", ")
        ));
    }
    let mut problems = Vec::new();
    let mut partial = i.has(SQLX_MIGRATIONS);
    let mut early = false;
    for t in LEGACY_TABLES {
        if !i.has(t) {
            problems.push(format!("table `{t}` is missing"));
            continue;
        }
        if !i.is_legacy_shape(t) {
            partial = true;
            continue;
        }
        let missing: Vec<&str> = required_columns(t)
            .iter()
            .copied()
            .filter(|c| !i.has_col(t, c))
            .collect();
        if !missing.is_empty() {
            problems.push(format!("`{t}` lacks column(s) {}", missing.join(", ")));
        }
        if t == "user" && LATER_USER_COLUMNS.iter().any(|c| !i.has_col(t, c)) {
            early = true;
        }
    }
    for t in imrs_tables() {
        if i.has(&format!("{t}__new")) || i.has(&format!("{t}__old")) {
            partial = true;
        }
    }
    if !problems.is_empty() {
        return Schema::Unknown(format!(
            "the database has SequelizeMeta but is not a schema of the original imrs knows: {}; refusing to touch it",
            problems.join("; ")
        ));
    }
    Schema::Original { early, partial }
}

/// The SQL of the migrations the upgrade reproduces.
fn target_sql() -> &'static str {
    MIGRATOR
        .iter()
        .find(|m| m.version == UPGRADE_TARGET_VERSION)
        .map(|m| &*m.sql)
        .unwrap_or_default()
}

/// imrs's MySQL migrations (the normal migrator and the upgrade use the same texts).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/mysql");

/// One table of the migration: its `CREATE TABLE` and its `CREATE INDEX` statements.
#[derive(Debug, Clone)]
struct TableDef {
    name: String,
    create: String,
    indexes: Vec<String>,
}

/// Split the migration into its tables (statements end with `;` at a line end; `--` lines are
/// comments). Only the two statement forms the migration uses are expected.
fn parse_migration(sql: &str) -> Vec<TableDef> {
    let text: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut out: Vec<TableDef> = Vec::new();
    for stmt in text.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        if let Some(rest) = stmt.strip_prefix("CREATE TABLE IF NOT EXISTS `") {
            let name = rest.split('`').next().unwrap_or_default().to_string();
            out.push(TableDef {
                name,
                create: stmt.to_string(),
                indexes: Vec::new(),
            });
        } else if stmt.starts_with("CREATE INDEX") {
            let table = stmt
                .split(" ON `")
                .nth(1)
                .and_then(|r| r.split('`').next())
                .unwrap_or_default();
            if let Some(t) = out.iter_mut().find(|t| t.name == table) {
                t.indexes.push(stmt.to_string());
            }
        }
    }
    out
}

impl TableDef {
    /// The statements creating this table under another name.
    fn create_as(&self, name: &str) -> Vec<String> {
        let mut v = vec![self.create.replacen(
            &format!("CREATE TABLE IF NOT EXISTS `{}`", self.name),
            &format!("CREATE TABLE `{name}`"),
            1,
        )];
        for i in &self.indexes {
            v.push(i.replacen(&format!(" ON `{}`", self.name), &format!(" ON `{name}`"), 1));
        }
        v
    }
}

/// Options of one upgrade run.
#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    /// Seconds east of UTC of the original's local times (`IMRS_LEGACY_TIMEZONE`).
    pub legacy_offset_secs: i32,
    /// Print the plan, change nothing.
    pub dry_run: bool,
    /// Stop right after this step (1-based), as if killed (`IMRS_MIGRATE_EXIT_AFTER_STEP`).
    pub exit_after_step: Option<usize>,
}

/// How an upgrade run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing to do (fresh or imrs database): the normal migrations run next.
    NotLegacy,
    /// Upgraded (or already upgraded): these steps did something.
    Done { ran: usize },
    /// Dry run: the plan was printed.
    Planned,
    /// Stopped after this step on request.
    Stopped(usize),
}

/// The fixed list of steps; each knows whether it still has work to do.
#[derive(Debug, Clone)]
enum Step {
    DropForeignKeys,
    Build(&'static str),
    Swap(&'static str),
    DropOld(&'static str),
    CreateTable(String),
    GroupCursors,
    RecordMigrations,
    DropSequelizeMeta,
}

fn steps() -> Vec<Step> {
    let mut v = vec![Step::DropForeignKeys];
    for t in LEGACY_TABLES {
        v.extend([Step::Build(t), Step::Swap(t), Step::DropOld(t)]);
    }
    for t in imrs_tables() {
        if !LEGACY_TABLES.contains(&t.as_str()) {
            v.push(Step::CreateTable(t));
        }
    }
    v.extend([
        Step::GroupCursors,
        Step::RecordMigrations,
        Step::DropSequelizeMeta,
    ]);
    v
}

impl Step {
    fn title(&self) -> String {
        match self {
            Step::DropForeignKeys => {
                "drop the original's foreign keys (imrs's schema has none)".into()
            }
            Step::Build(t) => {
                format!("build `{t}__new` with the imrs definition and copy `{t}` into it")
            }
            Step::Swap(t) => format!("swap `{t}` and `{t}__new` atomically"),
            Step::DropOld(t) => format!("drop `{t}__old`"),
            Step::CreateTable(t) => format!("create `{t}`"),
            Step::GroupCursors => "open a group cursor for every active membership".into(),
            Step::RecordMigrations => {
                "record imrs's migrations as applied in _sqlx_migrations".into()
            }
            Step::DropSequelizeMeta => "drop SequelizeMeta (the original's migration list)".into(),
        }
    }
}

fn q(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `DATETIME` in the original's local time → UTC (LT4 trap 9).
fn utc(col: &str, offset_secs: i32) -> String {
    if offset_secs == 0 {
        format!("t.{}", q(col))
    } else {
        format!("DATE_SUB(t.{}, INTERVAL {offset_secs} SECOND)", q(col))
    }
}

/// The `INSERT … SELECT` copying legacy table `t` into `t__new`: target columns in the imrs
/// order, each with its conversion. Duplicates are merged by keeping the lowest id.
fn copy_sql(i: &Inspect, t: &str, off: i32) -> String {
    let has = |c: &str| i.has_col(t, c);
    let or = |c: &str, present: String, absent: &str| {
        if has(c) {
            present
        } else {
            absent.to_string()
        }
    };
    let col = |c: &str| format!("t.{}", q(c));
    let mut cols: Vec<(&str, String)> = Vec::new();
    let mut from = format!("FROM {} t", q(t));
    match t {
        "user" => {
            for c in ["id", "uuid", "username", "password"] {
                cols.push((c, col(c)));
            }
            cols.push(("nickname", "COALESCE(t.`nickname`, '')".into()));
            cols.push(("avatar", col("avatar")));
            // '' was the original's "no device", unique only once (LT4 trap 4): imrs uses NULL.
            cols.push((
                "devicefingeruuid",
                or(
                    "devicefingeruuid",
                    "NULLIF(t.`devicefingeruuid`, '')".into(),
                    "NULL",
                ),
            ));
            for c in ["uniplatform", "devicemodel", "deviceos", "devicebrand"] {
                cols.push((
                    c,
                    or(c, format!("LEFT(COALESCE(t.{}, ''), 50)", q(c)), "''"),
                ));
            }
            for c in ["mobile", "email"] {
                cols.push((c, col(c)));
            }
            cols.push(("status", "COALESCE(t.`status`, 1)".into()));
            cols.push(("last_login", utc("last_login", off)));
            cols.push(("last_login_ip", col("last_login_ip")));
            cols.push(("register_time", utc("register_time", off)));
            cols.push(("register_ip", col("register_ip")));
            cols.push(("is_deleted", "COALESCE(t.`is_deleted`, 0)".into()));
            for c in ["wechat_openid", "qq_openid", "weibo_uid"] {
                cols.push((c, col(c)));
            }
            cols.push(("role", "COALESCE(t.`role`, 'user')".into()));
            cols.push((
                "is_email_verified",
                "COALESCE(t.`is_email_verified`, 0)".into(),
            ));
            cols.push((
                "is_mobile_verified",
                "COALESCE(t.`is_mobile_verified`, 0)".into(),
            ));
            cols.push(("order", col("order")));
            cols.push(("userset", or("userset", col("userset"), "NULL")));
            cols.push((
                "invite_confirm",
                or(
                    "invite_confirm",
                    "COALESCE(t.`invite_confirm`, 0)".into(),
                    "0",
                ),
            ));
        }
        "user_info" => {
            cols.push(("id", col("id")));
            cols.push(("user_id", "COALESCE(t.`user_id`, 0)".into()));
            cols.push(("gender", "COALESCE(t.`gender`, 'unknown')".into()));
            // The intended date is the local date part (LT4 trap 7): no zone shift.
            cols.push(("birthday", "DATE(t.`birthday`)".into()));
            for c in ["bio", "location", "website", "order"] {
                cols.push((c, col(c)));
            }
            from = format!(
                "{from} JOIN (SELECT MIN(`id`) AS `keep_id` FROM `user_info` GROUP BY COALESCE(`user_id`, 0)) k ON k.`keep_id` = t.`id`"
            );
        }
        "goodfriend" | "goodfriendapply" => {
            cols.push(("id", col("id")));
            cols.push(("user_id", "COALESCE(t.`user_id`, 0)".into()));
            cols.push(("friend_id", "COALESCE(t.`friend_id`, 0)".into()));
            cols.push(("nickname", "COALESCE(t.`nickname`, '')".into()));
            for c in ["friendlookme", "melookfriend"] {
                cols.push((c, format!("COALESCE(t.{}, 1)", q(c))));
            }
            for c in ["ismystarfriend", "isblack"] {
                cols.push((c, format!("COALESCE(t.{}, 0)", q(c))));
            }
            if t == "goodfriend" {
                cols.push(("status", "COALESCE(t.`status`, 1)".into()));
                // The kept row is the one the original's findOne returned (lowest id).
                from = format!(
                    "{from} JOIN (SELECT MIN(`id`) AS `keep_id` FROM `goodfriend` \
GROUP BY COALESCE(`user_id`, 0), COALESCE(`friend_id`, 0)) k ON k.`keep_id` = t.`id`"
                );
            } else {
                cols.push(("status", "COALESCE(t.`status`, 'pending')".into()));
            }
            cols.push(("order", col("order")));
        }
        "group" => {
            for c in ["id", "uuid", "user_id", "name"] {
                cols.push((c, col(c)));
            }
            cols.push(("avatar", format!("COALESCE(t.`avatar`, '{GROUP_ICON}')")));
            cols.push(("remark", "COALESCE(t.`remark`, '')".into()));
            cols.push(("invite_confirm", "COALESCE(t.`invite_confirm`, 0)".into()));
            cols.push(("status", "COALESCE(t.`status`, 1)".into()));
            cols.push(("order", "COALESCE(t.`order`, 50)".into()));
        }
        "group_user" => {
            for c in ["id", "group_id", "user_id"] {
                cols.push((c, col(c)));
            }
            cols.push(("nickname", "COALESCE(t.`nickname`, '')".into()));
            cols.push(("avatar", "COALESCE(t.`avatar`, '')".into()));
            cols.push(("status", "COALESCE(t.`status`, 1)".into()));
            cols.push(("order", "COALESCE(t.`order`, 50)".into()));
            // An active row wins over inactive duplicates (the original counts status = 1 rows).
            from = format!(
                "{from} JOIN (SELECT COALESCE(MIN(CASE WHEN `status` = 1 THEN `id` END), MIN(`id`)) AS `keep_id` \
FROM `group_user` GROUP BY `group_id`, `user_id`) k ON k.`keep_id` = t.`id`"
            );
        }
        _ => {}
    }
    cols.push(("create_time", utc("create_time", off)));
    cols.push(("update_time", utc("update_time", off)));
    let names: Vec<String> = cols.iter().map(|(c, _)| q(c)).collect();
    let exprs: Vec<&str> = cols.iter().map(|(_, e)| e.as_str()).collect();
    format!(
        "INSERT INTO {} ({}) SELECT {} {from}",
        q(&format!("{t}__new")),
        names.join(","),
        exprs.join(",")
    )
}

/// The statements a step would run now (empty when it has nothing to do).
fn step_sql(i: &Inspect, step: &Step, opts: &UpgradeOptions) -> Vec<String> {
    let defs = parse_migration(target_sql());
    let def = |t: &str| defs.iter().find(|d| d.name == t).cloned();
    match step {
        Step::DropForeignKeys => i
            .foreign_keys
            .iter()
            .filter(|(t, _)| LEGACY_TABLES.contains(&t.as_str()))
            .map(|(t, fk)| format!("ALTER TABLE {} DROP FOREIGN KEY {}", q(t), q(fk)))
            .collect(),
        Step::Build(t) => {
            if !i.is_legacy_shape(t) {
                return vec![];
            }
            let Some(d) = def(t) else { return vec![] };
            let new = format!("{t}__new");
            let mut v = vec![format!("DROP TABLE IF EXISTS {}", q(&new))];
            v.extend(d.create_as(&new));
            if let Some(ai) = i.auto_increment.get(*t).filter(|ai| **ai > 1) {
                v.push(format!("ALTER TABLE {} AUTO_INCREMENT = {ai}", q(&new)));
            }
            v.push(copy_sql(i, t, opts.legacy_offset_secs));
            v
        }
        Step::Swap(t) => {
            if !i.is_legacy_shape(t) {
                return vec![];
            }
            vec![format!(
                "RENAME TABLE {} TO {}, {} TO {}",
                q(t),
                q(&format!("{t}__old")),
                q(&format!("{t}__new")),
                q(t)
            )]
        }
        Step::DropOld(t) => {
            let old = format!("{t}__old");
            if i.has(&old) {
                vec![format!("DROP TABLE {}", q(&old))]
            } else {
                vec![]
            }
        }
        Step::CreateTable(t) => {
            if i.has(t) {
                return vec![];
            }
            let Some(d) = def(t) else { return vec![] };
            let new = format!("{t}__new");
            let mut v = vec![format!("DROP TABLE IF EXISTS {}", q(&new))];
            v.extend(d.create_as(&new));
            v.push(format!("RENAME TABLE {} TO {}", q(&new), q(t)));
            v
        }
        // The group timeline key is `g:<id>` (store::timeline::group_key); a cursor at the
        // timeline's current end: members receive what is sent from now on (and what
        // `imrs import-redis` queues for them).
        Step::GroupCursors => vec![
            "INSERT IGNORE INTO `im_group_cursor` (`group_id`,`user_id`,`conv_key`,`join_seq`,`left_seq`,`delivered_seq`,`read_seq`) \
SELECT gu.`group_id`, gu.`user_id`, CONCAT('g:', gu.`group_id`), COALESCE(c.`last_seq`, 0) + 1, NULL, COALESCE(c.`last_seq`, 0), 0 \
FROM `group_user` gu LEFT JOIN `im_conv` c ON c.`conv_key` = CONCAT('g:', gu.`group_id`) \
LEFT JOIN `im_group_cursor` x ON x.`group_id` = gu.`group_id` AND x.`user_id` = gu.`user_id` \
WHERE gu.`status` = 1 AND x.`user_id` IS NULL"
                .to_string(),
        ],
        Step::RecordMigrations => MIGRATOR
            .iter()
            .filter(|m| m.version <= UPGRADE_TARGET_VERSION)
            .map(|m| {
                format!(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
VALUES ({}, '{}', TRUE, x'{}', 0)",
                    m.version,
                    m.description.replace('\'', "''"),
                    hex::encode(&*m.checksum)
                )
            })
            .collect(),
        Step::DropSequelizeMeta => {
            if i.has(SEQUELIZE_META) {
                vec![format!("DROP TABLE {}", q(SEQUELIZE_META))]
            } else {
                vec![]
            }
        }
    }
}

/// Whether `RecordMigrations` still has work: a missing table, or a target migration missing,
/// failed or recorded with another checksum (a dirty row left by an imrs that tried its
/// migrations on the original's database, issue 16).
async fn migrations_recorded(p: &MySqlPool, i: &Inspect) -> sqlx::Result<bool> {
    if !i.has(SQLX_MIGRATIONS) {
        return Ok(false);
    }
    let rows: Vec<(i64, bool, Vec<u8>)> =
        sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations")
            .fetch_all(p)
            .await?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| m.version <= UPGRADE_TARGET_VERSION)
        .all(|m| {
            rows.iter()
                .any(|(v, ok, sum)| *v == m.version && *ok && sum.as_slice() == &*m.checksum)
        }))
}

async fn step_needed(
    p: &MySqlPool,
    i: &Inspect,
    step: &Step,
    opts: &UpgradeOptions,
) -> sqlx::Result<bool> {
    Ok(match step {
        Step::RecordMigrations => !migrations_recorded(p, i).await?,
        Step::GroupCursors => {
            if !i.has("im_group_cursor") || i.is_legacy_shape("group_user") {
                true
            } else {
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM `group_user` gu LEFT JOIN `im_group_cursor` x \
ON x.`group_id` = gu.`group_id` AND x.`user_id` = gu.`user_id` WHERE gu.`status` = 1 AND x.`user_id` IS NULL",
                )
                .fetch_one(p)
                .await?;
                n > 0
            }
        }
        _ => !step_sql(i, step, opts).is_empty(),
    })
}

async fn run_step(
    p: &MySqlPool,
    i: &Inspect,
    step: &Step,
    opts: &UpgradeOptions,
) -> anyhow::Result<()> {
    match step {
        Step::RecordMigrations => {
            use sqlx::migrate::Migrate;
            let mut conn = p.acquire().await?;
            conn.ensure_migrations_table().await?;
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            for m in MIGRATOR
                .iter()
                .filter(|m| m.version <= UPGRADE_TARGET_VERSION)
            {
                sqlx::query("DELETE FROM _sqlx_migrations WHERE version = ?")
                    .bind(m.version)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
VALUES (?, ?, TRUE, ?, 0)",
                )
                .bind(m.version)
                .bind(&*m.description)
                .bind(&*m.checksum)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }
        _ => {
            for sql in step_sql(i, step, opts) {
                sqlx::raw_sql(&sql)
                    .execute(p)
                    .await
                    .with_context(|| format!("step \"{}\": {sql}", step.title()))?;
            }
        }
    }
    Ok(())
}

/// Counts the upgrade reports (and the dry run shows before anything changes).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    pub rows: Vec<(String, i64)>,
    pub goodfriend_merged: i64,
    pub group_user_merged: i64,
    pub user_info_merged: i64,
    pub empty_device_ids: i64,
    pub active_memberships: i64,
}

async fn count(p: &MySqlPool, sql: &str) -> sqlx::Result<i64> {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(p).await?;
    Ok(n)
}

/// Row counts and what the copy merges, read from the tables not yet rebuilt.
async fn counts(p: &MySqlPool, i: &Inspect) -> anyhow::Result<Counts> {
    let mut c = Counts::default();
    for t in LEGACY_TABLES {
        c.rows.push((
            t.to_string(),
            count(p, &format!("SELECT COUNT(*) FROM {}", q(t))).await?,
        ));
    }
    if i.is_legacy_shape("goodfriend") {
        c.goodfriend_merged = count(
            p,
            "SELECT COUNT(*) - COUNT(DISTINCT COALESCE(`user_id`,0), COALESCE(`friend_id`,0)) FROM `goodfriend`",
        )
        .await?;
    }
    if i.is_legacy_shape("group_user") {
        c.group_user_merged = count(
            p,
            "SELECT COUNT(*) - COUNT(DISTINCT `group_id`, `user_id`) FROM `group_user`",
        )
        .await?;
    }
    if i.is_legacy_shape("user_info") {
        c.user_info_merged = count(
            p,
            "SELECT COUNT(*) - COUNT(DISTINCT COALESCE(`user_id`,0)) FROM `user_info`",
        )
        .await?;
    }
    if i.is_legacy_shape("user") && i.has_col("user", "devicefingeruuid") {
        c.empty_device_ids = count(
            p,
            "SELECT COUNT(*) FROM `user` WHERE `devicefingeruuid` = ''",
        )
        .await?;
    }
    c.active_memberships = count(
        p,
        "SELECT COUNT(*) FROM (SELECT DISTINCT `group_id`, `user_id` FROM `group_user` WHERE `status` = 1) m",
    )
    .await?;
    Ok(c)
}

/// Values the imrs columns cannot hold: refused before anything changes, never truncated.
async fn blockers(p: &MySqlPool, i: &Inspect) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    if i.is_legacy_shape("group") {
        let ids: Vec<(i64,)> = sqlx::query_as(
            "SELECT CAST(`id` AS SIGNED) FROM `group` WHERE CHAR_LENGTH(`remark`) > 500 ORDER BY `id` LIMIT 20",
        )
        .fetch_all(p)
        .await?;
        if !ids.is_empty() {
            let list: Vec<String> = ids.iter().map(|r| r.0.to_string()).collect();
            out.push(format!(
                "group remark longer than 500 characters (imrs's limit) in group(s) {}: shorten them first",
                list.join(", ")
            ));
        }
    }
    Ok(out)
}

fn print_counts(c: &Counts, out: &mut String) {
    let rows: Vec<String> = c.rows.iter().map(|(t, n)| format!("{t} {n}")).collect();
    let _ = writeln!(out, "rows: {}", rows.join(", "));
    let _ = writeln!(
        out,
        "duplicates merged (lowest id kept): goodfriend {}, group_user {}, user_info {}",
        c.goodfriend_merged, c.group_user_merged, c.user_info_merged
    );
    let _ = writeln!(
        out,
        "empty device ids set to NULL: {}; active memberships given a group cursor: {}",
        c.empty_device_ids, c.active_memberships
    );
}

/// `imrs migrate` on MySQL: upgrade an original's database in place (or plan it). Returns
/// `NotLegacy` for fresh and imrs databases, and an error for unknown ones. The report goes to
/// stdout.
pub async fn upgrade(db: &Db, opts: &UpgradeOptions) -> anyhow::Result<Outcome> {
    let Db::MySql(p) = db else {
        return Ok(Outcome::NotLegacy);
    };
    let i = Inspect::load(p).await?;
    let (early, partial) = match classify_inspected(&i) {
        Schema::Fresh | Schema::Imrs => return Ok(Outcome::NotLegacy),
        Schema::Unknown(why) => bail!("{why}"),
        Schema::Original { early, partial } => (early, partial),
    };
    let blocked = blockers(p, &i).await?;
    if !blocked.is_empty() {
        bail!(
            "the upgrade cannot start, nothing was changed:\n  {}",
            blocked.join("\n  ")
        );
    }
    let mut report = String::new();
    let _ = writeln!(
        report,
        "original database detected ({} install{}); legacy times are read as UTC{}",
        if early { "early" } else { "full" },
        if partial {
            ", upgrade already under way: resuming"
        } else {
            ""
        },
        offset_text(opts.legacy_offset_secs)
    );
    print_counts(&counts(p, &i).await?, &mut report);
    if opts.dry_run {
        let _ = writeln!(report, "plan (dry run: nothing is changed):");
        for (n, step) in steps().iter().enumerate() {
            if !step_needed(p, &i, step, opts).await? {
                continue;
            }
            let _ = writeln!(report, "step {}: {}", n + 1, step.title());
            for sql in step_sql(&i, step, opts) {
                let _ = writeln!(report, "    {sql};");
            }
        }
        print!("{report}");
        return Ok(Outcome::Planned);
    }
    print!("{report}");
    let mut ran = 0;
    for (n, step) in steps().iter().enumerate() {
        // Each step reads the schema afresh: what an earlier run or step did is what counts.
        let i = Inspect::load(p).await?;
        if step_needed(p, &i, step, opts).await? {
            let started = std::time::Instant::now();
            run_step(p, &i, step, opts).await?;
            ran += 1;
            println!(
                "step {}: {} ({} ms)",
                n + 1,
                step.title(),
                started.elapsed().as_millis()
            );
        }
        if opts.exit_after_step == Some(n + 1) {
            return Ok(Outcome::Stopped(n + 1));
        }
    }
    let after = Inspect::load(p).await?;
    if classify_inspected(&after) != Schema::Imrs {
        bail!("the upgrade finished its steps but the database does not look like imrs's schema");
    }
    Ok(Outcome::Done { ran })
}

fn offset_text(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.abs();
    format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migration_splits_into_its_tables_and_indexes() {
        let defs = parse_migration(target_sql());
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        for t in LEGACY_TABLES {
            assert!(names.contains(&t), "{t} in {names:?}");
        }
        assert!(names.contains(&"im_group_cursor"));
        let user = defs.iter().find(|d| d.name == "user").expect("user");
        assert_eq!(user.indexes.len(), 1);
        let v = user.create_as("user__new");
        assert!(v[0].starts_with("CREATE TABLE `user__new` ("), "{}", v[0]);
        assert!(
            v[1].ends_with("ON `user__new` (`devicefingeruuid`)"),
            "{}",
            v[1]
        );
    }

    #[test]
    fn offsets_print_like_the_setting() {
        assert_eq!(offset_text(8 * 3600), "+08:00");
        assert_eq!(offset_text(-(5 * 3600 + 1800)), "-05:30");
    }
}
