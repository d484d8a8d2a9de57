//! One typed configuration: defaults < optional TOML file < environment (`IMRS_*`) < command line.
//! Every setting is declared once in `settings!` below, which also gives `imrs --help` its list.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use chrono::FixedOffset;
use ipnet::IpNet;
use secrecy::SecretString;

/// The salt compiled into the existing client (spec AF §4.1). Not a secret.
pub const CLIENT_VISITOR_SALT: &str = "45ncashdaksh2!#@3nxjdas*_259";

macro_rules! settings {
    ($( $(#[doc = $doc:literal])* $name:ident : $ty:ty = $default:expr, $env:literal; )*) => {
        /// Values given on the command line, in the environment or in the config file; unset ones are `None`.
        #[derive(clap::Args, Debug, Default, Clone, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Settings {
            $( $(#[doc = $doc])* #[arg(long, env = $env, hide_env_values = true)] pub $name: Option<$ty>, )*
        }

        /// Raw resolved values, before parsing into [`Config`].
        #[derive(Clone)]
        struct Raw { $( $name: $ty, )* }

        impl Settings {
            /// `self` (command line and environment) wins over `file`, which wins over the defaults.
            fn resolve(self, file: Settings) -> Raw {
                Raw { $( $name: self.$name.or(file.$name).unwrap_or_else(|| $default), )* }
            }
        }
    };
}

settings! {
    /// Address to listen on
    listen: String = "0.0.0.0:7001".into(), "IMRS_LISTEN";
    /// Directory for the embedded database, the generated JWT secret and uploads
    data_dir: PathBuf = PathBuf::from("./data"), "IMRS_DATA_DIR";
    /// Database URL: empty = SQLite file in the data directory; `mysql://user:pass@host/db` selects MariaDB/MySQL
    database_url: String = String::new(), "IMRS_DATABASE_URL";
    /// HS256 secret for tokens (generated once into the data directory when unset)
    jwt_secret: String = String::new(), "IMRS_JWT_SECRET";
    /// Salt of the visitor request signature (default: the value compiled into the existing client)
    visitor_salt: String = CLIENT_VISITOR_SALT.into(), "IMRS_VISITOR_SALT";
    /// Display time zone of `create_time` texts
    display_tz: String = "+08:00".into(), "IMRS_DISPLAY_TZ";
    /// Time zone of the DATETIMEs of an original's database, converted to UTC by `imrs migrate`
    legacy_timezone: String = "+08:00".into(), "IMRS_LEGACY_TIMEZONE";
    /// Token lifetime in seconds (0 = unlimited, like the original)
    token_ttl_secs: u64 = 0, "IMRS_TOKEN_TTL_SECS";
    /// Days that ended (retired/revoked) token records are kept
    ended_token_days: u64 = 90, "IMRS_ENDED_TOKEN_DAYS";
    /// Maximum request body in bytes for JSON/form requests
    body_limit: usize = 1024 * 1024, "IMRS_BODY_LIMIT";
    /// Counted visitor requests per device per window (AF §4.3)
    visitor_device_limit: u64 = 30, "IMRS_VISITOR_DEVICE_LIMIT";
    /// Window of the per-device visitor limit, seconds
    visitor_window_secs: u64 = 3600, "IMRS_VISITOR_WINDOW_SECS";
    /// `off` disables every per-IP limit at once (test rigs running all clients from one address)
    per_ip_limits: String = "on".into(), "IMRS_PER_IP_LIMITS";
    /// Visitor creations per IP per hour (0 disables)
    visitor_ip_creations: u64 = 60, "IMRS_VISITOR_IP_CREATIONS";
    /// Requests of the three signed visitor endpoints per IP per hour (0 disables)
    visitor_ip_requests: u64 = 300, "IMRS_VISITOR_IP_REQUESTS";
    /// Registrations (API 一) per IP per hour (0 disables)
    reg_ip_limit: u64 = 30, "IMRS_REG_IP_LIMIT";
    /// Failed logins per account per hour before logins are refused (0 disables)
    login_fail_account_limit: u64 = 20, "IMRS_LOGIN_FAIL_ACCOUNT_LIMIT";
    /// Failed logins per IP per hour before logins are refused (0 disables)
    login_fail_ip_limit: u64 = 100, "IMRS_LOGIN_FAIL_IP_LIMIT";
    /// Comma-separated addresses/CIDRs of proxies whose X-Forwarded-For is honoured
    trusted_proxies: String = String::new(), "IMRS_TRUSTED_PROXIES";
    /// Maximum results of user search
    search_limit: u64 = 50, "IMRS_SEARCH_LIMIT";
    /// Allowed CORS origins, comma-separated (`*` = any)
    cors_origins: String = "*".into(), "IMRS_CORS_ORIGINS";
    /// Argon2id memory cost in KiB (lower only for tests and benchmarks)
    argon2_memory_kib: u32 = 19456, "IMRS_ARGON2_MEMORY_KIB";
    /// Accepted messages per sender per rolling hour (0 disables)
    send_rate_limit: u64 = 1000, "IMRS_SEND_RATE_LIMIT";
    /// Message types users may not send, comma-separated
    reserved_types: String = "systemNotice".into(), "IMRS_RESERVED_TYPES";
    /// Maximum member rows per group
    group_max_members: u64 = 500, "IMRS_GROUP_MAX_MEMBERS";
    /// Member rows listed in a group message's `group` snapshot, the first ones by id (0 = every
    /// active member, up to the group maximum). The client reads only `user_id`, `remark` and
    /// `invite_confirm` of it (GR GA20), so the default keeps a frame's size independent of the
    /// group's
    group_snapshot_members: u64 = 20, "IMRS_GROUP_SNAPSHOT_MEMBERS";
    /// Self-joins (API 三十六 with `user_id` = me) per user per hour (0 disables)
    group_join_limit: u64 = 60, "IMRS_GROUP_JOIN_LIMIT";
    /// Invitations of others (API 三十六) per user per hour (0 disables)
    group_invite_limit: u64 = 300, "IMRS_GROUP_INVITE_LIMIT";
    /// Seconds between server heartbeats (text ping and protocol Ping)
    ws_ping_secs: u64 = 30, "IMRS_WS_PING_SECS";
    /// Seconds of silence after which a peer that answered Pings is dropped
    ws_dead_secs: u64 = 90, "IMRS_WS_DEAD_SECS";
    /// Websocket upgrades per user per minute before the 101 is delayed 5 s (0 disables)
    ws_user_upgrades: u64 = 30, "IMRS_WS_USER_UPGRADES";
    /// Websocket upgrades per IP per minute before the 101 is delayed 5 s (0 disables)
    ws_ip_upgrades: u64 = 60, "IMRS_WS_IP_UPGRADES";
    /// Open sockets per user beyond which further upgrades are delayed 5 s (0 disables)
    ws_user_sockets: usize = 50, "IMRS_WS_USER_SOCKETS";
    /// Frames queued per socket before a slow client is dropped
    ws_queue_frames: usize = 1024, "IMRS_WS_QUEUE_FRAMES";
    /// Where uploads are kept: `local` (a directory served under /public/uploads) or `s3`
    blob_store: String = "local".into(), "IMRS_BLOB_STORE";
    /// Directory of the local upload store (default: `<data_dir>/uploads`)
    upload_dir: String = String::new(), "IMRS_UPLOAD_DIR";
    /// Largest accepted upload file, bytes
    upload_max_bytes: u64 = 50 * 1024 * 1024, "IMRS_UPLOAD_MAX_BYTES";
    /// Public base URL of this server (`https://im.example.com`) for absolute uploadAliyun URLs; empty = the request's Host
    public_base_url: String = String::new(), "IMRS_PUBLIC_BASE_URL";
    /// S3-compatible endpoint (`https://oss-cn-hangzhou.aliyuncs.com`, `http://minio:9000`); empty = AWS
    s3_endpoint: String = String::new(), "IMRS_S3_ENDPOINT";
    /// Bucket of the S3 store
    s3_bucket: String = String::new(), "IMRS_S3_BUCKET";
    /// Region of the S3 store
    s3_region: String = "us-east-1".into(), "IMRS_S3_REGION";
    /// Access key id of the S3 store
    s3_access_key_id: String = String::new(), "IMRS_S3_ACCESS_KEY_ID";
    /// Secret access key of the S3 store
    s3_secret_access_key: String = String::new(), "IMRS_S3_SECRET_ACCESS_KEY";
    /// `on` = virtual-hosted-style requests (bucket in the host name; required by Aliyun OSS)
    s3_virtual_hosted: String = "off".into(), "IMRS_S3_VIRTUAL_HOSTED";
    /// Public URL of the bucket's objects (`https://bucket.oss-cn-hangzhou.aliyuncs.com`, which answers the OSS video poster itself); empty = served through this server, which answers it
    s3_public_url: String = String::new(), "IMRS_S3_PUBLIC_URL";
    /// Hosts (or host:port) the video screenshot may fetch even when they resolve to private addresses, comma-separated
    screenshot_allow_hosts: String = String::new(), "IMRS_SCREENSHOT_ALLOW_HOSTS";
    /// The ffmpeg executable
    ffmpeg_path: String = "ffmpeg".into(), "IMRS_FFMPEG_PATH";
    /// Time limit of one screenshot or poster (download and decoding), seconds
    screenshot_timeout_secs: u64 = 20, "IMRS_SCREENSHOT_TIMEOUT_SECS";
    /// Largest video a screenshot downloads, bytes
    screenshot_max_bytes: u64 = 200 * 1024 * 1024, "IMRS_SCREENSHOT_MAX_BYTES";
    /// Screenshots per user per day (0 disables)
    screenshot_daily_quota: u64 = 200, "IMRS_SCREENSHOT_DAILY_QUOTA";
    /// Days after which screenshots no message refers to are deleted (0 keeps them)
    screenshot_retention_days: u64 = 30, "IMRS_SCREENSHOT_RETENTION_DAYS";
    /// Screenshots one user may run at the same time
    screenshot_concurrency: u64 = 2, "IMRS_SCREENSHOT_CONCURRENCY";
    /// ffmpeg processes this node runs at the same time (screenshots and posters)
    ffmpeg_jobs: u64 = 4, "IMRS_FFMPEG_JOBS";
    /// Redis for cluster mode (`redis://host:6379/0`, `rediss://…`): presence of sockets, the
    /// node-to-node bus and shared rate limits; empty = one embedded node
    redis_url: String = String::new(), "IMRS_REDIS_URL";
    /// This node's id in logs and on the bus (empty = generated: host name, process id, random)
    node_id: String = String::new(), "IMRS_NODE_ID";
    /// Uncached video posters rendered per IP per hour (0 disables)
    poster_ip_limit: u64 = 600, "IMRS_POSTER_IP_LIMIT";
    /// `off` turns the admin console and the admin API off
    admin: String = "on".into(), "IMRS_ADMIN";
    /// Path prefix of the admin console and API (`/admin` → `/admin/…`, `/admin/api/…`)
    admin_prefix: String = "/admin".into(), "IMRS_ADMIN_PREFIX";
    /// Seconds a manager session (cookie or bearer token) lasts after login
    admin_session_secs: u64 = 8 * 3600, "IMRS_ADMIN_SESSION_SECS";
    /// Bearer token that may scrape `/metrics` (a manager's API token may too); empty = managers only
    metrics_token: String = String::new(), "IMRS_METRICS_TOKEN";
}

/// The resolved configuration the server runs with.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Cluster mode: the Redis URL (secret: it may carry a password).
    pub redis_url: Option<SecretString>,
    pub node_id: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub jwt_secret: Option<SecretString>,
    pub visitor_salt: String,
    pub display_tz: FixedOffset,
    /// Zone of the original's local DATETIMEs (LT4 trap 9), used when upgrading its database.
    pub legacy_tz: FixedOffset,
    pub token_ttl_secs: u64,
    pub ended_token_days: u64,
    pub body_limit: usize,
    pub visitor_device_limit: u64,
    pub visitor_window_secs: u64,
    pub per_ip_limits: bool,
    pub visitor_ip_creations: u64,
    pub visitor_ip_requests: u64,
    pub reg_ip_limit: u64,
    pub login_fail_account_limit: u64,
    pub login_fail_ip_limit: u64,
    pub trusted_proxies: Vec<IpNet>,
    pub search_limit: u64,
    pub cors_origins: Vec<String>,
    pub argon2_memory_kib: u32,
    pub send_rate_limit: u64,
    pub reserved_types: Vec<String>,
    pub group_max_members: u64,
    pub group_snapshot_members: u64,
    pub group_join_limit: u64,
    pub group_invite_limit: u64,
    pub ws_ping_secs: u64,
    pub ws_dead_secs: u64,
    pub ws_queue_frames: usize,
    pub ws_user_upgrades: u64,
    pub ws_ip_upgrades: u64,
    pub ws_user_sockets: usize,
    pub media: MediaConfig,
    pub ops: OpsConfig,
}

/// The back office and the operational endpoints (issue 13).
#[derive(Clone)]
pub struct OpsConfig {
    /// `None` when the console and admin API are off.
    pub admin_prefix: Option<String>,
    pub admin_session_secs: u64,
    pub metrics_token: Option<SecretString>,
}

impl Config {
    /// Resolve `cli` (command line + environment) over the optional TOML `file` over the defaults.
    pub fn load(cli: Settings, file: Option<&std::path::Path>) -> anyhow::Result<Config> {
        let from_file = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => Settings::default(),
        };
        Self::from_raw(cli.resolve(from_file))
    }

    /// Defaults only (plus what `f` changes): the starting point of tests and tools.
    pub fn defaults_with(f: impl FnOnce(&mut Settings)) -> anyhow::Result<Config> {
        let mut s = Settings::default();
        f(&mut s);
        Self::from_raw(s.resolve(Settings::default()))
    }

    fn from_raw(r: Raw) -> anyhow::Result<Config> {
        let media = media_config(&r)?;
        let list = |s: &str| -> Vec<String> {
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        };
        let trusted_proxies = list(&r.trusted_proxies)
            .iter()
            .map(|p| {
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                    .with_context(|| format!("IMRS_TRUSTED_PROXIES: bad address {p}"))
            })
            .collect::<anyhow::Result<_>>()?;
        let database_url = if r.database_url.is_empty() {
            format!("sqlite://{}", r.data_dir.join("imrs.db").display())
        } else {
            r.database_url
        };
        Ok(Config {
            listen: r.listen.parse().context("IMRS_LISTEN must be host:port")?,
            data_dir: r.data_dir,
            database_url,
            jwt_secret: (!r.jwt_secret.is_empty()).then(|| SecretString::from(r.jwt_secret)),
            visitor_salt: r.visitor_salt,
            display_tz: crate::time::parse_offset(&r.display_tz)
                .context("IMRS_DISPLAY_TZ must look like +08:00")?,
            legacy_tz: crate::time::parse_offset(&r.legacy_timezone)
                .context("IMRS_LEGACY_TIMEZONE must look like +08:00")?,
            token_ttl_secs: r.token_ttl_secs,
            ended_token_days: r.ended_token_days,
            body_limit: r.body_limit,
            visitor_device_limit: r.visitor_device_limit,
            visitor_window_secs: r.visitor_window_secs.max(1),
            per_ip_limits: !matches!(
                r.per_ip_limits.to_ascii_lowercase().as_str(),
                "off" | "0" | "false" | "no"
            ),
            visitor_ip_creations: r.visitor_ip_creations,
            visitor_ip_requests: r.visitor_ip_requests,
            reg_ip_limit: r.reg_ip_limit,
            login_fail_account_limit: r.login_fail_account_limit,
            login_fail_ip_limit: r.login_fail_ip_limit,
            trusted_proxies,
            search_limit: r.search_limit.max(1),
            cors_origins: list(&r.cors_origins),
            argon2_memory_kib: r.argon2_memory_kib.max(8),
            send_rate_limit: r.send_rate_limit,
            reserved_types: list(&r.reserved_types),
            group_max_members: r.group_max_members.max(1),
            group_snapshot_members: match r.group_snapshot_members {
                0 => r.group_max_members.max(1),
                n => n,
            },
            group_join_limit: r.group_join_limit,
            group_invite_limit: r.group_invite_limit,
            ws_ping_secs: r.ws_ping_secs.max(1),
            ws_dead_secs: r.ws_dead_secs.max(2),
            ws_queue_frames: r.ws_queue_frames.max(16),
            ws_user_upgrades: r.ws_user_upgrades,
            ws_ip_upgrades: r.ws_ip_upgrades,
            ws_user_sockets: r.ws_user_sockets,
            redis_url: (!r.redis_url.is_empty()).then(|| SecretString::from(r.redis_url.clone())),
            node_id: if r.node_id.is_empty() {
                generated_node_id()
            } else {
                r.node_id.clone()
            },
            media,
            ops: OpsConfig {
                admin_prefix: (!off(&r.admin)).then(|| {
                    let p = r.admin_prefix.trim().trim_end_matches('/');
                    if p.starts_with('/') {
                        p.to_string()
                    } else {
                        format!("/{p}")
                    }
                }),
                admin_session_secs: r.admin_session_secs.max(60),
                metrics_token: (!r.metrics_token.is_empty())
                    .then(|| SecretString::from(r.metrics_token)),
            },
        })
    }

    pub fn is_clustered(&self) -> bool {
        self.redis_url.is_some()
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
}

fn off(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "off" | "0" | "false" | "no"
    )
}

/// Uploads, the blob store and the video decoder (MR §5.4–§5.7, S1, S10).
#[derive(Clone)]
pub struct MediaConfig {
    pub store: BlobConfig,
    pub max_upload: u64,
    pub public_base_url: Option<String>,
    pub allow_hosts: Vec<String>,
    pub ffmpeg: String,
    pub timeout: std::time::Duration,
    pub max_video: u64,
    pub daily_quota: u64,
    pub retention_days: u64,
    pub concurrency: usize,
    pub ffmpeg_jobs: usize,
    pub poster_ip_limit: u64,
}

#[derive(Clone)]
pub enum BlobConfig {
    Local { dir: PathBuf },
    S3(S3Config),
}

#[derive(Clone)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub virtual_hosted: bool,
    pub public_url: Option<String>,
}

