//! Media (MR §5.4–§5.7, S1–S3, §11 checks 12–13): uploads round-trip on the local store and, when
//! `IMRS_TEST_S3_ENDPOINT` names an S3-compatible server (moto in CI), on the S3 store; refusals;
//! the video screenshot against a local HTTP server on the allow-list; the SSRF refusals.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

use crate::common::{spawn_with, Resp, TestApp, UNLIMITED_USERSET};

const NOT_ALLOWED: &str = "截图处理失败: video url not allowed";
const TOO_LARGE: &str = "Request file too large, please check multipart config";
/// The upload limit of these tests (the default is 50 MiB).
const MAX: usize = 256 * 1024;

// ----- helpers -----

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

fn png_width(bytes: &[u8]) -> u32 {
    image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .expect("a decodable PNG")
        .width()
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("imrs-media-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A 2-second 320x240 test video made by ffmpeg.
fn make_video(dir: &Path) -> Vec<u8> {
    let out = dir.join("v.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
        ])
        .args(["-i", "testsrc=duration=2:size=320x240:rate=10"])
        .args(["-pix_fmt", "yuv420p", "-y"])
        .arg(&out)
        .status()
        .expect("ffmpeg is installed (apt-get install ffmpeg)");
    assert!(status.success(), "ffmpeg made the test video");
    std::fs::read(out).expect("video")
}

/// Decode a JPEG with ffmpeg and return its width.
fn jpeg_width(dir: &Path, bytes: &[u8]) -> u32 {
    assert_eq!(&bytes[..2], b"\xFF\xD8", "JPEG magic");
    let f = dir.join(format!("{}.jpg", uuid::Uuid::new_v4().simple()));
    std::fs::write(&f, bytes).expect("write jpeg");
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=width,codec_name", "-of", "csv=p=0"])
        .arg(&f)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (codec, width) = text.split_once(',').expect("codec,width");
    assert_eq!(codec, "mjpeg", "{text}");
    let decoded = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&f)
        .args(["-f", "null", "-"])
        .status()
        .expect("ffmpeg");
    assert!(decoded.success(), "the JPEG decodes");
    width.parse().expect("width")
}

async fn resp(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Resp { status, body }
}

/// A multipart upload as the client sends it: header `token`, text field `token`, one file part.
async fn upload(
    app: &TestApp,
    path: &str,
    token: &str,
    field: &str,
    name: &str,
    bytes: Vec<u8>,
) -> Resp {
    let form = Form::new()
        .text("token", token.to_string())
        .text("imageClassId", "0")
        .part(
            field.to_string(),
            Part::bytes(bytes).file_name(name.to_string()),
        );
    let r = app
        .http
        .post(app.url(path))
        .header("token", token)
        .multipart(form)
        .send()
        .await
        .expect("upload request");
    resp(r).await
}

async fn upload_diy(app: &TestApp, token: &str, dir: &str, name: &str, bytes: Vec<u8>) -> Resp {
    let path = format!("/api/chat/uploadStreamSingleToServerDiy/{dir}");
    upload(app, &path, token, "file", name, bytes).await
}

async fn upload_aliyun(app: &TestApp, token: &str, name: &str, bytes: Vec<u8>) -> Resp {
    upload(app, "/api/chat/uploadAliyun", token, "img", name, bytes).await
}

async fn fetch(app: &TestApp, url: &str) -> reqwest::Response {
    let url = if url.starts_with('/') {
        app.url(url)
    } else {
        url.to_string()
    };
    app.http.get(url).send().await.expect("fetch")
}

async fn screenshot(app: &TestApp, token: &str, body: Value) -> Resp {
    app.post("/api/chat/getVideoScreenshot", Some(token), body)
        .await
}

