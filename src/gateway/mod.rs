//! The websocket gateway (MR §3): `/ws?token=…`. The upgrade always completes; authentication
//! follows (AF §3.6). One task per connection owns the socket: it writes what delivery queues,
//! answers pings, sends the 30 s heartbeat, confirms entries by Pong (MR §6.2 R5), and ends
//! legacy sockets without a Close frame except for a ban (MR §3.8).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use crate::delivery::{Out, Sock};
use crate::http::params::parse_query;
use crate::services::messaging;
use crate::services::notices;
use crate::state::AppState;
use crate::store::tokens::{ACTIVE, RETIRED};
use crate::store::users::{self, UserRow};
use crate::store::{groups, timeline};

/// Largest inbound frame of a legacy socket (the client sends only pings).
const LEGACY_MAX_FRAME: usize = 64 * 1024;
/// Room beyond the body limit for a proto-2 `send` frame's envelope (`type`, `cid`, `payload`).
const PROTO2_FRAME_SLACK: usize = 64 * 1024;
/// Delay of the Ping that confirms a write burst.
const CONFIRM_PING_DELAY: Duration = Duration::from_millis(200);

/// Decrements the "upgrading" count of a token however the upgrade ends.
struct Connecting {
    st: AppState,
    user: i64,
    jti: String,
}

impl Drop for Connecting {
    fn drop(&mut self) {
        self.st.delivery.connecting(self.user, &self.jti, -1);
    }
}

pub async fn ws_handler(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let q = parse_query(query.as_deref().unwrap_or(""));
    let token = q.get("token").cloned().unwrap_or_default();
    let proto2 = q.get("proto").map(String::as_str) == Some("2");
    let since = q.get("since").and_then(|s| s.parse::<i64>().ok());
    let claims = st.keys.decode(&token);
    // S6/S8: throttle by delaying the 101, never by refusing it.
    let ip = crate::http::client_ip(&st, peer.ip(), headers.get("x-forwarded-for"));
    let mut delay = false;
    let cfg = &st.config;
    if cfg.per_ip_limits
        && !st
            .limiter
            .try_hit(
                &format!("ws:ip:{ip}"),
                cfg.ws_ip_upgrades,
                Duration::from_secs(60),
            )
            .await
    {
        delay = true;
    }
    if let Some(c) = &claims {
        let over_rate = !st
            .limiter
            .try_hit(
                &format!("ws:user:{}", c.id),
                cfg.ws_user_upgrades,
                Duration::from_secs(60),
            )
            .await;
        // S8: beyond the per-user ceiling of open sockets, upgrades are delayed, never refused.
        let ceiling = cfg.ws_user_sockets;
        let over_ceiling = ceiling > 0 && st.delivery.open_sockets(c.id) >= ceiling;
        if over_rate || over_ceiling {
            delay = true;
        }
    }
    if delay {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let guard = claims.as_ref().map(|c| {
        st.delivery.connecting(c.id, &c.jti, 1);
        Connecting {
            st: st.clone(),
            user: c.id,
            jti: c.jti.clone(),
        }
    });
    // A proto-2 `send` carries what API 二十 accepts: up to the body limit plus its envelope.
    let max = if proto2 {
        st.config.body_limit + PROTO2_FRAME_SLACK
    } else {
        LEGACY_MAX_FRAME
    };
    // Outbound frames are never refused for their size: every entry the server accepted must
    // be deliverable (a message just under the body limit, plus its names and group snapshot,
    // is larger than any fixed cap; a refused write would drop the socket at every replay).
    // Memory stays bounded by the per-socket queue of frames.
    ws.read_buffer_size(256)
        .write_buffer_size(0)
        .max_write_buffer_size(usize::MAX)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            run(st, socket, token, proto2, since, guard).await;
        })
}

fn fail_frame(text: &str) -> Message {
    Message::Text(json!({"msg": "fail", "data": text}).to_string().into())
}

fn close(code: u16) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: "".into(),
    }))
}

