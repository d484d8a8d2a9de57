//! Media rules (MR §5.4–§5.7, S1–S3, S9, S10): which files are accepted and under which names,
//! the video screenshot of API 三十一 and the `x-oss-process` poster of stored videos.

pub mod fetch;
pub mod frame;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::blob::{BlobError, BlobMeta, Key, LocalFile, PutInfo};
use crate::config::Config;
use crate::error::Error;
use crate::state::AppState;
use frame::{FrameError, ImageFormat};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Image,
    Audio,
    Video,
    Archive,
}

/// The accepted extensions (MR §5.4, MA13) with their family and served Content-Type.
const TYPES: &[(&str, Family, &str)] = &[
    ("jpg", Family::Image, "image/jpeg"),
    ("jpeg", Family::Image, "image/jpeg"),
    ("png", Family::Image, "image/png"),
    ("gif", Family::Image, "image/gif"),
    ("bmp", Family::Image, "image/bmp"),
    ("webp", Family::Image, "image/webp"),
    ("tif", Family::Image, "image/tiff"),
    ("psd", Family::Image, "image/vnd.adobe.photoshop"),
    ("mp3", Family::Audio, "audio/mpeg"),
    ("aac", Family::Audio, "audio/aac"),
    ("m4a", Family::Audio, "audio/mp4"),
    ("wav", Family::Audio, "audio/wav"),
    ("amr", Family::Audio, "audio/amr"),
    ("mp4", Family::Video, "video/mp4"),
    ("mov", Family::Video, "video/quicktime"),
    ("avi", Family::Video, "video/x-msvideo"),
    ("webm", Family::Video, "video/webm"),
    ("m4v", Family::Video, "video/x-m4v"),
    ("3gp", Family::Video, "video/3gpp"),
    ("zip", Family::Archive, "application/zip"),
    ("gz", Family::Archive, "application/gzip"),
    ("tgz", Family::Archive, "application/gzip"),
    ("gzip", Family::Archive, "application/gzip"),
];

fn file_type(ext: &str) -> Option<(Family, &'static str)> {
    TYPES
        .iter()
        .find(|(e, _, _)| *e == ext)
        .map(|(_, f, ct)| (*f, *ct))
}

/// Content-Type of a stored file and whether it must be downloaded rather than shown (MR §5.7):
/// archives and anything not on the list (files of older systems) are attachments.
pub fn served_type(key: &Key) -> (&'static str, bool) {
    match key.extension().as_deref().and_then(file_type) {
        Some((Family::Archive, ct)) => (ct, true),
        Some((_, ct)) => (ct, false),
        None => ("application/octet-stream", true),
    }
}

fn is_video(key: &Key) -> bool {
    matches!(
        key.extension().as_deref().and_then(file_type),
        Some((Family::Video, _))
    )
}