/// An HTTP server on 127.0.0.1 serving the video at `/v.mp4` and a redirect to
/// `http://localhost:<port>/v.mp4` at `/to-localhost`.
async fn video_server(video: Vec<u8>) -> SocketAddr {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route(
            "/v.mp4",
            get(move || async move { ([("content-type", "video/mp4")], video) }),
        )
        .route(
            "/to-localhost",
            get(move || async move {
                (
                    axum::http::StatusCode::FOUND,
                    [(
                        "location",
                        format!("http://localhost:{}/v.mp4", addr.port()),
                    )],
                )
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn limits(s: &mut imrs::config::Settings) {
    s.upload_max_bytes = Some(MAX as u64);
}

async fn spawn_local() -> TestApp {
    spawn_with(limits).await
}

static S3_WARN: std::sync::Once = std::sync::Once::new();

/// The S3-compatible endpoint of the test run, if any (loudly reported when missing).
fn s3_endpoint() -> Option<String> {
    let url = std::env::var("IMRS_TEST_S3_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty());
    if url.is_none() {
        S3_WARN.call_once(|| {
            eprintln!("!!! IMRS_TEST_S3_ENDPOINT is not set: the S3 blob store tests are SKIPPED (local store only) !!!")
        });
    }
    url.map(|u| u.trim_end_matches('/').to_string())
}

/// A server on the S3 store with a fresh bucket (`public_url`: objects' public base, if any).
async fn spawn_s3(endpoint: &str, public: bool) -> TestApp {
    let bucket = format!("imrs-t-{}", uuid::Uuid::new_v4().simple());
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("S3 endpoint reachable");
    assert!(
        created.status().is_success(),
        "bucket created: {}",
        created.status()
    );
    let endpoint = endpoint.to_string();
    spawn_with(move |s| {
        limits(s);
        s.blob_store = Some("s3".into());
        s.s3_public_url = public.then(|| format!("{endpoint}/{bucket}"));
        s.s3_endpoint = Some(endpoint);
        s.s3_bucket = Some(bucket);
        s.s3_region = Some("us-east-1".into());
        s.s3_access_key_id = Some("testing".into());
        s.s3_secret_access_key = Some("testing".into());
    })
    .await
}

// ----- scenarios, run on each store -----

async fn uploads_round_trip(app: &TestApp) {
    let (_, token, _) = app.register("media01").await;
    let bytes = png(40, 30);
    let r = upload_diy(app, &token, "chatImgs", "photo.PNG", bytes.clone()).await;
    let url = r.ok()["url"].as_str().expect("url").to_string();
    let rest = url
        .strip_prefix("/public/uploads/Diy/chatImgs/")
        .expect("server-relative URL");
    let (day, name) = rest.split_once('/').expect("day/name");
    assert!(
        day.len() == 8 && day.bytes().all(|b| b.is_ascii_digit()),
        "{url}"
    );
    let (ms, tail) = name.split_once('_').expect("ms_random");
    assert!(
        ms.len() >= 13 && ms.bytes().all(|b| b.is_ascii_digit()),
        "{url}"
    );
    assert_eq!(tail.len(), 12, "8 digits + .png: {url}");
    assert!(
        tail.ends_with(".png") && tail[..8].bytes().all(|b| b.is_ascii_digit()),
        "{url}"
    );

    let got = fetch(app, &url).await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(got.headers()["x-content-type-options"], "nosniff");
    assert!(got.headers()["cache-control"]
        .to_str()
        .expect("ascii")
        .contains("max-age"));
    let etag = got.headers()["etag"].clone();
    assert_eq!(got.bytes().await.expect("bytes").as_ref(), bytes.as_slice());

    let part = app
        .http
        .get(app.url(&url))
        .header("range", "bytes=4-13")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 4-13/{}", bytes.len()).as_str()
    );
    assert_eq!(part.bytes().await.expect("bytes").as_ref(), &bytes[4..14]);
    let past = app
        .http
        .get(app.url(&url))
        .header("range", format!("bytes={}-", bytes.len()))
        .send()
        .await
        .expect("range");
    assert_eq!(past.status(), 416);
    let cached = app
        .http
        .get(app.url(&url))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("conditional");
    assert_eq!(cached.status(), 304);

    // The same bytes again get another name.
    let again = upload_diy(app, &token, "chatImgs", "photo.png", bytes.clone()).await;
    assert_ne!(again.ok()["url"], json!(url));

    // API 三十 (2): absolute URL, `path`, `image_class_id` from the query, seconds.
    let form = Form::new()
        .text("token", token.clone())
        .part("img", Part::bytes(bytes.clone()).file_name("a.png"));
    let r = resp(
        app.http
            .post(app.url("/api/chat/uploadAliyun?imageClassId=3"))
            .header("token", &token)
            .multipart(form)
            .send()
            .await
            .expect("upload"),
    )
    .await;
    let d = r.ok()[0].clone();
    let path = d["path"].as_str().expect("path");
    assert!(path.starts_with("images/") && path.ends_with(".png"), "{d}");
    assert_eq!(
        path.rsplit('_').next().map(str::len),
        Some(16),
        "12 hex + .png: {d}"
    );
    assert_eq!(d["image_class_id"], 3);
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now - d["create_time"].as_i64().expect("seconds")).abs() < 60,
        "{d}"
    );
    let url = d["url"].as_str().expect("url");
    assert!(url.starts_with("http") && url.ends_with(path), "{d}");
    let got = fetch(app, url.replacen("https:", "http:", 1).as_str()).await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.expect("bytes").as_ref(), bytes.as_slice());

    // A visitor may upload too (AF §3.5).
    let visitor = app.visitor(&crate::common::device_id()).await;
    let vt = visitor["token"].as_str().expect("visitor token");
    upload_diy(app, vt, "avatars", "me.png", png(8, 8))
        .await
        .ok();
}

async fn bad_uploads_are_refused(app: &TestApp) {
    let (_, token, _) = app.register("media02").await;
    for dir in [
        "..%2F..",
        "%2e%2e%2fetc",
        "a.b",
        "chat%00",
        "%E5%9B%BE",
        &"x".repeat(51),
    ] {
        upload_diy(app, &token, dir, "a.png", png(4, 4))
            .await
            .fails(400, "上传目录不合法");
    }
    upload_diy(app, &token, "chatImgs", "x.html", b"<html></html>".to_vec())
        .await
        .fails(400, "Invalid filename: x.html");
    upload_diy(app, &token, "chatImgs", "x.svg", b"<svg/>".to_vec())
        .await
        .fails(400, "Invalid filename: x.svg");
    let html = b"<html><script>alert(document.cookie)</script></html>".to_vec();
    upload_diy(app, &token, "chatImgs", "evil.png", html)
        .await
        .fails(400, "Invalid filename: evil.png");
    upload_diy(app, &token, "chatImgs", "empty.png", Vec::new())
        .await
        .fails(400, "Invalid filename: empty.png");
    upload_diy(app, &token, "chatVideos", "fake.mp4", png(4, 4))
        .await
        .fails(400, "Invalid filename: fake.mp4");
    let mut big = png(4, 4);
    big.resize(MAX + 1, 0);
    upload_diy(app, &token, "chatImgs", "big.png", big.clone())
        .await
        .fails(413, TOO_LARGE);
    upload_aliyun(app, &token, "big.png", big)
        .await
        .fails(400, &format!("上传失败: {TOO_LARGE}"));
    let mut exact = png(4, 4);
    exact.resize(MAX, 0);
    upload_diy(app, &token, "chatImgs", "exact.png", exact)
        .await
        .ok();

    upload(
        app,
        "/api/chat/uploadAliyun",
        &token,
        "file",
        "a.png",
        png(4, 4),
    )
    .await
    .fails(400, "上传失败: Expected field 'img', but got 'file'");
    let only_text = Form::new().text("token", token.clone());
    let r = app
        .http
        .post(app.url("/api/chat/uploadStreamSingleToServerDiy/chatImgs"))
        .header("token", &token)
        .multipart(only_text)
        .send()
        .await
        .expect("request");
    resp(r).await.fails(400, "Can't found upload file");
    app.post(
        "/api/chat/uploadAliyun",
        Some(&token),
        json!({"img": "not a file"}),
    )
    .await
    .fails(400, "上传失败: Can't found upload file");

    // Without a token nothing is stored.
    let form = Form::new().part("file", Part::bytes(png(4, 4)).file_name("a.png"));
    let r = app
        .http
        .post(app.url("/api/chat/uploadStreamSingleToServerDiy/chatImgs"))
        .multipart(form)
        .send()
        .await
        .expect("request");
    resp(r).await.fails(400, "您没有权限访问即时通讯接口");

    for path in [
        "/public/uploads/..%2F..%2Fimrs.db",
        "/public/uploads/%2e%2e/imrs.db",
        "/public/uploads/Diy%2F..%2F..%2Fjwt_secret",
        "/public/uploads/.staging/x",
        "/public/uploads/Diy/chatImgs/none.png",
        "/public/uploads/",
    ] {
        let r = resp(fetch(app, path).await).await;
        r.fails(404, "404 错误");
    }
}

async fn video_poster(app: &TestApp, dir: &Path) {
    let (_, token, _) = app.register("media03").await;
    let video = make_video(dir);
    let r = upload_aliyun(app, &token, "clip.mp4", video.clone()).await;
    let url = r.ok()[0]["url"]
        .as_str()
        .expect("url")
        .replacen("https:", "http:", 1);
    let plain = fetch(app, &url).await;
    assert_eq!(plain.headers()["content-type"], "video/mp4");
    assert_eq!(plain.bytes().await.expect("bytes").len(), video.len());

    for _ in 0..2 {
        let got = fetch(
            app,
            &format!("{url}?x-oss-process=video/snapshot,t_20,m_fast,w_260,f_png"),
        )
        .await;
        assert_eq!(got.status(), 200);
        assert_eq!(got.headers()["content-type"], "image/png");
        assert_eq!(png_width(&got.bytes().await.expect("bytes")), 260);
    }
    let got = fetch(
        app,
        &format!("{url}?x-oss-process=video/snapshot,t_500,w_0,f_jpg"),
    )
    .await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "image/jpeg");
    assert_eq!(jpeg_width(dir, &got.bytes().await.expect("bytes")), 320);

    for bad in [
        "video/snapshot,t_20,w_5000,f_png",
        "video/snapshot,t_20,f_gif",
        "video/snapshot,t_99999,f_png",
    ] {
        let r = resp(fetch(app, &format!("{url}?x-oss-process={bad}")).await).await;
        r.fails(404, "404 错误");
    }
    let other = fetch(app, &format!("{url}?x-oss-process=image/resize,w_100")).await;
    assert_eq!(other.headers()["content-type"], "video/mp4");

    let img = upload_aliyun(app, &token, "a.png", png(10, 10)).await;
    let img_url = img.ok()[0]["url"]
        .as_str()
        .expect("url")
        .replacen("https:", "http:", 1);
    let r = resp(
        fetch(
            app,
            &format!("{img_url}?x-oss-process=video/snapshot,t_0,f_png"),
        )
        .await,
    )
    .await;
    r.fails(404, "404 错误");
}

