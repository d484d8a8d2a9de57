//! Operational counters (issue 13): what `/metrics` exports in the Prometheus text format and what
//! the console's dashboard charts. Services, delivery and the gateway call the one-line helpers
//! below; the numbers are per process (one process = one node).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use parking_lot::Mutex;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static SOCKETS: AtomicI64 = AtomicI64::new(0);
static ACCEPTED: AtomicU64 = AtomicU64::new(0);
static HISTORY: Mutex<VecDeque<Sample>> = Mutex::new(VecDeque::new());

/// Minutes of chart history kept in memory (6 hours).
pub const HISTORY_MINUTES: usize = 360;

/// Install the process-wide recorder (once; later calls reuse it).
pub fn init() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let seconds = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let sizes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), &sizes))
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (e.g. by an embedding program): keep ours local.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    init().render()
}

/// An HTTP request answered: `route` is the matched pattern (never the raw path).
pub fn http_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let labels = [
        ("route", route.to_string()),
        ("method", method.to_string()),
        ("status", status.to_string()),
    ];
    counter!("imrs_http_requests_total", &labels).increment(1);
    histogram!("imrs_http_request_duration_seconds", "route" => route.to_string())
        .record(elapsed.as_secs_f64());
}

/// A chat message was accepted (persisted and answered).
pub fn message_accepted() {
    ACCEPTED.fetch_add(1, Ordering::Relaxed);
    counter!("imrs_messages_accepted_total").increment(1);
}

/// A timeline frame was written to a socket. Latency is measured from the frame's `timestamp`,
/// stamped when the accepting commit was dispatched, to this write.
pub fn frame_delivered(frame: &str) {
    counter!("imrs_messages_delivered_total").increment(1);
    if let Some(ts) = frame_timestamp(frame) {
        let ms = (crate::time::now_ms() - ts).max(0) as f64;
        histogram!("imrs_delivery_latency_seconds").record(ms / 1000.0);
    }
}

/// The trailing `"timestamp":<ms>}` of a delivery frame.
fn frame_timestamp(frame: &str) -> Option<i64> {
    let tail = frame.get(frame.len().saturating_sub(40)..)?;
    let (_, v) = tail.rsplit_once("\"timestamp\":")?;
    v.trim_end_matches(['}', ' ']).parse().ok()
}

/// A store operation failed.
pub fn store_error() {
    counter!("imrs_store_errors_total").increment(1);
}

/// Time one writer commit of `jobs` jobs.
pub async fn timed_commit<T>(jobs: usize, f: impl std::future::Future<Output = T>) -> T {
    histogram!("imrs_writer_batch_size").record(jobs as f64);
    let t = Instant::now();
    let out = f.await;
    histogram!("imrs_writer_commit_seconds").record(t.elapsed().as_secs_f64());
    out
}

/// An open websocket, counted by kind until dropped.
pub struct OpenSocket(&'static str);

pub fn socket_open(proto2: bool) -> OpenSocket {
    let kind = if proto2 { "proto2" } else { "legacy" };
    SOCKETS.fetch_add(1, Ordering::Relaxed);
    gauge!("imrs_open_sockets", "kind" => kind).increment(1.0);
    OpenSocket(kind)
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        SOCKETS.fetch_sub(1, Ordering::Relaxed);
        gauge!("imrs_open_sockets", "kind" => self.0).decrement(1.0);
    }
}

/// Open sockets of this process now.
pub fn open_sockets() -> i64 {
    SOCKETS.load(Ordering::Relaxed)
}

/// One minute of the dashboard's charts.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Sample {
    /// Unix time (ms) of the end of the minute.
    pub at: i64,
    pub messages: u64,
    pub sockets: i64,
}

static LAST_ACCEPTED: AtomicU64 = AtomicU64::new(0);

/// Close the current minute (called once a minute by the maintenance loop).
pub fn sample() {
    let total = ACCEPTED.load(Ordering::Relaxed);
    let before = LAST_ACCEPTED.swap(total, Ordering::Relaxed);
    let mut h = HISTORY.lock();
    h.push_back(Sample {
        at: crate::time::now_ms(),
        messages: total.saturating_sub(before),
        sockets: open_sockets(),
    });
    while h.len() > HISTORY_MINUTES {
        h.pop_front();
    }
}

/// The kept minutes, oldest first, plus the minute in progress.
pub fn history() -> Vec<Sample> {
    let mut v: Vec<Sample> = HISTORY.lock().iter().copied().collect();
    let total = ACCEPTED.load(Ordering::Relaxed);
    v.push(Sample {
        at: crate::time::now_ms(),
        messages: total.saturating_sub(LAST_ACCEPTED.load(Ordering::Relaxed)),
        sockets: open_sockets(),
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timestamp_of_a_delivery_frame_is_read_from_its_tail() {
        let f = crate::delivery::frame_of(r#"{"a":1}"#, 1_700_000_000_123);
        assert_eq!(frame_timestamp(&f), Some(1_700_000_000_123));
        assert_eq!(frame_timestamp("{}"), None);
    }
}