fn media_config(r: &Raw) -> anyhow::Result<MediaConfig> {
    let non_empty = |s: &str| {
        let s = s.trim().trim_end_matches('/');
        (!s.is_empty()).then(|| s.to_string())
    };
    let on = |s: &str| matches!(s.to_ascii_lowercase().as_str(), "on" | "1" | "true" | "yes");
    let store = match r.blob_store.to_ascii_lowercase().as_str() {
        "local" | "" => BlobConfig::Local {
            dir: non_empty(&r.upload_dir)
                .map(PathBuf::from)
                .unwrap_or_else(|| r.data_dir.join("uploads")),
        },
        "s3" => {
            anyhow::ensure!(
                !r.s3_bucket.is_empty(),
                "IMRS_BLOB_STORE=s3 needs IMRS_S3_BUCKET"
            );
            BlobConfig::S3(S3Config {
                endpoint: non_empty(&r.s3_endpoint),
                bucket: r.s3_bucket.clone(),
                region: r.s3_region.clone(),
                access_key_id: r.s3_access_key_id.clone(),
                secret_access_key: SecretString::from(r.s3_secret_access_key.clone()),
                virtual_hosted: on(&r.s3_virtual_hosted),
                public_url: non_empty(&r.s3_public_url),
            })
        }
        other => anyhow::bail!("IMRS_BLOB_STORE must be local or s3, not {other}"),
    };
    Ok(MediaConfig {
        store,
        max_upload: r.upload_max_bytes.max(1),
        public_base_url: non_empty(&r.public_base_url),
        allow_hosts: r
            .screenshot_allow_hosts
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect(),
        ffmpeg: r.ffmpeg_path.clone(),
        timeout: std::time::Duration::from_secs(r.screenshot_timeout_secs.max(1)),
        max_video: r.screenshot_max_bytes.max(1),
        daily_quota: r.screenshot_daily_quota,
        retention_days: r.screenshot_retention_days,
        concurrency: r.screenshot_concurrency.clamp(1, 64) as usize,
        ffmpeg_jobs: r.ffmpeg_jobs.clamp(1, 256) as usize,
        poster_ip_limit: r.poster_ip_limit,
    })
}

/// `<host>-<pid>-<8 hex>`: unique per process, readable in logs.
fn generated_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    let tag: u32 = rand::random();
    format!("{host}-{}-{tag:08x}", std::process::id())
}