async fn screenshot_of_a_stored_video(app: &TestApp, dir: &Path) {
    let (_, token, _) = app.register("media04").await;
    let r = upload_diy(app, &token, "chatVideos", "clip.mp4", make_video(dir)).await;
    let url = r.ok()["url"].as_str().expect("url").to_string();
    // The client sends the absolute URL; a bare path works too.
    for video_url in [app.url(&url), url.clone()] {
        let r = screenshot(
            app,
            &token,
            json!({"videoUrl": video_url, "time": 20, "width": 260, "format": "png"}),
        )
        .await;
        let d = r.ok();
        assert_eq!(
            (d["time"].clone(), d["width"].clone(), d["format"].clone()),
            (json!(20), json!(260), json!("png"))
        );
        let b64 = d["base64"].as_str().expect("base64");
        let raw = b64
            .strip_prefix("data:image/png;base64,")
            .expect("png data URL");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .expect("base64");
        assert_eq!(png_width(&bytes), 260);
        let shot = d["url"].as_str().expect("url");
        assert!(
            shot.starts_with("/public/uploads/Diy/VideoScreenshot/screenshot_")
                && shot.ends_with(".png"),
            "{d}"
        );
        let stored = fetch(app, shot).await;
        assert_eq!(stored.status(), 200);
        assert_eq!(
            stored.bytes().await.expect("bytes").as_ref(),
            bytes.as_slice()
        );
    }
    screenshot(
        app,
        &token,
        json!({"videoUrl": url, "time": 60000, "width": 260}),
    )
    .await
    .fails(400, "截图生成失败");
}