/// Handshake authentication (MR §3.2): a missing or disabled user wins over the token state.
/// `Err(None)` is a store failure: not the client's fault, so no rejection frame (a Close would
/// log the device out); the connection is dropped and the client reconnects.
async fn authenticate(
    st: &AppState,
    token: &str,
) -> Result<(UserRow, crate::services::tokens::Claims, bool), Option<&'static str>> {
    if token.is_empty() {
        return Err(Some("缺少 token 参数"));
    }
    let claims = st.keys.decode(token).ok_or(Some("Token 不合法"))?;
    let ttl = st.config.token_ttl_secs;
    if ttl > 0 && chrono::Utc::now().timestamp() - claims.iat > ttl as i64 {
        return Err(Some("token 已过期"));
    }
    let user = match users::by_id(&st.db, claims.id).await {
        Ok(Some(u)) => u,
        Ok(None) => return Err(Some("用户不存在")),
        Err(_) => return Err(None),
    };
    if user.status == 0 {
        return Err(Some("你已被管理员禁用"));
    }
    let state = match crate::store::tokens::get(&st.db, &claims.jti).await {
        Ok(Some(row)) if row.user_id == user.id => row.state,
        Ok(_) => crate::store::tokens::REVOKED,
        Err(_) => return Err(None),
    };
    match state {
        ACTIVE => Ok((user, claims, false)),
        RETIRED => Ok((user, claims, true)),
        _ => Err(Some("Token 不合法")),
    }
}

/// A registered socket ready for its session.
struct Ready {
    conn: Conn,
    rx: mpsc::Receiver<Out>,
    abort: Arc<Notify>,
    resume: Option<Option<i64>>,
}

async fn run(
    st: AppState,
    mut socket: WebSocket,
    token: String,
    proto2: bool,
    since: Option<i64>,
    guard: Option<Connecting>,
) {
    // The handshake's state lives in its own allocation, freed before the (long) session:
    // idle memory per socket is a headline figure.
    let ready = Box::pin(handshake(st, &mut socket, token, proto2, since, guard)).await;
    if let Some(r) = ready {
        let _open = crate::telemetry::socket_open(proto2);
        r.conn.session(socket, r.rx, r.abort, r.resume).await;
    }
}

/// Authenticate, send the connect sequence and register the socket (MR §3.2–§3.4).
async fn handshake(
    st: AppState,
    socket: &mut WebSocket,
    token: String,
    proto2: bool,
    since: Option<i64>,
    guard: Option<Connecting>,
) -> Option<Ready> {
    let (user, claims, inert) = match authenticate(&st, &token).await {
        Ok(x) => x,
        Err(Some(text)) => {
            let _ = socket.send(fail_frame(text)).await;
            let _ = socket.send(close(4004)).await;
            return None;
        }
        Err(None) => return None,
    };
    let role = claims.role.clone();
    let now = crate::time::now_ms();
    // The slot exists since the upgrade began (`connecting`): joins and removals committed from
    // here on move its membership epoch.
    let epoch = st.delivery.membership_epoch(user.id);
    let groups = match groups::active_group_ids(&st.db, user.id).await {
        Ok(g) => g,
        Err(_) => return None,
    };
    if !inert {
        // Connect sequence (MR §3.4): welcome, avatar notice, connect-time notices.
        let welcome = json!({"type": "system", "data": "欢迎您访问我们的系统！", "timestamp": now});
        let _ = socket.send(Message::Text(welcome.to_string().into())).await;
        if role != "visitor"
            && st.delivery.take_profile_marker(user.id).as_deref() == Some("avatar")
        {
            let _ = socket
                .send(text(&notices::frame(&notices::avatar_notice(&user))))
                .await;
        }
        let has_friend = crate::store::friends::has_contact(&st.db, user.id)
            .await
            .unwrap_or(false);
        for n in notices::connect_notices(&user, &role, !groups.is_empty(), has_friend) {
            let _ = socket.send(text(&notices::frame(&n))).await;
        }
    }
    let (tx, rx) = mpsc::channel::<Out>(st.config.ws_queue_frames);
    let abort = Arc::new(Notify::new());
    let sock = Sock {
        id: 0,
        jti: claims.jti.clone(),
        user_role: role != "visitor",
        proto2,
        inert,
        tx,
        abort: abort.clone(),
    };
    let uid = user.id;
    let (sock_id, stale) = st.delivery.register(uid, sock, groups, epoch);
    if stale {
        // A join or removal raced the handshake: read the groups again until they hold.
        let _ = st.delivery.refresh_groups(uid).await;
    }
    drop(guard);
    // Only what the session needs from here on: the connect-time values are freed.
    let claims_jti: Box<str> = claims.jti.clone().into_boxed_str();
    drop((user, claims, role, token));
    let conn = Conn {
        st,
        user: uid,
        jti: claims_jti,
        sock_id,
        proto2,
        written: Vec::new(),
        marks: Vec::new(),
        next_ping: 1,
        answered_ping: false,
        confirm_on_write: false,
        opened: Instant::now(),
        last_inbound: Instant::now(),
    };
    Some(Ready {
        conn,
        rx,
        abort,
        resume: (proto2 && !inert).then_some(since),
    })
}

