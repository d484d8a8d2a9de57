//! The `BlobStore` seam (ARCHITECTURE backends table): uploaded files by key (`Diy/chatImgs/…`).
//! Embedded: a local directory served under `/public/uploads/`; shared: S3-compatible object
//! storage (Aliyun OSS, AWS S3, MinIO). Callers stage a file on local disk first, then store it.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::{Attribute, Attributes, GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use secrecy::ExposeSecret;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::config::{BlobConfig, Config, S3Config};

/// A storage key: `/`-separated segments of `[A-Za-z0-9._-]`, none empty or starting with `.`
/// (so `..`, hidden staging directories and encoded separators can never be named).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    pub fn parse(s: &str) -> Option<Key> {
        let valid = !s.is_empty()
            && s.len() <= 512
            && s.split('/').all(|seg| {
                !seg.is_empty()
                    && seg.len() <= 255
                    && !seg.starts_with('.')
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            });
        valid.then(|| Key(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lower-cased extension of the last segment, without the dot.
    pub fn extension(&self) -> Option<String> {
        let name = self.0.rsplit('/').next()?;
        let (_, ext) = name.rsplit_once('.')?;
        Some(ext.to_ascii_lowercase())
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("not found")]
    NotFound,
    #[error("key already taken")]
    Exists,
    #[error("too large")]
    TooLarge,
    #[error("storage: {0:#}")]
    Storage(#[from] anyhow::Error),
}

impl From<std::io::Error> for BlobError {
    fn from(e: std::io::Error) -> Self {
        BlobError::Storage(e.into())
    }
}

impl From<object_store::Error> for BlobError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => BlobError::NotFound,
            e => BlobError::Storage(e.into()),
        }
    }
}

/// What a stored object looks like to HTTP: size and validators.
#[derive(Clone, Debug)]
pub struct BlobMeta {
    pub size: u64,
    pub modified: Option<DateTime<Utc>>,
    /// A strong entity tag, quoted.
    pub etag: String,
}

/// A file a decoder can open: the stored file itself, or a temporary copy (removed on drop).
pub enum LocalFile {
    Stored(PathBuf),
    Copy(tempfile::TempPath),
}

impl LocalFile {
    pub fn path(&self) -> &Path {
        match self {
            LocalFile::Stored(p) => p,
            LocalFile::Copy(t) => t,
        }
    }
}

pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// How a stored object should be answered when read directly from a bucket.
#[derive(Clone, Copy)]
pub struct PutInfo<'a> {
    pub content_type: &'a str,
    pub attachment: bool,
}

pub enum BlobStore {
    Local(LocalBlobs),
    S3(S3Blobs),
}

pub struct LocalBlobs {
    root: PathBuf,
    staging: PathBuf,
}

pub struct S3Blobs {
    store: Arc<dyn ObjectStore>,
    public_url: Option<String>,
    staging: PathBuf,
}