// ----- local store -----

#[tokio::test]
async fn uploads_round_trip_on_the_local_store() {
    let app = spawn_local().await;
    uploads_round_trip(&app).await;
    // Files land under the upload root, nowhere else.
    let root = app.data_dir.join("uploads");
    assert!(root.join("Diy").join("chatImgs").is_dir());
    assert!(root.join("images").is_dir());
}

#[tokio::test]
async fn traversal_bad_content_empty_and_oversized_files_are_refused() {
    let app = spawn_local().await;
    bad_uploads_are_refused(&app).await;
}

#[tokio::test]
async fn stored_videos_answer_the_oss_poster_query() {
    let app = spawn_local().await;
    video_poster(&app, &temp_dir()).await;
}

#[tokio::test]
async fn screenshot_of_an_uploaded_video() {
    let app = spawn_local().await;
    screenshot_of_a_stored_video(&app, &temp_dir()).await;
}

#[tokio::test]
async fn screenshot_parameters_are_checked_in_order() {
    let app = spawn_local().await;
    let (_, token, _) = app.register("media05").await;
    let url = "http://example.invalid/x.mp4";
    screenshot(&app, &token, json!({"time": 20}))
        .await
        .fails(400, "视频地址不能为空");
    screenshot(&app, &token, json!({"videoUrl": "", "time": 20}))
        .await
        .fails(400, "视频地址不能为空");
    screenshot(&app, &token, json!({"videoUrl": url}))
        .await
        .fails(400, "时间点参数无效");
    screenshot(&app, &token, json!({"videoUrl": url, "time": -1}))
        .await
        .fails(400, "时间点参数无效");
    screenshot(&app, &token, json!({"videoUrl": url, "time": "1.5"}))
        .await
        .fails(400, "时间点参数无效");
    for w in [json!(4000), json!(-5), json!("abc")] {
        screenshot(
            &app,
            &token,
            json!({"videoUrl": url, "time": 20, "width": w}),
        )
        .await
        .fails(400, "图片宽度应在1-3840之间");
    }
    screenshot(
        &app,
        &token,
        json!({"videoUrl": url, "time": 20, "format": "gif"}),
    )
    .await
    .fails(400, "截图处理失败: unsupported format");
    screenshot(
        &app,
        &token,
        json!({"videoUrl": url, "time": 20, "format": "../../x"}),
    )
    .await
    .fails(400, "截图处理失败: unsupported format");
    let r = app
        .post_form(
            "/api/chat/getVideoScreenshot",
            Some(&token),
            &[
                ("videoUrl", "file:///etc/passwd"),
                ("time", "20"),
                ("width", ""),
            ],
        )
        .await;
    r.fails(400, NOT_ALLOWED);
}