impl Conn {
    /// The life of a registered socket, up to its end and unregistration.
    async fn session(
        mut self,
        mut socket: WebSocket,
        rx: mpsc::Receiver<Out>,
        abort: Arc<Notify>,
        resume: Option<Option<i64>>,
    ) {
        if let Some(since) = resume {
            self.resume(&mut socket, since).await;
        }
        let reason = self.serve(&mut socket, rx, abort).await;
        if matches!(reason, End::ClientClosed) {
            // A Close frame from the client confirms what was written (MR §6.2 R5 b).
            let written = std::mem::take(&mut self.written);
            self.st.delivery.confirmed(self.user, self.sock_id, written);
        }
        if let End::Closed(code) = reason {
            // A peer that does not read cannot hold the task: the Close frame gets a few seconds.
            let _ = tokio::time::timeout(CLOSE_WRITE_WAIT, socket.send(close(code))).await;
        }
        // Whatever this socket was given and did not confirm becomes pending again.
        self.st.delivery.unregister(self.user, self.sock_id);
    }
}

/// How long a Close frame may take to write before the connection is simply dropped.
const CLOSE_WRITE_WAIT: Duration = Duration::from_secs(5);

/// Write one frame unless the socket is aborted first (a kick, a ban or an overflow must end a
/// socket whose peer stopped reading, whose write would otherwise never finish). False: end it.
async fn write_or_abort(socket: &mut WebSocket, msg: Message, abort: &Notify) -> bool {
    tokio::select! {
        r = socket.send(msg) => r.is_ok(),
        _ = abort.notified() => false,
    }
}

fn text(frame: &str) -> Message {
    Message::Text(frame.to_string().into())
}

enum End {
    /// Drop the TCP connection without a Close frame.
    Dropped,
    ClientClosed,
    /// Send a Close frame with this code (ban 4003; proto-2 codes).
    Closed(u16),
}

struct Conn {
    st: AppState,
    /// The user id and token id only: a socket stays small (idle memory is a headline figure).
    user: i64,
    /// Checked again at every proto-2 `send`: a token ended while the socket is open sends nothing.
    jti: Box<str>,
    sock_id: u64,
    proto2: bool,
    /// Entry ids written and not yet confirmed, in write order.
    written: Vec<i64>,
    /// (ping id, number of `written` entries it confirms when answered).
    marks: Vec<(u64, usize)>,
    next_ping: u64,
    answered_ping: bool,
    /// No Pong within 60 s of opening: a runtime that ignores Pings; writes confirm themselves.
    confirm_on_write: bool,
    opened: Instant,
    last_inbound: Instant,
}

