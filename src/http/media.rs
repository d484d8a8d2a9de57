//! Media routes (MR §5.4–§5.7): the two multipart uploads (streamed), API 三十一, and the public
//! `/public/uploads/…` files with Range requests and the `x-oss-process` video poster.

use std::ops::Range;

use axum::body::Body;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{Multipart, RawPathParams, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::IntoResponse;
use bytes::Bytes;
use futures::Stream;
use serde_json::{json, Value};

use super::auth::{Auth, UploadAuth};
use super::params::{parse_query, In, Params};
use super::{ok, ApiResult, ClientIp};
use crate::blob::{BlobMeta, Key};
use crate::error::Error;
use crate::services::media::{self, Dest, PosterError, ShotFormat, ShotRequest, UploadError};
use crate::state::AppState;

/// The request body limit of the upload routes: the file limit plus room for the other parts.
pub fn body_limit(st: &AppState) -> usize {
    usize::try_from(st.config.media.max_upload)
        .unwrap_or(usize::MAX)
        .saturating_add(1024 * 1024)
}

/// API 三十 (1): `POST /api/chat/uploadStreamSingleToServerDiy/:diydir`.
pub async fn upload_diy(
    State(st): State<AppState>,
    auth: UploadAuth,
    path: RawPathParams,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult {
    let dir = path
        .iter()
        .find(|(k, _)| *k == "diydir")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    if !media::valid_diydir(&dir) {
        return Err(Error::fail("上传目录不合法"));
    }
    let Ok(mut mp) = multipart else {
        return Err(Error::fail(UploadError::NoFile.reason()));
    };
    let saved = receive(&st, &mut mp, Dest::Diy(&dir), auth).await;
    drain(&mut mp).await;
    match saved {
        Err(UploadError::Unauthorized(t)) => Err(Error::fail(t)),
        Ok((saved, _)) => Ok(ok(json!({"url": format!("/public/uploads/{}", saved.key)}))),
        Err(e @ UploadError::TooLarge) => {
            Err(Error::Status(StatusCode::PAYLOAD_TOO_LARGE, e.reason()))
        }
        Err(UploadError::Storage) => Err(Error::Status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error".into(),
        )),
        Err(e) => Err(Error::fail(e.reason())),
    }
}

/// API 三十 (2): `POST /api/chat/uploadAliyun` (every failure 400 `上传失败: <reason>`).
pub async fn upload_aliyun(
    State(st): State<AppState>,
    auth: UploadAuth,
    uri: Uri,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult {
    let failed = |e: UploadError| Error::fail(format!("上传失败: {}", e.reason()));
    let Ok(mut mp) = multipart else {
        return Err(failed(UploadError::NoFile));
    };
    let saved = receive(&st, &mut mp, Dest::Images, auth).await;
    drain(&mut mp).await;
    let (saved, field_class) = saved.map_err(|e| match e {
        UploadError::Unauthorized(t) => Error::fail(t),
        e => failed(e),
    })?;
    let image_class_id = parse_query(uri.query().unwrap_or(""))
        .get("imageClassId")
        .map(|v| int_or_zero(v))
        .or(field_class)
        .unwrap_or(0);
    let url = media::absolute_url(&st, &saved.key, || request_base(&headers));
    Ok(ok(json!([{
        "url": url,
        "path": saved.key.as_str(),
        "image_class_id": image_class_id,
        "create_time": saved.created,
    }])))
}

fn int_or_zero(v: &str) -> i64 {
    v.parse().unwrap_or(0)
}

/// `http://<Host>` when no public base URL is configured (a well-formed Host only).
fn request_base(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        })
        .map(|h| format!("http://{h}"))
        .unwrap_or_default()
}