#[tokio::test]
async fn screenshot_of_a_remote_video_on_the_allow_list() {
    let dir = temp_dir();
    let server = video_server(make_video(&dir)).await;
    let app = spawn_with(|s| s.screenshot_allow_hosts = Some("127.0.0.1".into())).await;
    let (_, token, _) = app.register("media06").await;
    let src = format!("http://127.0.0.1:{}/v.mp4", server.port());

    let r = screenshot(
        &app,
        &token,
        json!({"videoUrl": src, "time": 20, "width": 260, "format": "png"}),
    )
    .await;
    let raw = r.ok()["base64"].as_str().expect("base64").to_string();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.strip_prefix("data:image/png;base64,").expect("png"))
        .expect("base64");
    assert_eq!(png_width(&bytes), 260);

    let r = screenshot(
        &app,
        &token,
        json!({"videoUrl": src, "time": "500", "width": "120", "format": "jpg"}),
    )
    .await;
    let d = r.ok();
    assert_eq!(
        (d["time"].clone(), d["width"].clone(), d["format"].clone()),
        (json!(500), json!(120), json!("jpg"))
    );
    let raw = d["base64"].as_str().expect("base64");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(
            raw.strip_prefix("data:image/jpg;base64,")
                .expect("image/jpg, as the original"),
        )
        .expect("base64");
    assert_eq!(jpeg_width(&dir, &bytes), 120);
    assert!(d["url"].as_str().expect("url").ends_with(".jpg"));

    let r = screenshot(
        &app,
        &token,
        json!({"videoUrl": src, "time": 0, "width": 0}),
    )
    .await;
    assert_eq!(r.ok()["width"], "原始宽度");
    let raw = r.ok()["base64"].as_str().expect("base64").to_string();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.strip_prefix("data:image/png;base64,").expect("png"))
        .expect("base64");
    assert_eq!(png_width(&bytes), 320);

    // A redirect to a host that is not on the list is vetted again and refused.
    let hop = format!("http://127.0.0.1:{}/to-localhost", server.port());
    screenshot(&app, &token, json!({"videoUrl": hop, "time": 20}))
        .await
        .fails(400, NOT_ALLOWED);
    let missing = format!("http://127.0.0.1:{}/none.mp4", server.port());
    screenshot(&app, &token, json!({"videoUrl": missing, "time": 20}))
        .await
        .fails(400, "截图处理失败: video download failed");
}