impl Conn {
    async fn serve(
        &mut self,
        socket: &mut WebSocket,
        mut rx: mpsc::Receiver<Out>,
        abort: Arc<Notify>,
    ) -> End {
        let cfg = &self.st.config;
        let ping_every = Duration::from_secs(cfg.ws_ping_secs);
        let dead_after = Duration::from_secs(cfg.ws_dead_secs);
        // One timer per socket, ticking three times per heartbeat: pings go out every third tick,
        // liveness is judged at every tick (a dead peer goes within a third of a heartbeat).
        let tick_every = (ping_every / 3).max(Duration::from_millis(300));
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + tick_every, tick_every);
        let mut ticks: u64 = 0;
        let mut shutdown = self.st.delivery.shutdown_signal();
        // The confirming Ping goes out a moment after a write burst (MR §6.2 R5 allows 1 s), so that
        // a fan-out first reaches every member and only then asks each for its Pong.
        let mut ping_due: Option<tokio::time::Instant> = None;
        loop {
            let due = ping_due;
            tokio::select! {
                _ = async { if let Some(d) = due { tokio::time::sleep_until(d).await } }, if due.is_some() => {
                    ping_due = None;
                    if self.send_ping(socket).await.is_err() { return End::Dropped; }
                }
                out = rx.recv() => {
                    let Some(out) = out else { return End::Dropped };
                    match out {
                        Out::Text(f) => { if !write_or_abort(socket, text(&f), &abort).await { return End::Dropped; } }
                        Out::Entry { frame, seq, conv_seq } => {
                            let f = if self.proto2 { crate::delivery::proto2_frame(&frame, seq, conv_seq) } else { frame };
                            if !write_or_abort(socket, text(&f), &abort).await { return End::Dropped; }
                            crate::telemetry::frame_delivered(&f);
                            if self.confirm_on_write && !self.proto2 {
                                self.st.delivery.confirmed(self.user, self.sock_id, vec![seq]);
                            } else {
                                self.written.push(seq);
                                if ping_due.is_none() && !self.proto2 {
                                    ping_due = Some(tokio::time::Instant::now() + CONFIRM_PING_DELAY);
                                }
                            }
                            if rx.is_empty() {
                                // Room again: a backlog larger than the queue continues.
                                self.st.delivery.drained(self.user, self.sock_id);
                            }
                        }
                        Out::Fail(t, code) => {
                            if !t.is_empty() && !write_or_abort(socket, fail_frame(t), &abort).await { return End::Dropped; }
                            return End::Closed(code);
                        }
                        Out::Drop => return End::Dropped,
                    }
                }
                msg = socket.recv() => {
                    let Some(Ok(msg)) = msg else { return End::Dropped };
                    self.last_inbound = Instant::now();
                    match msg {
                        Message::Pong(p) => self.on_pong(&p),
                        Message::Ping(_) => {}
                        Message::Close(_) => return End::ClientClosed,
                        Message::Text(t) => { if self.on_text(socket, t.as_str()).await.is_err() { return End::Dropped; } }
                        Message::Binary(b) => {
                            if let Ok(t) = std::str::from_utf8(&b) {
                                let t = t.to_string();
                                if self.on_text(socket, &t).await.is_err() { return End::Dropped; }
                            }
                        }
                    }
                }
                _ = heartbeat.tick() => {
                    ticks += 1;
                    let now = Instant::now();
                    if self.answered_ping && now.duration_since(self.last_inbound) > dead_after {
                        return End::Dropped;
                    }
                    if !self.answered_ping && !self.confirm_on_write && now.duration_since(self.opened) >= Duration::from_secs(60) {
                        self.confirm_on_write = true;
                        let all = std::mem::take(&mut self.written);
                        self.marks.clear();
                        self.st.delivery.confirmed(self.user, self.sock_id, all);
                    }
                    if ticks.is_multiple_of(3) {
                        let ping = json!({"type": "ping"}).to_string();
                        if socket.send(Message::Text(ping.into())).await.is_err() { return End::Dropped; }
                        if self.send_ping(socket).await.is_err() { return End::Dropped; }
                    }
                }
                _ = abort.notified() => return End::Dropped,
                _ = shutdown.changed() => {
                    return if self.proto2 { End::Closed(1001) } else { End::Dropped };
                }
            }
        }
    }

    async fn send_ping(&mut self, socket: &mut WebSocket) -> Result<(), axum::Error> {
        let id = self.next_ping;
        self.next_ping += 1;
        self.marks.push((id, self.written.len()));
        if self.marks.len() > 64 {
            self.marks.remove(0);
        }
        socket
            .send(Message::Ping(Bytes::copy_from_slice(&id.to_be_bytes())))
            .await
    }

    fn on_pong(&mut self, payload: &[u8]) {
        self.answered_ping = true;
        let Ok(bytes) = <[u8; 8]>::try_from(payload) else {
            return;
        };
        let id = u64::from_be_bytes(bytes);
        let Some(pos) = self.marks.iter().position(|(m, _)| *m == id) else {
            return;
        };
        let upto = self.marks[pos].1.min(self.written.len());
        let done: Vec<i64> = self.written.drain(..upto).collect();
        self.marks.drain(..=pos);
        for m in &mut self.marks {
            m.1 = m.1.saturating_sub(upto);
        }
        self.st.delivery.confirmed(self.user, self.sock_id, done);
    }

    /// Inbound text (MR §3.6, §3.7; EXTENSION frames for proto-2, §7).
    async fn on_text(&mut self, socket: &mut WebSocket, t: &str) -> Result<(), axum::Error> {
        let pong = || {
            Message::Text(
                json!({"type": "pong", "timestamp": crate::time::now_ms()})
                    .to_string()
                    .into(),
            )
        };
        if t == "ping" {
            return socket.send(pong()).await;
        }
        let Ok(Value::Object(v)) = serde_json::from_str::<Value>(t) else {
            return Ok(());
        };
        match v.get("type").and_then(Value::as_str) {
            Some("ping") => {
                // A token that is present must verify; otherwise no reply (MR §3.6).
                let answer = match v.get("token") {
                    None | Some(Value::Null) => true,
                    Some(Value::String(tok)) => {
                        tok.is_empty() || self.st.keys.decode(tok).is_some()
                    }
                    _ => false,
                };
                if answer {
                    socket.send(pong()).await?;
                }
            }
            Some("ack") if self.proto2 => {
                if let Some(seq) = v.get("seq").and_then(Value::as_i64) {
                    let (done, keep): (Vec<i64>, Vec<i64>) =
                        self.written.iter().partition(|s| **s <= seq);
                    self.written = keep;
                    self.marks.clear();
                    self.st.delivery.confirmed(self.user, self.sock_id, done);
                    // The ack advances the same delivered state as a legacy confirmation (MR
                    // §6.2 R5 c): nothing up to `seq` is replayed to any socket again. An ack
                    // beyond what this user was ever given is clamped to their latest entry.
                    let latest = timeline::latest_seq(&self.st.db, self.user)
                        .await
                        .unwrap_or(0);
                    let seq = seq.min(latest);
                    if seq > 0 {
                        self.st.delivery.acked(self.user, seq).await;
                    }
                }
            }
            Some("send") if self.proto2 => {
                let reply = self.ws_send(&v).await;
                socket.send(Message::Text(reply.to_string().into())).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// EXTENSION §7.3: the `send` frame, answered with `sendAck`.
    async fn ws_send(&self, v: &serde_json::Map<String, Value>) -> Value {
        let cid = v
            .get("cid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let payload = v
            .get("payload")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let params = crate::http::params::Params {
            body: payload,
            ..Default::default()
        };
        let result = async {
            if cid.is_empty() {
                return Err(crate::error::Error::Invalid("cid不能为空".into()));
            }
            // The HTTP auth steps, at every send (AF §3.4): a disabled user, then an ended token.
            let me = users::by_id(&self.st.db, self.user)
                .await?
                .filter(|u| u.status != 0)
                .ok_or_else(|| crate::error::Error::fail("当前用户不存在或者已被禁用"))?;
            let state = crate::store::tokens::get(&self.st.db, &self.jti)
                .await?
                .filter(|t| t.user_id == me.id)
                .map(|t| t.state);
            if state != Some(ACTIVE) {
                return Err(crate::error::Error::fail("Token 令牌不合法！"));
            }
            let req = crate::http::messaging::send_request(&params, Some(cid.clone()))?;
            messaging::send(&self.st, &me, req).await
        }
        .await;
        match result {
            Ok((msg, conv_seq)) => {
                json!({"type": "sendAck", "cid": cid, "ok": true, "data": msg, "conv_seq": conv_seq})
            }
            Err(e) => {
                let (status, text) = e.status_and_text();
                json!({"type": "sendAck", "cid": cid, "ok": false, "status": status.as_u16(), "data": text})
            }
        }
    }

    /// EXTENSION §7.4: replay entries after `since` (or the pending ones), then `synced`.
    async fn resume(&mut self, socket: &mut WebSocket, since: Option<i64>) {
        let ts = crate::time::now_ms();
        let Some(since) = since else {
            // Without `since`: the pending entries (MR §7.4).
            for (r, _) in self
                .st
                .delivery
                .pending(self.user)
                .await
                .unwrap_or_default()
            {
                let f = crate::delivery::proto2_frame(
                    &crate::delivery::frame_of(&r.body, ts),
                    r.id,
                    r.conv_seq,
                );
                if socket.send(text(&f)).await.is_err() {
                    return;
                }
            }
            let latest = timeline::latest_seq(&self.st.db, self.user)
                .await
                .unwrap_or(0);
            let _ = socket
                .send(text(&json!({"type": "synced", "seq": latest}).to_string()))
                .await;
            return;
        };
        let mut cursor = since;
        loop {
            let rows = timeline::entries_since(&self.st.db, self.user, cursor, 500)
                .await
                .unwrap_or_default();
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let f = crate::delivery::proto2_frame(
                    &crate::delivery::frame_of(&r.body, ts),
                    r.id,
                    r.conv_seq,
                );
                if socket.send(text(&f)).await.is_err() {
                    return;
                }
                self.written.push(r.id);
                cursor = r.id;
            }
        }
        let _ = socket
            .send(text(&json!({"type": "synced", "seq": cursor}).to_string()))
            .await;
    }
}