/// Read the parts up to the first file part and hand its bytes to the service. For API 三十 (2)
/// the file part must be `img` and an `imageClassId` text part before it is kept.
async fn receive(
    st: &AppState,
    mp: &mut Multipart,
    dest: Dest<'_>,
    mut auth: UploadAuth,
) -> Result<(media::Saved, Option<i64>), UploadError> {
    let images = matches!(dest, Dest::Images);
    let mut class = None;
    loop {
        let Some(mut field) = mp.next_field().await.map_err(part_error)? else {
            if let UploadAuth::Deferred(_) = auth {
                return Err(UploadError::Unauthorized(
                    "您没有权限访问即时通讯接口".into(),
                ));
            }
            return Err(UploadError::NoFile);
        };
        let name = field.name().unwrap_or("").to_string();
        if let (UploadAuth::Deferred(d), None, "token") = (&auth, field.file_name(), name.as_str())
        {
            let token = token_text(&mut field).await;
            d.check(st, token)
                .await
                .map_err(|e| UploadError::Unauthorized(e.status_and_text().1.into_owned()))?;
            auth = UploadAuth::Ready;
            continue;
        }
        if field.file_name().is_some() {
            if let UploadAuth::Deferred(_) = auth {
                // The file comes before any token field: nothing is stored for an unknown caller.
                return Err(UploadError::Unauthorized(
                    "您没有权限访问即时通讯接口".into(),
                ));
            }
        }
        let Some(file_name) = field.file_name().map(str::to_string) else {
            if images && (name == "imageClassId" || name == "image_class_id") {
                class = Some(small_text(&mut field).await.map_or(0, |v| int_or_zero(&v)));
            }
            continue;
        };
        if images && name != "img" {
            return Err(UploadError::WrongField(name));
        }
        let saved = media::save_upload(st, dest, &file_name, Box::pin(chunks(field))).await?;
        return Ok((saved, class));
    }
}

fn chunks(field: Field<'_>) -> impl Stream<Item = Result<Bytes, UploadError>> + '_ {
    futures::stream::unfold(field, |mut f| async move {
        match f.chunk().await {
            Ok(Some(b)) => Some((Ok(b), f)),
            Ok(None) => None,
            Err(e) => Some((Err(part_error(e)), f)),
        }
    })
}

fn part_error(e: MultipartError) -> UploadError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        UploadError::TooLarge
    } else {
        UploadError::NoFile
    }
}

/// The `token` text part (`None` when empty or past 2 KiB).
async fn token_text(field: &mut Field<'_>) -> Option<String> {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = field.chunk().await {
        buf.extend_from_slice(&chunk);
        if buf.len() > 2048 {
            return None;
        }
    }
    String::from_utf8(buf)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A short text part (`None` past 64 bytes).
async fn small_text(field: &mut Field<'_>) -> Option<String> {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = field.chunk().await {
        buf.extend_from_slice(&chunk);
        if buf.len() > 64 {
            return None;
        }
    }
    String::from_utf8(buf).ok().map(|s| s.trim().to_string())
}

/// Read what the client still sends (bounded by the body limit), so that it reads the answer
/// instead of a reset connection.
async fn drain(mp: &mut Multipart) {
    while let Ok(Some(mut field)) = mp.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

/// API 三十一: `POST /api/chat/getVideoScreenshot` (all failures 400, checked in table order).
pub async fn screenshot(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let video_url = match p.raw(In::Body, "videoUrl") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(Error::fail("视频地址不能为空")),
    };
    let time = p
        .int(In::Body, "time", "时间点")
        .min(0)
        .opt()
        .ok_or_else(|| Error::fail("时间点参数无效"))?;
    let width = match p.raw(In::Body, "width") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(_) => match p.int(In::Body, "width", "图片宽度").opt() {
            Some(0) => None,
            Some(w @ 1..=3840) => u32::try_from(w).ok(),
            _ => return Err(Error::fail("图片宽度应在1-3840之间")),
        },
    };
    let format = match p.raw(In::Body, "format") {
        None | Some(Value::Null) => ShotFormat::Png,
        Some(Value::String(s)) if s.is_empty() => ShotFormat::Png,
        Some(Value::String(s)) => {
            ShotFormat::parse(&s).ok_or_else(|| Error::fail("截图处理失败: unsupported format"))?
        }
        Some(_) => return Err(Error::fail("截图处理失败: unsupported format")),
    };
    let req = ShotRequest {
        video_url,
        time_ms: u64::try_from(time).unwrap_or(0),
        width,
        format,
    };
    let shot = media::screenshot(&st, auth.id(), &req).await?;
    Ok(ok(json!({
        "base64": shot.data_url,
        "url": format!("/public/uploads/{}", shot.key),
        "format": format.name(),
        "time": time,
        "width": width.map_or(json!("原始宽度"), |w| json!(w)),
    })))
}