#[tokio::test]
async fn screenshot_refuses_private_and_non_http_sources() {
    let dir = temp_dir();
    let server = video_server(make_video(&dir)).await;
    let app = spawn_local().await;
    let (_, token, _) = app.register("media07").await;
    let port = server.port();
    for url in [
        format!("http://127.0.0.1:{port}/v.mp4"),
        format!("http://localhost:{port}/v.mp4"),
        format!("http://[::1]:{port}/v.mp4"),
        format!("http://127.0.0.1:{port}/to-localhost"),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://10.0.0.1/x.mp4".into(),
        "http://172.16.5.4/x.mp4".into(),
        "http://192.168.1.1/x.mp4".into(),
        "http://100.64.0.1/x.mp4".into(),
        "http://0.0.0.0/x.mp4".into(),
        "http://[::ffff:127.0.0.1]/x.mp4".into(),
        "file:///etc/passwd".into(),
        format!("gopher://127.0.0.1:{port}/_x"),
        "ftp://example.com/x.mp4".into(),
        "concat:/etc/passwd|/etc/hosts".into(),
        "/etc/passwd".into(),
        "/public/uploads/../../imrs.db".into(),
        "not a url".into(),
    ] {
        screenshot(&app, &token, json!({"videoUrl": url, "time": 20}))
            .await
            .fails(400, NOT_ALLOWED);
    }
}

#[tokio::test]
async fn screenshot_quota_per_user() {
    let app = spawn_with(|s| {
        limits(s);
        s.screenshot_daily_quota = Some(1);
    })
    .await;
    let dir = temp_dir();
    let (_, token, _) = app.register("media08").await;
    let r = upload_diy(&app, &token, "chatVideos", "clip.mp4", make_video(&dir)).await;
    let url = r.ok()["url"].as_str().expect("url").to_string();
    screenshot(&app, &token, json!({"videoUrl": url, "time": 20}))
        .await
        .ok();
    screenshot(&app, &token, json!({"videoUrl": url, "time": 20}))
        .await
        .fails(400, "截图处理失败: quota exceeded");
    let (_, other, _) = app.register("media09").await;
    screenshot(&app, &other, json!({"videoUrl": url, "time": 20}))
        .await
        .ok();
}

// ----- S3 store (moto in CI) -----

#[tokio::test]
async fn uploads_round_trip_on_the_s3_store() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let app = spawn_s3(&endpoint, false).await;
    uploads_round_trip(&app).await;
    assert!(
        !app.data_dir.join("uploads").join("Diy").exists(),
        "nothing stored locally"
    );
}

#[tokio::test]
async fn bad_uploads_are_refused_on_the_s3_store() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let app = spawn_s3(&endpoint, false).await;
    bad_uploads_are_refused(&app).await;
}