impl BlobStore {
    /// The store of the configuration. Each process stages its uploads in a directory of its own
    /// (`…/<pid>`), so that no command (`imrs admin`, `imrs migrate`, another worker) can break an
    /// upload in progress; a serving process (`serving`) also removes what processes that are no
    /// longer running left behind.
    pub fn from_config(config: &Config, serving: bool) -> anyhow::Result<BlobStore> {
        match &config.media.store {
            BlobConfig::Local { dir } => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating upload directory {}", dir.display()))?;
                let root = dir
                    .canonicalize()
                    .with_context(|| format!("resolving {}", dir.display()))?;
                let staging = staging_dir(&root.join(".staging"), serving)?;
                Ok(BlobStore::Local(LocalBlobs { root, staging }))
            }
            BlobConfig::S3(s3) => {
                let staging = staging_dir(&config.data_dir.join("tmp").join("uploads"), serving)?;
                Ok(BlobStore::S3(S3Blobs {
                    store: Arc::new(s3_client(s3)?),
                    public_url: s3.public_url.clone(),
                    staging,
                }))
            }
        }
    }

    /// Directory for staged uploads and decoder output (same file system as a local store).
    pub fn staging_dir(&self) -> &Path {
        match self {
            BlobStore::Local(l) => &l.staging,
            BlobStore::S3(s) => &s.staging,
        }
    }

    /// A fresh empty staging file (removed on drop unless stored).
    pub fn stage(&self) -> std::io::Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix("up-")
            .tempfile_in(self.staging_dir())
    }

    /// The public URL of an object in the bucket, when the bucket is public (S3 only).
    pub fn object_url(&self, key: &Key) -> Option<String> {
        match self {
            BlobStore::Local(_) => None,
            BlobStore::S3(s) => s.public_url.as_ref().map(|u| format!("{u}/{key}")),
        }
    }

    /// The key of an object URL of the public bucket (the inverse of `object_url`).
    pub fn key_of_object_url(&self, url: &str) -> Option<Key> {
        match self {
            BlobStore::Local(_) => None,
            BlobStore::S3(s) => {
                // The answer's URL had `http:` made `https:` (MR §5.5): compare without scheme.
                let unscheme = |u: &str| u.split_once("://").map(|(_, r)| r.to_string());
                let base = unscheme(s.public_url.as_ref()?)?;
                let rest = unscheme(url)?;
                let rest = rest.strip_prefix(base.as_str())?.strip_prefix('/')?;
                Key::parse(rest.split(['?', '#']).next().unwrap_or(rest))
            }
        }
    }

    /// Store a copy of the staged file `staged` under `key` (the caller removes `staged`). A
    /// local store never replaces an existing file: a taken key answers `Exists`.
    pub async fn put_file(
        &self,
        key: &Key,
        staged: &Path,
        info: PutInfo<'_>,
    ) -> Result<(), BlobError> {
        match self {
            BlobStore::Local(l) => {
                let dest = l.root.join(key.as_str());
                if let Some(dir) = dest.parent() {
                    tokio::fs::create_dir_all(dir).await?;
                }
                // A hard link is the atomic no-clobber rename within the upload root; file
                // systems without links get an exclusive-create copy.
                match tokio::fs::hard_link(staged, &dest).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Err(BlobError::Exists)
                    }
                    Err(_) => copy_new(staged, &dest).await?,
                }
                set_readable(&dest).await;
                Ok(())
            }
            BlobStore::S3(s) => {
                let mut attrs = Attributes::new();
                attrs.insert(Attribute::ContentType, info.content_type.to_string().into());
                attrs.insert(
                    Attribute::CacheControl,
                    "public, max-age=31536000, immutable".into(),
                );
                if info.attachment {
                    attrs.insert(Attribute::ContentDisposition, "attachment".into());
                }
                let mut file = tokio::fs::File::open(staged).await?;
                let path = object_store::path::Path::from(key.as_str());
                // Parts of the S3 minimum size, two in flight: memory per upload stays ~10 MiB.
                let mut w = BufWriter::with_capacity(s.store.clone(), path, 5 * 1024 * 1024)
                    .with_max_concurrency(2)
                    .with_attributes(attrs);
                let copied = async {
                    tokio::io::copy(&mut file, &mut w).await?;
                    w.shutdown().await
                }
                .await;
                if let Err(e) = copied {
                    let _ = w.abort().await;
                    return Err(BlobError::Storage(
                        anyhow::Error::new(e).context("uploading to the bucket"),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Size and validators of a stored object; `None` when there is none.
    pub async fn head(&self, key: &Key) -> Result<Option<BlobMeta>, BlobError> {
        match self {
            BlobStore::Local(l) => {
                let Some(path) = l.existing(key).await else {
                    return Ok(None);
                };
                let md = tokio::fs::metadata(&path).await?;
                let modified = md.modified().ok().map(DateTime::<Utc>::from);
                let nanos = modified
                    .and_then(|m| m.timestamp_nanos_opt())
                    .unwrap_or_default();
                Ok(Some(BlobMeta {
                    size: md.len(),
                    modified,
                    etag: format!("\"{:x}-{:x}\"", md.len(), nanos),
                }))
            }
            BlobStore::S3(s) => {
                let path = object_store::path::Path::from(key.as_str());
                match s.store.head(&path).await {
                    Ok(m) => {
                        let tag = m.e_tag.unwrap_or_else(|| {
                            format!("{:x}-{:x}", m.size, m.last_modified.timestamp())
                        });
                        let etag = if tag.starts_with('"') || tag.starts_with("W/") {
                            tag
                        } else {
                            format!("\"{tag}\"")
                        };
                        Ok(Some(BlobMeta {
                            size: m.size,
                            modified: Some(m.last_modified),
                            etag,
                        }))
                    }
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Keys directly under `prefix` (a `dir/` path) last modified before `cutoff`.
    pub async fn older_than(
        &self,
        prefix: &str,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<Key>, BlobError> {
        match self {
            BlobStore::Local(l) => {
                let mut out = Vec::new();
                let dir = l.root.join(prefix);
                let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
                    return Ok(out);
                };
                while let Some(e) = entries.next_entry().await? {
                    let md = e.metadata().await?;
                    let old = md
                        .modified()
                        .ok()
                        .map(DateTime::<Utc>::from)
                        .is_some_and(|m| m < cutoff);
                    if md.is_file() && old {
                        if let Some(k) = e
                            .file_name()
                            .to_str()
                            .and_then(|n| Key::parse(&format!("{prefix}{n}")))
                        {
                            out.push(k);
                        }
                    }
                }
                Ok(out)
            }
            BlobStore::S3(s) => {
                let path = object_store::path::Path::from(prefix.trim_end_matches('/'));
                let metas: Vec<object_store::ObjectMeta> =
                    s.store.list(Some(&path)).try_collect().await?;
                Ok(metas
                    .into_iter()
                    .filter(|m| m.last_modified < cutoff)
                    .filter_map(|m| Key::parse(m.location.as_ref()))
                    .collect())
            }
        }
    }

    /// Remove a stored object (absent is fine).
    pub async fn delete(&self, key: &Key) -> Result<(), BlobError> {
        match self {
            BlobStore::Local(l) => match tokio::fs::remove_file(l.root.join(key.as_str())).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.into()),
            },
            BlobStore::S3(s) => match s
                .store
                .delete(&object_store::path::Path::from(key.as_str()))
                .await
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// The bytes `range` of a stored object (the range must lie within its size).
    pub async fn read(&self, key: &Key, range: Range<u64>) -> Result<ByteStream, BlobError> {
        match self {
            BlobStore::Local(l) => {
                let path = l.existing(key).await.ok_or(BlobError::NotFound)?;
                let mut file = tokio::fs::File::open(path).await?;
                file.seek(std::io::SeekFrom::Start(range.start)).await?;
                let limited = file.take(range.end.saturating_sub(range.start));
                Ok(tokio_util::io::ReaderStream::with_capacity(limited, 64 * 1024).boxed())
            }
            BlobStore::S3(s) => {
                if range.is_empty() {
                    return Ok(futures::stream::empty().boxed());
                }
                let path = object_store::path::Path::from(key.as_str());
                let opts = GetOptions {
                    range: Some(GetRange::Bounded(range)),
                    ..Default::default()
                };
                let got = s.store.get_opts(&path, opts).await?;
                Ok(got.into_stream().map_err(std::io::Error::other).boxed())
            }
        }
    }

    /// A local file with the object's bytes for a decoder; a bucket object is copied to a
    /// temporary file of at most `max` bytes.
    pub async fn local_file(&self, key: &Key, max: u64) -> Result<LocalFile, BlobError> {
        match self {
            BlobStore::Local(l) => {
                let path = l.existing(key).await.ok_or(BlobError::NotFound)?;
                if tokio::fs::metadata(&path).await?.len() > max {
                    return Err(BlobError::TooLarge);
                }
                Ok(LocalFile::Stored(path))
            }
            BlobStore::S3(s) => {
                let path = object_store::path::Path::from(key.as_str());
                let got = s.store.get(&path).await?;
                if got.meta.size > max {
                    return Err(BlobError::TooLarge);
                }
                let tmp = self.stage()?;
                let mut file = tokio::fs::File::from_std(tmp.reopen()?);
                let mut stream = got.into_stream();
                let mut written = 0u64;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk?;
                    written += chunk.len() as u64;
                    if written > max {
                        return Err(BlobError::TooLarge);
                    }
                    file.write_all(&chunk).await?;
                }
                file.flush().await?;
                Ok(LocalFile::Copy(tmp.into_temp_path()))
            }
        }
    }
}

impl LocalBlobs {
    /// The file of `key`, if it exists and — symlinks resolved — lies under the upload root.
    async fn existing(&self, key: &Key) -> Option<PathBuf> {
        let real = tokio::fs::canonicalize(self.root.join(key.as_str()))
            .await
            .ok()?;
        let md = tokio::fs::metadata(&real).await.ok()?;
        (real.starts_with(&self.root) && md.is_file()).then_some(real)
    }
}

async fn copy_new(from: &Path, to: &Path) -> Result<(), BlobError> {
    let mut out = match tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .await
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(BlobError::Exists),
        Err(e) => return Err(e.into()),
    };
    let copied = async {
        let mut src = tokio::fs::File::open(from).await?;
        tokio::io::copy(&mut src, &mut out).await?;
        out.sync_all().await
    }
    .await;
    if let Err(e) = copied {
        let _ = tokio::fs::remove_file(to).await;
        return Err(e.into());
    }
    Ok(())
}

/// Stored files readable by a front proxy too (temporary files are created owner-only).
async fn set_readable(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).await;
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// This process's staging directory under `parent`, emptied; with `serving`, the directories of
/// processes that have ended (and files of the earlier flat layout) are removed too.
fn staging_dir(parent: &Path, serving: bool) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let me = std::process::id();
    if serving {
        for entry in std::fs::read_dir(parent)?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let ended = match name.parse::<u32>() {
                Ok(pid) => pid != me && !process_alive(pid),
                Err(_) => true,
            };
            if ended {
                let path = entry.path();
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
    }
    let dir = parent.join(me.to_string());
    reset_dir(&dir)?;
    Ok(dir)
}

/// Whether a process with this id runs (Linux: `/proc/<pid>`; elsewhere assumed running).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

fn reset_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn s3_client(c: &S3Config) -> anyhow::Result<object_store::aws::AmazonS3> {
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&c.bucket)
        .with_region(&c.region)
        .with_virtual_hosted_style_request(c.virtual_hosted);
    if !c.access_key_id.is_empty() {
        b = b
            .with_access_key_id(&c.access_key_id)
            .with_secret_access_key(c.secret_access_key.expose_secret());
    }
    if let Some(ep) = &c.endpoint {
        let ep = if c.virtual_hosted {
            bucket_endpoint(ep, &c.bucket)?
        } else {
            ep.clone()
        };
        b = b
            .with_allow_http(ep.starts_with("http://"))
            .with_endpoint(ep);
    }
    b.build().context("configuring the S3 store")
}

/// Virtual-hosted style needs the bucket in the endpoint's host (`bucket.oss-cn-hangzhou.…`);
/// accept the region endpoint too and add it.
fn bucket_endpoint(endpoint: &str, bucket: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(endpoint).context("IMRS_S3_ENDPOINT is not a URL")?;
    let host = url
        .host_str()
        .context("IMRS_S3_ENDPOINT has no host")?
        .to_string();
    if !host.starts_with(&format!("{bucket}.")) {
        url.set_host(Some(&format!("{bucket}.{host}")))
            .context("IMRS_S3_ENDPOINT: bad host")?;
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_or_hide() {
        for bad in [
            "",
            "..",
            "a/../b",
            "a//b",
            "/a",
            "a/",
            ".staging/x",
            "a/.x",
            "a%2F..",
            "a\\b",
            "a b",
            "图片/x.png",
            "a\0b",
        ] {
            assert!(Key::parse(bad).is_none(), "{bad:?} must be refused");
        }
        let k = Key::parse("Diy/chatImgs/20250310/1710038202074_99501763.PNG").expect("valid");
        assert_eq!(k.extension().as_deref(), Some("png"));
    }

    #[test]
    fn virtual_hosted_endpoints_carry_the_bucket() {
        let e = bucket_endpoint("https://oss-cn-hangzhou.aliyuncs.com", "b1").expect("url");
        assert_eq!(e, "https://b1.oss-cn-hangzhou.aliyuncs.com");
        let e = bucket_endpoint("https://b1.oss-cn-hangzhou.aliyuncs.com/", "b1").expect("url");
        assert_eq!(e, "https://b1.oss-cn-hangzhou.aliyuncs.com");
    }
}