/// `:diydir` of API 三十 (1): `^[A-Za-z0-9_-]{1,50}$`, checked on the raw path segment.
pub fn valid_diydir(s: &str) -> bool {
    (1..=50).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The family the leading bytes belong to; `None` for anything else (HTML, scripts, text…).
fn sniff(head: &[u8]) -> Option<Family> {
    use infer::MatcherType;
    let found = infer::get(head).and_then(|k| match k.matcher_type() {
        MatcherType::Image => Some(Family::Image),
        MatcherType::Audio => Some(Family::Audio),
        MatcherType::Video => Some(Family::Video),
        MatcherType::Archive => Some(Family::Archive),
        _ => None,
    });
    // Any ISO base media brand, any EBML (webm/matroska: browsers' MediaRecorder writes headers
    // `infer` does not recognise, and H5 records webm), and MPEG audio frames without an ID3 tag.
    found.or_else(|| match head {
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => Some(Family::Video),
        [0x1A, 0x45, 0xDF, 0xA3, ..] => Some(Family::Video),
        [0xFF, b, ..] if b & 0xE0 == 0xE0 => Some(Family::Audio),
        _ => None,
    })
}

/// Audio and video share containers (an `.m4a` is an mp4), so they accept each other.
fn content_matches(ext: Family, head: &[u8]) -> bool {
    match sniff(head) {
        Some(found) if found == ext => true,
        Some(Family::Audio | Family::Video) => matches!(ext, Family::Audio | Family::Video),
        _ => false,
    }
}

/// The lower-cased extension of a client file name (any directory part ignored).
fn extension_of(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    base.rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
}

/// Where an upload goes: API 三十 (1) `Diy/<diydir>/…` or API 三十 (2) `images/…`.
#[derive(Clone, Copy)]
pub enum Dest<'a> {
    Diy(&'a str),
    Images,
}

#[derive(Debug, PartialEq, Eq)]
pub enum UploadError {
    NoFile,
    /// API 三十 (2): the first file part is not named `img`.
    WrongField(String),
    BadName(String),
    TooLarge,
    Storage,
    /// The token of a multipart body's `token` field failed authentication (its AF §3.4 text).
    Unauthorized(String),
}

impl UploadError {
    /// The upload library's reason texts (MR §5.4, §5.5).
    pub fn reason(&self) -> String {
        match self {
            UploadError::NoFile => "Can't found upload file".into(),
            UploadError::WrongField(f) => format!("Expected field 'img', but got '{f}'"),
            UploadError::BadName(n) => format!("Invalid filename: {n}"),
            UploadError::TooLarge => "Request file too large, please check multipart config".into(),
            UploadError::Storage => "storage error".into(),
            UploadError::Unauthorized(t) => t.clone(),
        }
    }
}

pub struct Saved {
    pub key: Key,
    /// Unix seconds.
    pub created: i64,
}

/// Bytes looked at to recognise the content.
const SNIFF_BYTES: usize = 512;

/// Stream one uploaded file to a staging file (size limit, content check from the bytes), then
/// store it under a fresh server-made name. `chunks` reports a body over the limit as `TooLarge`.
pub async fn save_upload<S>(
    st: &AppState,
    dest: Dest<'_>,
    client_name: &str,
    mut chunks: S,
) -> Result<Saved, UploadError>
where
    S: Stream<Item = Result<Bytes, UploadError>> + Unpin,
{
    let bad_name = || UploadError::BadName(client_name.chars().take(255).collect());
    let ext = extension_of(client_name).ok_or_else(bad_name)?;
    let (family, content_type) = file_type(&ext).ok_or_else(bad_name)?;
    let max = st.config.media.max_upload;
    let staged = st.blobs.stage().map_err(storage)?;
    let mut file = tokio::fs::File::from_std(staged.reopen().map_err(storage)?);
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    let mut size = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        if size > max {
            return Err(UploadError::TooLarge);
        }
        if head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
            if head.len() == SNIFF_BYTES && !content_matches(family, &head) {
                return Err(bad_name());
            }
        }
        file.write_all(&chunk).await.map_err(storage)?;
    }
    if !content_matches(family, &head) {
        return Err(bad_name());
    }
    file.flush().await.map_err(storage)?;
    drop(file);
    let staged = staged.into_temp_path();
    let info = PutInfo {
        content_type,
        attachment: family == Family::Archive,
    };
    let key = store_new(st, &staged, info, |rng, day, ms| match dest {
        Dest::Diy(dir) => format!(
            "Diy/{dir}/{day}/{ms}_{:08}.{ext}",
            rng.gen_range(0..100_000_000u32)
        ),
        Dest::Images => format!(
            "images/{day}/{ms}_{}.{ext}",
            hex::encode(rng.gen::<[u8; 6]>())
        ),
    })
    .await
    .map_err(|_| UploadError::Storage)?;
    Ok(Saved {
        key,
        created: chrono::Utc::now().timestamp(),
    })
}

fn storage(e: std::io::Error) -> UploadError {
    tracing::error!(error = %e, "staging an upload failed");
    UploadError::Storage
}