#[tokio::test]
async fn posters_and_screenshots_on_the_s3_store() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let app = spawn_s3(&endpoint, false).await;
    let dir = temp_dir();
    video_poster(&app, &dir).await;
    screenshot_of_a_stored_video(&app, &dir).await;
}

#[tokio::test]
async fn public_bucket_urls_point_at_the_bucket() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let app = spawn_s3(&endpoint, true).await;
    let (_, token, _) = app.register("media10").await;
    let bytes = png(12, 12);
    let r = upload_aliyun(&app, &token, "a.png", bytes.clone()).await;
    let d = r.ok()[0].clone();
    let url = d["url"].as_str().expect("url");
    let plain = endpoint.replacen("http:", "https:", 1);
    assert!(
        url.starts_with(&plain),
        "object-storage URLs are https: {url}"
    );
    assert!(url.ends_with(d["path"].as_str().expect("path")), "{d}");
    // The object sits in the bucket under `path`, with the Content-Type a bucket serves it with.
    use object_store::ObjectStoreExt;
    let bucket = url
        .strip_prefix(&format!("{plain}/"))
        .and_then(|r| r.split('/').next())
        .expect("bucket in the URL");
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .expect("S3 client");
    let got = store
        .get(&object_store::path::Path::from(
            d["path"].as_str().expect("path"),
        ))
        .await
        .expect("object stored");
    assert_eq!(
        got.attributes
            .get(&object_store::Attribute::ContentType)
            .map(|v| v.as_ref()),
        Some("image/png")
    );
    assert_eq!(got.bytes().await.expect("bytes").as_ref(), bytes.as_slice());

    // A screenshot of a video given by its bucket URL is read from the store, not fetched.
    let dir = temp_dir();
    let v = upload_aliyun(&app, &token, "clip.mp4", make_video(&dir)).await;
    let vurl = v.ok()[0]["url"].as_str().expect("url").to_string();
    let r = screenshot(
        &app,
        &token,
        json!({"videoUrl": vurl, "time": 20, "width": 100}),
    )
    .await;
    assert_eq!(r.ok()["width"], 100);
}

/// POST a multipart form without the `token` header.
async fn post_form_only(app: &TestApp, path: &str, form: Form) -> Resp {
    let r = app
        .http
        .post(app.url(path))
        .multipart(form)
        .send()
        .await
        .expect("request");
    resp(r).await
}

#[tokio::test]
async fn the_token_may_come_as_a_multipart_text_field_before_the_file() {
    let app = spawn_local().await;
    let (_, token, _) = app.register("mptoken1").await;
    let diy = "/api/chat/uploadStreamSingleToServerDiy/chatImgs";
    let form = Form::new()
        .text("token", token.clone())
        .part("file", Part::bytes(png(4, 4)).file_name("a.png"));
    let r = post_form_only(&app, diy, form).await;
    assert!(r.ok()["url"]
        .as_str()
        .is_some_and(|u| u.starts_with("/public/uploads/Diy/chatImgs/")));
    let form = Form::new()
        .text("token", token.clone())
        .part("img", Part::bytes(png(4, 4)).file_name("a.png"));
    let r = post_form_only(&app, "/api/chat/uploadAliyun", form).await;
    assert!(r.ok()[0]["url"].as_str().is_some());
    // A bad token field gets the auth text; a token after the file stores nothing.
    let form = Form::new()
        .text("token", "garbage")
        .part("file", Part::bytes(png(4, 4)).file_name("a.png"));
    post_form_only(&app, diy, form)
        .await
        .fails(400, "Token 令牌不合法！");
    let form = Form::new()
        .part("file", Part::bytes(png(4, 4)).file_name("a.png"))
        .text("token", token.clone());
    post_form_only(&app, diy, form)
        .await
        .fails(400, "您没有权限访问即时通讯接口");
}