// ----- MR §5.7 -----

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `GET /public/uploads/<key>`: the stored file (Range, validators), or with
/// `x-oss-process=video/snapshot,…` a frame of a stored video.
pub async fn public_file(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    // The raw path: percent-encoded bytes are never part of a key, so encoded separators and
    // dot segments cannot name a file.
    let key = uri
        .path()
        .strip_prefix("/public/uploads/")
        .and_then(Key::parse)
        .ok_or(Error::NotFound)?;
    let meta = st
        .blobs
        .head(&key)
        .await
        .map_err(|e| Error::Internal(e.into()))?
        .ok_or(Error::NotFound)?;
    let process = parse_query(uri.query().unwrap_or(""))
        .get("x-oss-process")
        .and_then(|v| media::parse_snapshot(v));
    if let Some(spec) = process {
        let spec = spec.ok_or(Error::NotFound)?;
        let (path, ctype) =
            media::poster(&st, &key, &meta, &spec, ip)
                .await
                .map_err(|e| match e {
                    PosterError::NotFound => Error::NotFound,
                    PosterError::Limited => Error::Status(
                        StatusCode::TOO_MANY_REQUESTS,
                        "请求过于频繁，请稍后再试".into(),
                    ),
                })?;
        let bytes = tokio::fs::read(&path).await.map_err(|_| Error::NotFound)?;
        return Ok((
            [
                (header::CONTENT_TYPE, ctype),
                (header::CACHE_CONTROL, IMMUTABLE),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            bytes,
        )
            .into_response());
    }
    serve(&st, &key, &meta, &headers).await
}

async fn serve(st: &AppState, key: &Key, meta: &BlobMeta, req: &HeaderMap) -> ApiResult {
    let (ctype, attachment) = media::served_type(key);
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if attachment {
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment"),
        );
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    if let Ok(v) = HeaderValue::from_str(&meta.etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(m) = meta.modified {
        let date = m.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        if let Ok(v) = HeaderValue::from_str(&date) {
            h.insert(header::LAST_MODIFIED, v);
        }
    }
    let text = |name| req.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    if text(header::IF_NONE_MATCH).is_some_and(|v| etag_listed(v, &meta.etag)) {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    let if_range_ok = text(header::IF_RANGE).is_none_or(|v| v.trim() == meta.etag);
    let size = meta.size;
    let (status, range) = match text(header::RANGE).filter(|_| if_range_ok) {
        None => (StatusCode::OK, 0..size),
        Some(r) => match parse_range(r, size) {
            Ranged::Whole => (StatusCode::OK, 0..size),
            Ranged::Part(r) => (StatusCode::PARTIAL_CONTENT, r),
            Ranged::Unsatisfiable => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
                return Ok((StatusCode::RANGE_NOT_SATISFIABLE, h).into_response());
            }
        },
    };
    if status == StatusCode::PARTIAL_CONTENT {
        let cr = format!("bytes {}-{}/{size}", range.start, range.end - 1);
        if let Ok(v) = HeaderValue::from_str(&cr) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(range.end - range.start),
    );
    let body = st
        .blobs
        .read(key, range)
        .await
        .map_err(|e| Error::Internal(e.into()))?;
    Ok((status, h, Body::from_stream(body)).into_response())
}

fn etag_listed(list: &str, etag: &str) -> bool {
    list.split(',').any(|t| {
        let t = t.trim();
        t == "*" || t.trim_start_matches("W/") == etag.trim_start_matches("W/")
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Ranged {
    Whole,
    Part(Range<u64>),
    Unsatisfiable,
}

/// One `bytes=` range of RFC 9110 §14.1.2; several ranges or a malformed header are ignored
/// (the whole file is sent), as the RFC allows.
fn parse_range(header: &str, size: u64) -> Ranged {
    let Some(spec) = header
        .trim()
        .strip_prefix("bytes=")
        .filter(|s| !s.contains(','))
    else {
        return Ranged::Whole;
    };
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (num(a), num(b), b.is_empty()) {
        (None, Some(n), _) if a.is_empty() => {
            if n == 0 || size == 0 {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part(size - n.min(size)..size)
            }
        }
        (Some(start), None, true) => {
            if start >= size {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part(start..size)
            }
        }
        (Some(start), Some(end), _) if start <= end => {
            if start >= size {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part(start..end.min(size - 1) + 1)
            }
        }
        _ => Ranged::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ranged::Part(0..10));
        assert_eq!(parse_range("bytes=90-", 100), Ranged::Part(90..100));
        assert_eq!(parse_range("bytes=-10", 100), Ranged::Part(90..100));
        assert_eq!(parse_range("bytes=-1000", 100), Ranged::Part(0..100));
        assert_eq!(parse_range("bytes=50-1000", 100), Ranged::Part(50..100));
        assert_eq!(parse_range("bytes=100-", 100), Ranged::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Ranged::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), Ranged::Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ranged::Whole);
        assert_eq!(parse_range("items=0-1", 100), Ranged::Whole);
        assert_eq!(parse_range("bytes=x-1", 100), Ranged::Whole);
    }
}