/// Store `staged` under a name from `name(rng, YYYYMMDD, ms)`; a name already taken (same
/// millisecond and same random part) is drawn again.
async fn store_new(
    st: &AppState,
    staged: &Path,
    info: PutInfo<'_>,
    name: impl Fn(&mut rand::rngs::OsRng, &str, i64) -> String,
) -> Result<Key, BlobError> {
    let mut last = BlobError::Exists;
    for _ in 0..5 {
        let now = chrono::Utc::now();
        let day = now.with_timezone(&st.config.display_tz).format("%Y%m%d");
        let text = name(
            &mut rand::rngs::OsRng,
            &day.to_string(),
            now.timestamp_millis(),
        );
        let key = Key::parse(&text)
            .ok_or_else(|| BlobError::Storage(anyhow::anyhow!("generated a bad key {text}")))?;
        match st.blobs.put_file(&key, staged, info).await {
            Ok(()) => return Ok(key),
            Err(BlobError::Exists) => continue,
            Err(e) => {
                tracing::error!(error = %e, key = %key, "storing a file failed");
                last = e;
                break;
            }
        }
    }
    Err(last)
}

/// The absolute URL API 三十 (2) answers: the bucket's public URL with its first `http:` made
/// `https:`, else this server's `/public/uploads/…` under the configured (or requested) base.
pub fn absolute_url(st: &AppState, key: &Key, request_base: impl FnOnce() -> String) -> String {
    if let Some(u) = st.blobs.object_url(key) {
        return u.replacen("http:", "https:", 1);
    }
    let base = st
        .config
        .media
        .public_base_url
        .clone()
        .unwrap_or_else(request_base);
    format!("{base}/public/uploads/{key}")
}

// ----- decoder jobs -----

/// Decoder bookkeeping of this node: the cap on ffmpeg processes, screenshots running per user,
/// and the poster cache directory.
pub struct Media {
    decoder: tokio::sync::Semaphore,
    running: Mutex<HashMap<i64, usize>>,
    posters: PathBuf,
}

impl Media {
    /// With `serving`, temporary poster files left by an interrupted decoder (older than an hour,
    /// so never one that a running process is still writing) are removed.
    pub fn new(config: &Config, serving: bool) -> anyhow::Result<Media> {
        let posters = config.data_dir.join("cache").join("posters");
        std::fs::create_dir_all(&posters)?;
        let stale = |e: &std::fs::DirEntry| {
            e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(3600))
        };
        for entry in std::fs::read_dir(&posters)?.flatten() {
            if serving && entry.file_name().to_string_lossy().starts_with(".tmp") && stale(&entry) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Media {
            decoder: tokio::sync::Semaphore::new(config.media.ffmpeg_jobs),
            running: Mutex::new(HashMap::new()),
            posters,
        })
    }

    fn user_slot(&self, user: i64, limit: usize) -> Option<UserSlot<'_>> {
        let mut running = self.running.lock();
        let n = running.entry(user).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(UserSlot { media: self, user })
    }
}

struct UserSlot<'a> {
    media: &'a Media,
    user: i64,
}

impl Drop for UserSlot<'_> {
    fn drop(&mut self) {
        let mut running = self.media.running.lock();
        if let Some(n) = running.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.user);
            }
        }
    }
}

// ----- API 三十一 -----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShotFormat {
    Png,
    Jpg,
    Jpeg,
}

impl ShotFormat {
    pub fn parse(s: &str) -> Option<ShotFormat> {
        match s {
            "png" => Some(ShotFormat::Png),
            "jpg" => Some(ShotFormat::Jpg),
            "jpeg" => Some(ShotFormat::Jpeg),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ShotFormat::Png => "png",
            ShotFormat::Jpg => "jpg",
            ShotFormat::Jpeg => "jpeg",
        }
    }

    fn image(self) -> ImageFormat {
        match self {
            ShotFormat::Png => ImageFormat::Png,
            ShotFormat::Jpg | ShotFormat::Jpeg => ImageFormat::Jpeg,
        }
    }
}

pub struct ShotRequest {
    pub video_url: String,
    pub time_ms: u64,
    pub width: Option<u32>,
    pub format: ShotFormat,
}