#[tokio::test]
async fn old_screenshots_no_message_mentions_are_swept() {
    let app = spawn_local().await;
    let (a, ta, _) = app.register("sweeper1").await;
    let dir = app.data_dir.join("uploads/Diy/VideoScreenshot");
    std::fs::create_dir_all(&dir).expect("dir");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 24 * 3600);
    for name in [
        "screenshot_1_keep01.png",
        "screenshot_2_gone01.png",
        "screenshot_3_new001.png",
    ] {
        let f = std::fs::File::create(dir.join(name)).expect("file");
        if name != "screenshot_3_new001.png" {
            f.set_modified(old).expect("mtime");
        }
    }
    let unlimited = UNLIMITED_USERSET;
    app.post(
        "/api/chat/userset",
        Some(&ta),
        json!({"userset": unlimited}),
    )
    .await
    .ok();
    let body = json!({"sendto_id": a, "chatType": "single", "type": "image",
        "data": {"data": "http://h/public/uploads/Diy/VideoScreenshot/screenshot_1_keep01.png", "dataType": "image", "otherData": null}});
    app.post("/api/chat/socket/sendmessage", Some(&ta), body)
        .await
        .ok();
    let removed = imrs::services::media::sweep_screenshots(&app.state, 30)
        .await
        .expect("sweep");
    assert_eq!(removed, 1);
    assert!(
        dir.join("screenshot_1_keep01.png").exists(),
        "referenced by a message"
    );
    assert!(
        !dir.join("screenshot_2_gone01.png").exists(),
        "old and unreferenced"
    );
    assert!(dir.join("screenshot_3_new001.png").exists(), "recent");
}

/// A webm as H5 records it (VP8 in an EBML container, the header MediaRecorder writes too).
fn make_webm(dir: &Path) -> Vec<u8> {
    let out = dir.join("clip.webm");
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=1:size=160x120:rate=10",
        ])
        .args(["-c:v", "libvpx", "-f", "webm", "-y"])
        .arg(&out)
        .status()
        .expect("ffmpeg is installed (apt-get install ffmpeg)");
    assert!(status.success(), "ffmpeg made the webm");
    let mut bytes = std::fs::read(out).expect("webm");
    // Browsers' MediaRecorder writes the EBML header size as an 8-byte number (ffmpeg: 1 byte):
    // rewrite it that way; the file stays valid.
    assert_eq!(&bytes[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
    let size = bytes[4];
    assert!(size & 0x80 != 0, "ffmpeg wrote a one-byte size");
    let long = [0x01, 0, 0, 0, 0, 0, 0, size & 0x7F];
    bytes.splice(4..5, long);
    bytes
}

/// H5 records webm: both upload routes take `clip.webm`, it is served as video/webm, and its
/// screenshot works.
#[tokio::test]
async fn webm_videos_upload_on_both_routes_and_have_screenshots() {
    let app = spawn_local().await;
    let dir = temp_dir();
    let (_, token, _) = app.register("webm0001").await;
    let webm = make_webm(&dir);
    assert_eq!(&webm[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
    let r = upload_diy(&app, &token, "chatVideos", "clip.webm", webm.clone()).await;
    let url = r.ok()["url"].as_str().expect("url").to_string();
    assert!(url.ends_with(".webm"), "{url}");
    let stored = fetch(&app, &url).await;
    assert_eq!(stored.status(), 200);
    assert_eq!(
        stored.headers()["content-type"].to_str().expect("type"),
        "video/webm"
    );
    assert_eq!(
        stored.bytes().await.expect("bytes").as_ref(),
        webm.as_slice()
    );
    let r = upload_aliyun(&app, &token, "clip.webm", webm.clone()).await;
    assert!(r.ok()[0]["url"].as_str().expect("url").ends_with(".webm"));
    let r = screenshot(
        &app,
        &token,
        json!({"videoUrl": url, "time": 100, "width": 80, "format": "png"}),
    )
    .await;
    let b64 = r.ok()["base64"].as_str().expect("base64").to_string();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.strip_prefix("data:image/png;base64,").expect("png"))
        .expect("base64");
    assert_eq!(png_width(&bytes), 80);
    // A file named .webm that is not one is still refused.
    let html = b"<html><script>alert(document.cookie)</script></html>".to_vec();
    upload_diy(&app, &token, "chatVideos", "fake.webm", html)
        .await
        .fails(400, "Invalid filename: fake.webm");
}
