//! One video frame with ffmpeg (MR §5.6 step 2): a child process that may read local files only,
//! through an allow-list of container demuxers, killed when its caller gives up (timeouts).

use std::path::Path;
use std::process::Stdio;

/// Containers a video may come in (mp4/mov/3gp family, webm/matroska, avi).
const DEMUXERS: &str = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
}

#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The decoder ran but produced no frame (e.g. the time lies past the end).
    NoFrame,
    /// The decoder could not be started or failed.
    Failed,
}

/// Write the frame at `time_ms` of `input`, scaled to `width` (aspect kept, even height), to
/// `out`. The caller bounds the time: dropping the future kills the process.
pub async fn extract(
    ffmpeg: &str,
    input: &Path,
    time_ms: u64,
    width: Option<u32>,
    format: ImageFormat,
    out: &Path,
) -> Result<(), FrameError> {
    let seek = format!("{}.{:03}", time_ms / 1000, time_ms % 1000);
    let mut cmd = tokio::process::Command::new(ffmpeg);
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error"])
        .args(["-protocol_whitelist", "file", "-format_whitelist", DEMUXERS])
        .args(["-threads", "2", "-ss", &seek, "-i"])
        .arg(input)
        .args(["-map", "0:v:0", "-frames:v", "1", "-an", "-sn", "-dn"]);
    if let Some(w) = width {
        cmd.args(["-vf", &format!("scale={w}:-2")]);
    }
    match format {
        ImageFormat::Png => cmd.args(["-c:v", "png"]),
        ImageFormat::Jpeg => cmd.args(["-c:v", "mjpeg", "-q:v", "3"]),
    };
    cmd.args(["-f", "image2", "-update", "1", "-y"])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = cmd.output().await.map_err(|e| {
        tracing::warn!(error = %e, ffmpeg, "cannot start ffmpeg");
        FrameError::Failed
    })?;
    let produced = tokio::fs::metadata(out)
        .await
        .map(|m| m.len() > 0)
        .unwrap_or(false);
    if output.status.success() && produced {
        return Ok(());
    }
    if output.status.success() {
        return Err(FrameError::NoFrame);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    tracing::info!(status = %output.status, stderr = %stderr.chars().take(500).collect::<String>(), "ffmpeg failed");
    Err(FrameError::Failed)
}