pub struct Shot {
    pub key: Key,
    /// `data:image/<format>;base64,…`
    pub data_url: String,
}

fn shot_fail(reason: &str) -> Error {
    Error::fail(format!("截图处理失败: {reason}"))
}

/// API 三十一 after parameter validation: quota, per-user concurrency, the source (stored file
/// or vetted download), one frame within the time limit, stored as a screenshot.
pub async fn screenshot(st: &AppState, user: i64, req: &ShotRequest) -> Result<Shot, Error> {
    let m = &st.config.media;
    let quota_key = format!("screenshot:{user}");
    if m.daily_quota > 0 && st.limiter.count(&quota_key).await >= m.daily_quota {
        return Err(shot_fail("quota exceeded"));
    }
    let _slot = st
        .media
        .user_slot(user, m.concurrency)
        .ok_or_else(|| shot_fail("too many screenshots at once"))?;
    let out = st
        .blobs
        .stage()
        .map_err(|e| Error::Internal(e.into()))?
        .into_temp_path();
    let work = async {
        let _permit = st.media.decoder.acquire().await;
        let input = source(st, &req.video_url).await?;
        frame::extract(
            &m.ffmpeg,
            input.path(),
            req.time_ms,
            req.width,
            req.format.image(),
            &out,
        )
        .await
        .map_err(|e| match e {
            FrameError::NoFrame => Error::fail("截图生成失败"),
            FrameError::Failed => shot_fail("ffmpeg failed"),
        })
    };
    tokio::time::timeout(m.timeout, work)
        .await
        .map_err(|_| shot_fail("timeout"))??;
    let bytes = tokio::fs::read(&out)
        .await
        .map_err(|e| Error::Internal(e.into()))?;
    let data_url = format!(
        "data:image/{};base64,{}",
        req.format.name(),
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    );
    let info = PutInfo {
        content_type: match req.format.image() {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
        },
        attachment: false,
    };
    let ext = req.format.name();
    let key = store_new(st, &out, info, |rng, _, ms| {
        let tag: String = (0..6)
            .map(|_| char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[rng.gen_range(0..36)]))
            .collect();
        format!("Diy/VideoScreenshot/screenshot_{ms}_{tag}.{ext}")
    })
    .await
    .map_err(|_| shot_fail("storage error"))?;
    st.limiter
        .hit(&quota_key, Duration::from_secs(24 * 3600))
        .await;
    Ok(Shot { key, data_url })
}

/// The key of a `/public/uploads/…` URL (any host, or a bare path) or of a public bucket URL.
fn stored_key(st: &AppState, video_url: &str) -> Option<Key> {
    if let Some(k) = st.blobs.key_of_object_url(video_url) {
        return Some(k);
    }
    let path = if video_url.starts_with('/') {
        video_url.to_string()
    } else {
        let u = reqwest::Url::parse(video_url).ok()?;
        if !matches!(u.scheme(), "http" | "https") {
            return None;
        }
        u.path().to_string()
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    Key::parse(path.strip_prefix("/public/uploads/")?)
}

/// MR §5.6 step 1: a stored video is read from the store; anything else is downloaded under S1.
async fn source(st: &AppState, video_url: &str) -> Result<LocalFile, Error> {
    let m = &st.config.media;
    let not_allowed = || shot_fail("video url not allowed");
    if let Some(key) = stored_key(st, video_url) {
        let found = st.blobs.head(&key).await.map_err(|e| {
            tracing::error!(error = %e, "reading the store failed");
            shot_fail("storage error")
        })?;
        if found.is_some() {
            if !is_video(&key) {
                return Err(not_allowed());
            }
            return st
                .blobs
                .local_file(&key, m.max_video)
                .await
                .map_err(|e| match e {
                    BlobError::TooLarge => shot_fail("video too large"),
                    BlobError::NotFound => not_allowed(),
                    e => {
                        tracing::error!(error = %e, "reading a stored video failed");
                        shot_fail("storage error")
                    }
                });
        }
    }
    let tmp = st.blobs.stage().map_err(|e| Error::Internal(e.into()))?;
    let mut file = tokio::fs::File::from_std(tmp.reopen().map_err(|e| Error::Internal(e.into()))?);
    let policy = fetch::Policy {
        allow_hosts: &m.allow_hosts,
        max_bytes: m.max_video,
    };
    fetch::download(video_url, &policy, &mut file)
        .await
        .map_err(|e| match e {
            fetch::FetchError::NotAllowed => not_allowed(),
            fetch::FetchError::TooLarge => shot_fail("video too large"),
            fetch::FetchError::Failed => shot_fail("video download failed"),
        })?;
    Ok(LocalFile::Copy(tmp.into_temp_path()))
}

// ----- MR §5.7 poster -----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PosterSpec {
    pub time_ms: u64,
    pub width: Option<u32>,
    pub format: ImageFormat,
}

/// An `x-oss-process` value: `None` when it is not a video snapshot (the file itself is served),
/// `Some(None)` for a snapshot with bad parameters. `t_` and `f_` are required, as on OSS.
pub fn parse_snapshot(value: &str) -> Option<Option<PosterSpec>> {
    let params = match value.strip_prefix("video/snapshot")? {
        "" => "",
        rest => rest.strip_prefix(',')?,
    };
    let (mut time_ms, mut width, mut format) = (None, None, None);
    let num = |v: &str| -> Option<u64> {
        (!v.is_empty() && v.len() <= 12 && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse().ok())
            .flatten()
    };
    for part in params.split(',').filter(|p| !p.is_empty()) {
        let Some((name, v)) = part.split_once('_') else {
            return Some(None);
        };
        let ok = match name {
            "t" => num(v).map(|t| time_ms = Some(t)).is_some(),
            "w" => match num(v) {
                Some(0) => true,
                Some(w @ 1..=3840) => {
                    width = Some(w as u32);
                    true
                }
                _ => false,
            },
            "h" => num(v).is_some(),
            "m" => v == "fast",
            "ar" => v == "auto" || v == "h" || v == "w",
            "f" => match v {
                "png" => {
                    format = Some(ImageFormat::Png);
                    true
                }
                "jpg" => {
                    format = Some(ImageFormat::Jpeg);
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if !ok {
            return Some(None);
        }
    }
    Some(time_ms.zip(format).map(|(time_ms, format)| PosterSpec {
        time_ms,
        width,
        format,
    }))
}

pub enum PosterError {
    NotFound,
    Limited,
}

/// A cached frame of a stored video for `spec` (rendered on first request): the image file and its
/// Content-Type.
pub async fn poster(
    st: &AppState,
    key: &Key,
    meta: &BlobMeta,
    spec: &PosterSpec,
    ip: IpAddr,
) -> Result<(PathBuf, &'static str), PosterError> {
    if !is_video(key) {
        return Err(PosterError::NotFound);
    }
    let (ext, ctype) = match spec.format {
        ImageFormat::Png => ("png", "image/png"),
        ImageFormat::Jpeg => ("jpg", "image/jpeg"),
    };
    let id = Sha256::digest(format!(
        "{key}\n{}\n{}\n{:?}\n{ext}",
        meta.etag, spec.time_ms, spec.width
    ));
    let name = format!("{}.{ext}", hex::encode(id));
    let path = st.media.posters.join(&name);
    if is_file(&path).await {
        return Ok((path, ctype));
    }
    let m = &st.config.media;
    if st.config.per_ip_limits
        && !st
            .limiter
            .try_hit(
                &format!("poster:{ip}"),
                m.poster_ip_limit,
                Duration::from_secs(3600),
            )
            .await
    {
        return Err(PosterError::Limited);
    }
    let _one = st.locks.lock(&format!("poster:{name}")).await;
    if is_file(&path).await {
        return Ok((path, ctype));
    }
    let tmp = tempfile::Builder::new()
        .tempfile_in(&st.media.posters)
        .map_err(|_| PosterError::NotFound)?
        .into_temp_path();
    let work = async {
        let _permit = st.media.decoder.acquire().await;
        let input = st.blobs.local_file(key, m.max_video).await.ok()?;
        frame::extract(
            &m.ffmpeg,
            input.path(),
            spec.time_ms,
            spec.width,
            spec.format,
            &tmp,
        )
        .await
        .ok()
    };
    match tokio::time::timeout(m.timeout, work).await {
        Ok(Some(())) => {}
        _ => return Err(PosterError::NotFound),
    }
    tmp.persist(&path).map_err(|_| PosterError::NotFound)?;
    Ok((path, ctype))
}

async fn is_file(p: &Path) -> bool {
    tokio::fs::metadata(p).await.is_ok_and(|m| m.is_file())
}

/// S10: screenshots older than the retention that no stored message mentions are deleted.
/// Returns how many were removed.
pub async fn sweep_screenshots(st: &AppState, retention_days: u64) -> anyhow::Result<usize> {
    if retention_days == 0 {
        return Ok(0);
    }
    let cutoff = chrono::Utc::now() - chrono::Duration::days(retention_days as i64);
    let mut removed = 0;
    for key in st.blobs.older_than("Diy/VideoScreenshot/", cutoff).await? {
        let name = key
            .as_str()
            .rsplit('/')
            .next()
            .unwrap_or(key.as_str())
            .to_string();
        if !crate::store::timeline::mentions(&st.db, &name).await? {
            st.blobs.delete(&key).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diydir_is_a_plain_name() {
        for ok in ["chatImgs", "chatVideos", "avatars", "a_b-C9"] {
            assert!(valid_diydir(ok), "{ok}");
        }
        for bad in ["", "..", "a/b", "..%2F..", "a.b", "图片", &"x".repeat(51)] {
            assert!(!valid_diydir(bad), "{bad}");
        }
    }

    #[test]
    fn content_must_match_the_extension_family() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert!(content_matches(Family::Image, png));
        assert!(!content_matches(Family::Video, png));
        assert!(!content_matches(
            Family::Image,
            b"<html><script>alert(1)</script>"
        ));
        assert!(!content_matches(Family::Image, b""));
        let mp4 = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom";
        assert!(content_matches(Family::Video, mp4));
        // webm as Chrome's MediaRecorder writes it (EBML header, unknown-size segment).
        let webm = b"\x1a\x45\xdf\xa3\x01\x00\x00\x00\x00\x00\x00\x1fB\x86\x81\x01B\xf7\x81\x01";
        assert!(content_matches(Family::Video, webm));
        assert!(
            content_matches(Family::Audio, mp4),
            "an m4a is an mp4 container"
        );
        assert!(content_matches(Family::Audio, b"ID3\x04\0\0\0\0\0\0"));
    }

    #[test]
    fn snapshot_queries() {
        let spec = parse_snapshot("video/snapshot,t_20,m_fast,w_260,f_png");
        assert_eq!(
            spec,
            Some(Some(PosterSpec {
                time_ms: 20,
                width: Some(260),
                format: ImageFormat::Png
            }))
        );
        assert_eq!(
            parse_snapshot("video/snapshot,t_0,w_0,f_jpg")
                .flatten()
                .map(|s| s.width),
            Some(None)
        );
        assert_eq!(parse_snapshot("image/resize,w_100"), None);
        for bad in [
            "video/snapshot,t_20,w_4000,f_png",
            "video/snapshot,t_20,f_gif",
            "video/snapshot,t_x,f_png",
            "video/snapshot,w_10",
            "video/snapshot,t_1,f_png,zz_1",
        ] {
            assert_eq!(parse_snapshot(bad), Some(None), "{bad}");
        }
    }

    #[test]
    fn client_extensions() {
        assert_eq!(extension_of("C:\\a\\b.PNG").as_deref(), Some("png"));
        assert_eq!(extension_of("noext"), None);
        assert_eq!(extension_of("a.tar.gz").as_deref(), Some("gz"));
    }
}
