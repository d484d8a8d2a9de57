//! Delivery (ARCHITECTURE "delivery", MR §3.3, §6.2): this node's sockets per user, the chosen
//! socket rule (R4), confirmation by Pong/ack and rewind on unconfirmed ends (R5), commit-order
//! writes with backlog flushes (R6), and the token events (retire, kick, ban) applied to sockets.
//! The hub is this node's `Sessions`; `Presence` (user → node) and `Bus` (node → node) are the
//! seams a cluster replaces; embedded, every user lives on this node.

pub mod cluster;
pub mod writer;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, Notify};

use crate::services::tokens::Ended;
use crate::store::timeline::{self, Append, Appended, EntryRow, Recipients};
use crate::store::tokens::TokenRow;
use crate::store::Db;
pub use writer::Writer;

/// What a socket task is asked to do.
#[derive(Debug)]
pub enum Out {
    /// A live-only frame (welcome, notices, pong): not tracked.
    Text(Arc<str>),
    /// A timeline entry: tracked until confirmed (R5). `seq` is the entry id.
    Entry {
        frame: Arc<str>,
        seq: i64,
        conv_seq: i64,
    },
    /// `{"msg":"fail","data":…}` then a Close frame with this code (ban: 4003).
    Fail(&'static str, u16),
    /// End the connection without a Close frame (kick, shutdown, overload).
    Drop,
}

/// One registered socket.
pub struct Sock {
    pub id: u64,
    pub jti: String,
    /// Session role `user` (kick frames are sent only to these, MR §3.3).
    pub user_role: bool,
    pub proto2: bool,
    pub inert: bool,
    pub tx: mpsc::Sender<Out>,
    /// Set when the socket cannot take more frames: its task ends without a Close frame.
    pub abort: Arc<Notify>,
}

struct Inflight {
    sock: u64,
    group: Option<(i64, i64)>,
    /// Confirmed on its socket, being persisted: never rewound.
    confirmed: bool,
}

#[derive(Default)]
struct Slot {
    sockets: Vec<Sock>,
    connecting: HashMap<String, u32>,
    /// Entries may be pending in the store that no socket has been given (R6 backlog).
    dirty: bool,
    flushing: bool,
    inflight: HashMap<i64, Inflight>,
    /// Group entries confirmed above a hole that is still in flight: never re-sent.
    confirmed_above: HashMap<i64, BTreeSet<i64>>,
    /// Group entries whose socket ended unconfirmed, not yet written again: the cursor stays below.
    rewound: HashMap<i64, BTreeSet<i64>>,
    owed: Option<(String, Instant)>,
    flush_lock: Arc<tokio::sync::Mutex<()>>,
    /// Groups this user is an active member of, while online (fan-out index).
    groups: Option<Vec<i64>>,
    /// Groups this user is being removed from (the removal has not committed yet): their
    /// entries go through the store (a flush), which knows where the membership ends (R8).
    leaving: Vec<i64>,
    /// A flush is reading pending entries from the store: what gets settled (its confirmation
    /// committed, its guard dropped) meanwhile is remembered here, so the read — which may
    /// predate the commit — cannot write it again.
    reading: bool,
    settled_ids: HashSet<i64>,
    settled_group: HashSet<(i64, i64)>,
    /// Every entry of this user up to this id is delivered (a proto-2 ack, committed).
    acked_upto: i64,
    membership_epoch: u64,
}

impl Slot {
    /// The chosen socket: the most recently opened open legacy socket of the active token (R4).
    fn chosen(&self) -> Option<&Sock> {
        self.sockets.iter().rev().find(|s| !s.inert && !s.proto2)
    }
    fn online(&self) -> bool {
        self.sockets.iter().any(|s| !s.inert)
    }
}

const SHARDS: usize = 64;

struct Hub {
    db: Db,
    shards: Vec<Mutex<HashMap<i64, Slot>>>,
    next_id: AtomicU64,
    /// group id → online active members.
    group_online: Mutex<HashMap<i64, HashSet<i64>>>,
    markers: Mutex<HashMap<i64, (String, Instant)>>,
    shutdown: watch::Sender<bool>,
    /// Set once at start: confirmations are committed by the writer, batched with appends.
    writer: std::sync::OnceLock<Writer>,
    presence: Presence,
    bus: Bus,
    /// Cluster mode: the Redis bus to the other nodes (set once at start).
    cluster: std::sync::OnceLock<Arc<cluster::Bus>>,
}

/// The delivery layer handle (cheap to clone).
#[derive(Clone)]
pub struct Delivery {
    hub: Arc<Hub>,
    writer: Writer,
}

pub fn frame_of(body: &str, ts: i64) -> String {
    format!(r#"{{"type":"singleChat","data":{body},"timestamp":{ts}}}"#)
}

impl Delivery {
    pub fn new(db: Db) -> Delivery {
        let hub = Arc::new(Hub {
            db: db.clone(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            next_id: AtomicU64::new(1),
            group_online: Mutex::new(HashMap::new()),
            markers: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
            writer: std::sync::OnceLock::new(),
            presence: Presence::Local,
            bus: Bus::Local,
            cluster: std::sync::OnceLock::new(),
        });
        let h = hub.clone();
        let writer = Writer::start(db, move |committed| h.dispatch(committed));
        let _ = hub.writer.set(writer.clone());
        Delivery { hub, writer }
    }

    /// Persist an entry (durably, in commit order) and deliver it; resolves after the commit.
    pub async fn append(&self, a: Append) -> anyhow::Result<Appended> {
        self.writer.append(a).await
    }

    // ----- sockets -----

    /// A verified token is upgrading: API 二十二 may wait for its registration (MR §5.2 step 2).
    pub fn connecting(&self, user: i64, jti: &str, delta: i32) {
        let mut shard = self.hub.shard(user).lock();
        let slot = shard.entry(user).or_default();
        let n = slot.connecting.entry(jti.to_string()).or_insert(0);
        *n = (*n as i32 + delta).max(0) as u32;
        if *n == 0 {
            slot.connecting.remove(jti);
        }
        if slot.sockets.is_empty() && slot.connecting.is_empty() && slot.owed.is_none() {
            shard.remove(&user);
        }
    }

    /// Changes of the user's group memberships seen by this node (joins, removals): a handshake
    /// reads the user's groups, and if this moved before it registered, reads them again.
    pub fn membership_epoch(&self, user: i64) -> u64 {
        self.hub
            .shard(user)
            .lock()
            .get(&user)
            .map_or(0, |s| s.membership_epoch)
    }

    /// Register an authenticated socket; returns its id, and whether `groups` (the user's active
    /// groups, read when the membership epoch was `epoch`) may be stale: the caller then reads
    /// them again with [`Delivery::refresh_groups`].
    pub fn register(&self, user: i64, mut sock: Sock, groups: Vec<i64>, epoch: u64) -> (u64, bool) {
        let id = self.hub.next_id.fetch_add(1, Ordering::Relaxed);
        sock.id = id;
        let (run_owed, stale) = {
            let mut shard = self.hub.shard(user).lock();
            let slot = shard.entry(user).or_default();
            let was_online = slot.online();
            let active = !sock.inert;
            let jti = sock.jti.clone();
            let proto2 = sock.proto2;
            slot.sockets.push(sock);
            // A new chosen socket starts with an unknown backlog (pending entries wait for 二十二).
            if active && !proto2 {
                slot.dirty = true;
            }
            let run_owed = match &slot.owed {
                Some((j, until)) if *j == jti && *until > Instant::now() && active => {
                    slot.owed = None;
                    true
                }
                Some((_, until)) if *until <= Instant::now() => {
                    slot.owed = None;
                    false
                }
                _ => false,
            };
            if active && slot.groups.is_none() {
                slot.groups = Some(groups.clone());
            }
            if active && !was_online {
                // Nested shard → index lock (never the other way round): a join or removal of
                // this user cannot slip between the two.
                let mut go = self.hub.group_online.lock();
                for g in slot.groups.iter().flatten() {
                    go.entry(*g).or_default().insert(user);
                }
            }
            (run_owed, slot.membership_epoch != epoch)
        };
        if run_owed {
            let d = self.clone();
            tokio::spawn(async move { d.flush(user).await });
        }
        (id, stale)
    }

    /// The user's active groups, read again after a membership change raced the handshake:
    /// applied when nothing changed since `epoch` (false: read once more).
    fn set_groups(&self, user: i64, groups: Vec<i64>, epoch: u64) -> bool {
        let mut shard = self.hub.shard(user).lock();
        let Some(slot) = shard.get_mut(&user) else {
            return true;
        };
        if slot.membership_epoch != epoch {
            return false;
        }
        if !slot.online() {
            return true;
        }
        let old = slot.groups.replace(groups.clone()).unwrap_or_default();
        let mut go = self.hub.group_online.lock();
        for g in old.iter().filter(|g| !groups.contains(g)) {
            Self::index_remove(&mut go, *g, user);
        }
        for g in groups.iter().filter(|g| !old.contains(g)) {
            go.entry(*g).or_default().insert(user);
        }
        true
    }

    /// Read the user's active groups from the store again and apply them to the fan-out index,
    /// retrying while a join or removal moves the membership epoch meanwhile.
    pub async fn refresh_groups(&self, user: i64) -> sqlx::Result<()> {
        for _ in 0..10 {
            let epoch = self.membership_epoch(user);
            let groups = crate::store::groups::active_group_ids(&self.hub.db, user).await?;
            if self.set_groups(user, groups, epoch) {
                break;
            }
        }
        Ok(())
    }

    fn index_remove(go: &mut HashMap<i64, HashSet<i64>>, group: i64, user: i64) {
        if let Some(set) = go.get_mut(&group) {
            set.remove(&user);
            if set.is_empty() {
                go.remove(&group);
            }
        }
    }

    /// A socket ended; `unconfirmed` entries written to it become pending again (R5).
    pub fn unregister(&self, user: i64, sock_id: u64) {
        {
            let mut shard = self.hub.shard(user).lock();
            let Some(slot) = shard.get_mut(&user) else {
                return;
            };
            slot.sockets.retain(|s| s.id != sock_id);
            // Everything given to this socket and not confirmed — written or still queued —
            // becomes pending again (MR §6.2 R5).
            let rewind: Vec<i64> = slot
                .inflight
                .iter()
                .filter(|(_, f)| f.sock == sock_id && !f.confirmed)
                .map(|(id, _)| *id)
                .collect();
            for id in rewind {
                if let Some(Inflight {
                    group: Some((g, s)),
                    ..
                }) = slot.inflight.remove(&id)
                {
                    slot.rewound.entry(g).or_default().insert(s);
                }
                slot.dirty = true;
            }
            self.leave_index_if_offline(user, slot);
            if slot.sockets.is_empty()
                && slot.connecting.is_empty()
                && slot.owed.is_none()
                && slot.inflight.is_empty()
            {
                shard.remove(&user);
            }
        }
    }

    /// Open sockets of the user on this node (any token state).
    pub fn open_sockets(&self, user: i64) -> usize {
        self.hub
            .shard(user)
            .lock()
            .get(&user)
            .map_or(0, |s| s.sockets.len())
    }

    /// Entries written to a socket were confirmed (Pong after the write, or an ack).
    pub fn confirmed(&self, user: i64, sock_id: u64, entries: Vec<i64>) {
        if entries.is_empty() {
            return;
        }
        if let Some(slot) = self.hub.shard(user).lock().get_mut(&user) {
            for id in &entries {
                if let Some(f) = slot.inflight.get_mut(id).filter(|f| f.sock == sock_id) {
                    f.confirmed = true;
                }
            }
        }
        let hub = self.hub.clone();
        tokio::spawn(async move {
            if let Err(e) = hub.persist_confirmation(user, sock_id, entries).await {
                tracing::warn!(error = %e, user, "persisting a delivery confirmation failed");
            }
        });
    }

    /// A proto-2 socket acknowledged everything up to `seq` (EXTENSION `ack`); resolves once it
    /// is committed.
    pub async fn acked(&self, user: i64, seq: i64) {
        if let Err(e) = self.hub.persist_ack(user, seq).await {
            tracing::warn!(error = %e, user, "persisting a proto-2 ack failed");
        }
    }

    /// A socket's queue ran empty: if entries are waiting for it (a backlog larger than its
    /// queue), write the next part.
    pub fn drained(&self, user: i64, sock_id: u64) {
        let start = {
            let mut shard = self.hub.shard(user).lock();
            match shard.get_mut(&user) {
                Some(slot)
                    if slot.dirty
                        && !slot.flushing
                        && slot.chosen().is_some_and(|c| c.id == sock_id) =>
                {
                    slot.flushing = true;
                    true
                }
                _ => false,
            }
        };
        if start {
            let hub = self.hub.clone();
            tokio::spawn(async move { hub.flush(user).await });
        }
    }

    /// Write every pending entry of `user` to the chosen socket, in order (API 二十二, R6).
    async fn flush(&self, user: i64) {
        self.hub.clone().flush(user).await
    }

    /// The pending entries of a user in commit order (EXTENSION resume without `since`).
    pub async fn pending(&self, user: i64) -> sqlx::Result<Vec<(EntryRow, Option<(i64, i64)>)>> {
        self.hub.pending(user).await
    }

    /// API 二十二: replay to the caller's chosen socket, waiting briefly for a socket that is
    /// still upgrading, or owing the replay to the token for 60 s (MR §5.2 step 2).
    pub async fn replay(&self, user: i64, jti: &str) {
        // The socket may be held by another node: it flushes there.
        self.hub.publish(|| cluster::Msg::Replay {
            user,
            jti: jti.to_string(),
        });
        self.replay_here(user, jti).await
    }

    async fn replay_here(&self, user: i64, jti: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let state = {
                let mut shard = self.hub.shard(user).lock();
                let slot = shard.entry(user).or_default();
                if slot.sockets.iter().any(|s| !s.inert && s.jti == jti) {
                    slot.dirty = true;
                    0
                } else if slot.connecting.contains_key(jti) {
                    1
                } else {
                    slot.owed = Some((jti.to_string(), Instant::now() + Duration::from_secs(60)));
                    2
                }
            };
            match state {
                0 => return self.flush(user).await,
                1 if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                _ => {
                    {
                        let mut shard = self.hub.shard(user).lock();
                        if let Some(slot) = shard.get_mut(&user) {
                            slot.owed =
                                Some((jti.to_string(), Instant::now() + Duration::from_secs(60)));
                        }
                    }
                    // An owed replay nobody collects must not keep the user's slot forever.
                    let hub = self.hub.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(61)).await;
                        hub.prune(user);
                    });
                    return;
                }
            }
        }
    }

    /// A frame for every proto-2 socket of the user (EXTENSION `read`).
    pub fn send_proto2(&self, user: i64, frame: Arc<str>) {
        self.hub.publish(|| cluster::Msg::Proto2 {
            user,
            frame: frame.to_string(),
        });
        self.send_proto2_here(user, frame)
    }

    fn send_proto2_here(&self, user: i64, frame: Arc<str>) {
        let shard = self.hub.shard(user).lock();
        if let Some(slot) = shard.get(&user) {
            for s in slot.sockets.iter().filter(|s| s.proto2 && !s.inert) {
                let _ = s.tx.try_send(Out::Text(frame.clone()));
            }
        }
    }

    // ----- token and account events (MR §3.3) -----

    /// Tokens replaced by a new issuance: retired ones go inert; revoked ones are kicked (kick
    /// frame to the newest socket of a `user` session, then every socket dropped without a
    /// Close frame) or, when bound to no device, go inert.
    pub fn tokens_ended(
        &self,
        user: i64,
        ended: &[(TokenRow, Ended)],
        kick_frame: Option<Arc<str>>,
    ) {
        self.hub.publish(|| cluster::Msg::TokensEnded {
            user,
            ended: ended
                .iter()
                .map(|(r, how)| (r.jti.clone(), matches!(how, Ended::Revoked { kick: true })))
                .collect(),
            kick_frame: kick_frame.as_deref().map(str::to_string),
        });
        for (row, how) in ended {
            match how {
                Ended::Retired | Ended::Revoked { kick: false } => self.make_inert(user, &row.jti),
                Ended::Revoked { kick: true } => self.kick(user, &row.jti, kick_frame.clone()),
            }
        }
    }

    pub fn token_retired(&self, user: i64, jti: &str) {
        self.hub.publish(|| cluster::Msg::Retired {
            user,
            jti: jti.to_string(),
        });
        self.make_inert(user, jti);
    }

    fn make_inert(&self, user: i64, jti: &str) {
        let mut shard = self.hub.shard(user).lock();
        if let Some(slot) = shard.get_mut(&user) {
            for s in slot.sockets.iter_mut().filter(|s| s.jti == jti) {
                s.inert = true;
            }
            self.leave_index_if_offline(user, slot);
        }
    }

    /// A user with no live socket left leaves the fan-out index (under the shard lock, so a
    /// socket registering at the same time cannot be left out of it).
    fn leave_index_if_offline(&self, user: i64, slot: &mut Slot) {
        if slot.online() {
            return;
        }
        if let Some(groups) = slot.groups.take() {
            let mut go = self.hub.group_online.lock();
            for g in groups {
                Self::index_remove(&mut go, g, user);
            }
        }
    }

    fn kick(&self, user: i64, jti: &str, frame: Option<Arc<str>>) {
        {
            let mut shard = self.hub.shard(user).lock();
            let Some(slot) = shard.get_mut(&user) else {
                return;
            };
            let mut newest = true;
            for s in slot.sockets.iter_mut().rev().filter(|s| s.jti == jti) {
                s.inert = true;
                if newest && s.user_role {
                    if let Some(f) = &frame {
                        let _ = s.tx.try_send(Out::Text(f.clone()));
                    }
                }
                newest = false;
                if s.proto2 {
                    // A full queue must not keep a kicked socket alive: abort it instead.
                    if s.tx.try_send(Out::Fail("", 4001)).is_err() {
                        s.abort.notify_one();
                    }
                } else if s.tx.try_send(Out::Drop).is_err() {
                    s.abort.notify_one();
                }
            }
            self.leave_index_if_offline(user, slot);
        }
    }

    /// AF §3.7, D19: every socket of the user gets `你已被管理员禁用` and close 4003.
    pub fn user_disabled(&self, user: i64) {
        self.hub.publish(|| cluster::Msg::Disabled { user });
        self.user_disabled_here(user)
    }

    /// [`Delivery::user_disabled`] for this node's sockets only (every node applies an operator
    /// event from the store itself).
    pub fn user_disabled_here(&self, user: i64) {
        let shard = self.hub.shard(user).lock();
        if let Some(slot) = shard.get(&user) {
            for s in &slot.sockets {
                if s.tx.try_send(Out::Fail("你已被管理员禁用", 4003)).is_err() {
                    s.abort.notify_one();
                }
            }
        }
    }

    /// AF API 三十四: remember the edited field for 60 s (read by the gateway on connect).
    pub fn mark_profile_edit(&self, user: i64, field: &str) {
        let mut m = self.hub.markers.lock();
        if m.len() > 10_000 {
            let now = Instant::now();
            m.retain(|_, (_, t)| *t > now);
        }
        m.insert(
            user,
            (field.to_string(), Instant::now() + Duration::from_secs(60)),
        );
    }

    /// The live marker of a user, if any; a marker other than `avatar` is consumed (MA3).
    pub fn take_profile_marker(&self, user: i64) -> Option<String> {
        let mut m = self.hub.markers.lock();
        match m.get(&user) {
            Some((f, t)) if *t > Instant::now() => {
                let f = f.clone();
                if f != "avatar" {
                    m.remove(&user);
                }
                Some(f)
            }
            Some(_) => {
                m.remove(&user);
                None
            }
            None => None,
        }
    }

    // ----- group membership (fan-out index) -----

    /// A committed join: the member's live entries of the group start now.
    pub fn member_joined(&self, group: i64, user: i64) {
        self.hub.publish(|| cluster::Msg::Member {
            group,
            user,
            change: 0,
        });
        self.member_joined_here(group, user)
    }

    fn member_joined_here(&self, group: i64, user: i64) {
        let mut shard = self.hub.shard(user).lock();
        let Some(slot) = shard.get_mut(&user) else {
            return;
        };
        slot.membership_epoch += 1;
        slot.leaving.retain(|g| *g != group);
        if slot.online() {
            let gs = slot.groups.get_or_insert_with(Vec::new);
            if !gs.contains(&group) {
                gs.push(group);
            }
            self.hub
                .group_online
                .lock()
                .entry(group)
                .or_default()
                .insert(user);
        }
    }

    /// A removal is about to commit: until it has (or has failed), the member's entries of the
    /// group are written from the store, which knows where the membership ends, never live —
    /// so an entry committed after the removal cannot reach them (R8).
    pub fn member_leaving(&self, group: i64, user: i64) {
        self.hub.publish(|| cluster::Msg::Member {
            group,
            user,
            change: 1,
        });
        self.member_leaving_here(group, user)
    }

    fn member_leaving_here(&self, group: i64, user: i64) {
        let mut shard = self.hub.shard(user).lock();
        if let Some(slot) = shard.get_mut(&user) {
            slot.membership_epoch += 1;
            if !slot.leaving.contains(&group) {
                slot.leaving.push(group);
            }
        }
    }

    /// The removal announced by [`Delivery::member_leaving`] did not commit.
    pub fn member_stays(&self, group: i64, user: i64) {
        self.hub.publish(|| cluster::Msg::Member {
            group,
            user,
            change: 2,
        });
        self.member_stays_here(group, user)
    }

    fn member_stays_here(&self, group: i64, user: i64) {
        let mut shard = self.hub.shard(user).lock();
        if let Some(slot) = shard.get_mut(&user) {
            slot.leaving.retain(|g| *g != group);
        }
    }

    /// A committed removal: the member leaves the group's fan-out.
    pub fn member_left(&self, group: i64, user: i64) {
        self.hub.publish(|| cluster::Msg::Member {
            group,
            user,
            change: 3,
        });
        self.member_left_here(group, user)
    }

    fn member_left_here(&self, group: i64, user: i64) {
        let mut shard = self.hub.shard(user).lock();
        let Some(slot) = shard.get_mut(&user) else {
            return;
        };
        slot.membership_epoch += 1;
        slot.leaving.retain(|g| *g != group);
        if let Some(gs) = slot.groups.as_mut() {
            gs.retain(|g| *g != group);
        }
        Self::index_remove(&mut self.hub.group_online.lock(), group, user);
    }

    // ----- cluster -----

    /// Join the cluster: from now on this node tells the others what they must apply.
    pub fn attach_cluster(&self, bus: Arc<cluster::Bus>) {
        let _ = self.hub.cluster.set(bus);
    }

    pub fn cluster(&self) -> Option<&Arc<cluster::Bus>> {
        self.hub.cluster.get()
    }

    /// What another node published, applied to this node's sockets.
    pub fn apply_remote(&self, m: cluster::Msg) {
        match m {
            cluster::Msg::Entry {
                frame,
                seq,
                conv_seq,
                kind,
                from,
                users,
                group,
            } => {
                let e = Committed {
                    frame: Arc::from(frame),
                    seq,
                    conv_seq,
                    kind,
                    from,
                };
                for u in users.unwrap_or_default() {
                    self.hub.offer(u, &e.frame, e.seq, e.conv_seq, None);
                }
                if let Some(g) = group {
                    self.hub.fan_out(g, &e);
                }
            }
            cluster::Msg::TokensEnded {
                user,
                ended,
                kick_frame,
            } => {
                let frame: Option<Arc<str>> = kick_frame.map(Arc::from);
                for (jti, kick) in ended {
                    if kick {
                        self.kick(user, &jti, frame.clone());
                    } else {
                        self.make_inert(user, &jti);
                    }
                }
            }
            cluster::Msg::Retired { user, jti } => self.make_inert(user, &jti),
            cluster::Msg::Disabled { user } => self.user_disabled_here(user),
            cluster::Msg::Member {
                group,
                user,
                change,
            } => match change {
                0 => self.member_joined_here(group, user),
                1 => self.member_leaving_here(group, user),
                2 => self.member_stays_here(group, user),
                _ => self.member_left_here(group, user),
            },
            cluster::Msg::Replay { user, jti } => {
                // Only a node holding a socket of the token (or one upgrading) acts.
                let here = {
                    let shard = self.hub.shard(user).lock();
                    shard.get(&user).is_some_and(|s| {
                        s.connecting.contains_key(&jti) || s.sockets.iter().any(|k| k.jti == jti)
                    })
                };
                if here {
                    let d = self.clone();
                    tokio::spawn(async move { d.replay_here(user, &jti).await });
                }
            }
            cluster::Msg::Proto2 { user, frame } => self.send_proto2_here(user, Arc::from(frame)),
        }
    }

    /// This node may have missed bus messages: check every connected user against the store
    /// (tokens and account state, group memberships) and write what is pending for them.
    pub fn resync_all(&self) {
        let users: Vec<i64> = self
            .hub
            .shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .iter()
                    .filter(|(_, slot)| !slot.sockets.is_empty())
                    .map(|(u, _)| *u)
                    .collect::<Vec<_>>()
            })
            .collect();
        if users.is_empty() {
            return;
        }
        let d = self.clone();
        tokio::spawn(async move {
            for u in users {
                if let Err(e) = d.resync_user(u).await {
                    tracing::warn!(error = %e, user = u, "re-syncing a user from the store failed");
                }
            }
        });
    }

    async fn resync_user(&self, user: i64) -> anyhow::Result<()> {
        let db = &self.hub.db;
        let Some(row) = crate::store::users::by_id(db, user).await? else {
            return Ok(());
        };
        if row.status == 0 {
            self.user_disabled_here(user);
            return Ok(());
        }
        let jtis: Vec<String> = {
            let shard = self.hub.shard(user).lock();
            shard.get(&user).map_or(Vec::new(), |s| {
                s.sockets
                    .iter()
                    .filter(|k| !k.inert)
                    .map(|k| k.jti.clone())
                    .collect()
            })
        };
        for jti in jtis {
            let state = crate::store::tokens::get(db, &jti)
                .await?
                .filter(|t| t.user_id == user)
                .map(|t| t.state);
            match state {
                Some(crate::store::tokens::ACTIVE) => {}
                Some(crate::store::tokens::RETIRED) => self.make_inert(user, &jti),
                _ => self.kick(user, &jti, None),
            }
        }
        self.refresh_groups(user).await?;
        let flush = {
            let mut shard = self.hub.shard(user).lock();
            match shard.get_mut(&user) {
                Some(slot) if slot.chosen().is_some() => {
                    slot.dirty = true;
                    true
                }
                _ => false,
            }
        };
        if flush {
            self.flush(user).await;
        }
        Ok(())
    }

    // ----- lifecycle -----

    /// A receiver that turns true when the server stops: sockets end without a Close frame.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.hub.shutdown.subscribe()
    }

    pub fn shutdown(&self) {
        let _ = self.hub.shutdown.send(true);
    }
}

impl Hub {
    /// Drop a user's slot when nothing is left in it (no socket, upgrade, entry in flight or live
    /// owed replay).
    fn prune(&self, user: i64) {
        let mut shard = self.shard(user).lock();
        let idle = shard.get_mut(&user).is_some_and(|slot| {
            if slot
                .owed
                .as_ref()
                .is_some_and(|(_, until)| *until <= Instant::now())
            {
                slot.owed = None;
            }
            slot.sockets.is_empty()
                && slot.connecting.is_empty()
                && slot.inflight.is_empty()
                && slot.owed.is_none()
                && !slot.flushing
        });
        if idle {
            shard.remove(&user);
        }
    }

    fn shard(&self, user: i64) -> &Mutex<HashMap<i64, Slot>> {
        &self.shards[(user as u64 as usize) % SHARDS]
    }

    /// After each commit, in commit order: give each entry to its online recipients.
    fn dispatch(self: &Arc<Self>, committed: &[(Append, Appended)]) {
        let ts = crate::time::now_ms();
        for (a, ap) in committed {
            let frame: Arc<str> = Arc::from(frame_of(&a.body, ts));
            let entry = Committed {
                frame,
                seq: ap.entry_id,
                conv_seq: ap.conv_seq,
                kind: a.kind,
                from: a.from_id,
            };
            match &a.recipients {
                Recipients::Users(users) => {
                    for u in users {
                        // Offline users: the entry simply stays pending in the store.
                        if let Some(node) = self.presence.node_of(self, *u) {
                            self.bus.to_user(self, node, *u, &entry);
                        }
                    }
                }
                Recipients::Group(g) => self.bus.to_group(self, *g, &entry),
            }
            self.publish(|| cluster::Msg::Entry {
                frame: entry.frame.to_string(),
                seq: entry.seq,
                conv_seq: entry.conv_seq,
                kind: entry.kind,
                from: entry.from,
                users: match &a.recipients {
                    Recipients::Users(u) => Some(u.clone()),
                    Recipients::Group(_) => None,
                },
                group: match &a.recipients {
                    Recipients::Group(g) => Some(*g),
                    Recipients::Users(_) => None,
                },
            });
        }
    }

    /// Tell the other nodes (cluster mode only; the message is built only then).
    fn publish(&self, m: impl FnOnce() -> cluster::Msg) {
        if let Some(bus) = self.cluster.get() {
            bus.publish(m());
        }
    }

    /// Give a committed group entry to the group's online active members on this node (no echo of
    /// a member's own chat message, MR §6.2 R7).
    fn fan_out(self: &Arc<Self>, group: i64, e: &Committed) {
        let members: Vec<i64> = self
            .group_online
            .lock()
            .get(&group)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for u in members {
            if e.kind == timeline::KIND_CHAT && u == e.from {
                continue;
            }
            self.offer(u, &e.frame, e.seq, e.conv_seq, Some((group, e.conv_seq)));
        }
    }

    /// A committed entry for an online user: written now when nothing older is pending for them,
    /// else a flush writes the backlog first (R6).
    fn offer(
        self: &Arc<Self>,
        user: i64,
        frame: &Arc<str>,
        seq: i64,
        conv_seq: i64,
        group: Option<(i64, i64)>,
    ) {
        let mut spawn_flush = false;
        {
            let mut shard = self.shard(user).lock();
            let Some(slot) = shard.get_mut(&user) else {
                return;
            };
            for s in slot.sockets.iter().filter(|s| s.proto2 && !s.inert) {
                let f = proto2_frame(frame, seq, conv_seq);
                if s.tx.try_send(Out::Text(f)).is_err() {
                    s.abort.notify_one();
                }
            }
            let Some(chosen) = slot.chosen() else {
                slot.dirty = true;
                return;
            };
            let leaving = group.is_some_and(|(g, _)| slot.leaving.contains(&g));
            if slot.dirty || slot.flushing || leaving {
                slot.dirty = true;
                if !slot.flushing {
                    slot.flushing = true;
                    spawn_flush = true;
                }
            } else {
                let sock_id = chosen.id;
                let out = Out::Entry {
                    frame: frame.clone(),
                    seq,
                    conv_seq,
                };
                if chosen.tx.try_send(out).is_ok() {
                    slot.inflight.insert(
                        seq,
                        Inflight {
                            sock: sock_id,
                            group,
                            confirmed: false,
                        },
                    );
                } else {
                    // A full queue: the entry stays pending in the store and is written when the
                    // queue drains (memory stays bounded; a dead peer is dropped by the heartbeat).
                    slot.dirty = true;
                }
            }
        }
        if spawn_flush {
            let hub = self.clone();
            tokio::spawn(async move { hub.flush(user).await });
        }
    }

    async fn flush(self: Arc<Self>, user: i64) {
        let lock = {
            let mut shard = self.shard(user).lock();
            let slot = shard.entry(user).or_default();
            slot.flushing = true;
            slot.flush_lock.clone()
        };
        let _guard = lock.lock().await;
        loop {
            {
                let mut shard = self.shard(user).lock();
                let Some(slot) = shard.get_mut(&user) else {
                    return;
                };
                if slot.chosen().is_none() {
                    slot.flushing = false;
                    return;
                }
                slot.dirty = false;
                // From here until the rows are filtered, settled entries are remembered: the
                // read may predate their commit.
                slot.reading = true;
                slot.settled_ids.clear();
                slot.settled_group.clear();
            }
            let rows = self.pending(user).await;
            let ts = crate::time::now_ms();
            let mut shard = self.shard(user).lock();
            let Some(slot) = shard.get_mut(&user) else {
                return;
            };
            slot.reading = false;
            let settled_ids = std::mem::take(&mut slot.settled_ids);
            let settled_group = std::mem::take(&mut slot.settled_group);
            let rows = match rows {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, user, "reading pending entries failed");
                    slot.dirty = true;
                    slot.flushing = false;
                    return;
                }
            };
            let Some(chosen) = slot.chosen() else {
                slot.flushing = false;
                slot.dirty = true;
                return;
            };
            let (sock_id, tx) = (chosen.id, chosen.tx.clone());
            for (row, group) in rows {
                if slot.inflight.contains_key(&row.id)
                    || settled_ids.contains(&row.id)
                    || row.id <= slot.acked_upto
                {
                    continue;
                }
                if let Some((g, s)) = group {
                    if settled_group.contains(&(g, s))
                        || slot
                            .confirmed_above
                            .get(&g)
                            .is_some_and(|set| set.contains(&s))
                    {
                        continue;
                    }
                }
                let frame: Arc<str> = Arc::from(frame_of(&row.body, ts));
                if tx
                    .try_send(Out::Entry {
                        frame,
                        seq: row.id,
                        conv_seq: row.conv_seq,
                    })
                    .is_err()
                {
                    // The queue is full: the rest stays pending and is written when the socket
                    // has drained it (`drained`); a large backlog never drops the socket.
                    slot.dirty = true;
                    slot.flushing = false;
                    return;
                }
                if let Some((g, s)) = group {
                    if let Some(set) = slot.rewound.get_mut(&g) {
                        set.remove(&s);
                    }
                    slot.rewound.retain(|_, set| !set.is_empty());
                }
                slot.inflight.insert(
                    row.id,
                    Inflight {
                        sock: sock_id,
                        group,
                        confirmed: false,
                    },
                );
            }
            if !slot.dirty {
                slot.flushing = false;
                return;
            }
        }
    }

    /// Pending entries of a user from the store: undelivered inbox rows and group entries beyond
    /// the cursors, merged in commit order.
    async fn pending(&self, user: i64) -> sqlx::Result<Vec<(EntryRow, Option<(i64, i64)>)>> {
        let mut rows: Vec<(EntryRow, Option<(i64, i64)>)> = timeline::pending_inbox(&self.db, user)
            .await?
            .into_iter()
            .map(|r| (r, None))
            .collect();
        for c in timeline::cursors_behind(&self.db, user).await? {
            for r in timeline::group_entries_after(&self.db, user, &c, c.delivered_seq).await? {
                let seq = r.conv_seq;
                rows.push((r, Some((c.group_id, seq))));
            }
        }
        rows.sort_by_key(|(r, _)| r.id);
        Ok(rows)
    }

    async fn persist_confirmation(
        &self,
        user: i64,
        sock_id: u64,
        entries: Vec<i64>,
    ) -> anyhow::Result<()> {
        let mut inbox = Vec::new();
        let mut groups: HashMap<i64, Vec<i64>> = HashMap::new();
        {
            let shard = self.shard(user).lock();
            let Some(slot) = shard.get(&user) else {
                return Ok(());
            };
            for id in &entries {
                match slot.inflight.get(id) {
                    Some(f) if f.sock == sock_id => match f.group {
                        Some((g, s)) => groups.entry(g).or_default().push(s),
                        None => inbox.push(*id),
                    },
                    _ => {}
                }
            }
        }
        let writer = self.writer.get().expect("the writer is set at start");
        // Every guard (inflight, confirmed_above) stays until the confirmation has committed,
        // and what is dropped while a flush reads is remembered as settled (no second write).
        if !inbox.is_empty() {
            writer
                .confirm(vec![writer::Confirm::Inbox {
                    user,
                    entries: inbox.clone(),
                }])
                .await?;
            let mut shard = self.shard(user).lock();
            if let Some(slot) = shard.get_mut(&user) {
                for id in &inbox {
                    slot.inflight.remove(id);
                    if slot.reading {
                        slot.settled_ids.insert(*id);
                    }
                }
            }
        }
        // A group cursor only moves past entries with nothing older still in flight.
        let mut advance = Vec::new();
        {
            let mut shard = self.shard(user).lock();
            let Some(slot) = shard.get_mut(&user) else {
                return Ok(());
            };
            for (g, seqs) in &groups {
                let above = slot.confirmed_above.entry(*g).or_default();
                above.extend(seqs.iter().copied());
            }
            // Confirmed group entries are guarded by `confirmed_above` from here on.
            for id in &entries {
                if slot
                    .inflight
                    .get(id)
                    .is_some_and(|f| f.sock == sock_id && f.group.is_some())
                {
                    slot.inflight.remove(id);
                }
            }
            for g in groups.keys() {
                let min_rewound = slot
                    .rewound
                    .get(g)
                    .and_then(|set| set.iter().next().copied());
                let min_inflight = slot
                    .inflight
                    .values()
                    .filter_map(|f| f.group.filter(|(gg, _)| gg == g).map(|(_, s)| s))
                    .chain(min_rewound)
                    .min();
                let above = slot.confirmed_above.entry(*g).or_default();
                let upto = match min_inflight {
                    Some(m) => above.range(..m).next_back().copied(),
                    None => above.iter().next_back().copied(),
                };
                if let Some(u) = upto {
                    advance.push((*g, u));
                }
            }
        }
        if !advance.is_empty() {
            let list = advance
                .iter()
                .map(|(group, seq)| writer::Confirm::Cursor {
                    user,
                    group: *group,
                    seq: *seq,
                })
                .collect();
            writer.confirm(list).await?;
            // Committed: the cursor now guards what `confirmed_above` guarded.
            let mut shard = self.shard(user).lock();
            if let Some(slot) = shard.get_mut(&user) {
                for (g, u) in &advance {
                    let Some(above) = slot.confirmed_above.get_mut(g) else {
                        continue;
                    };
                    let kept = above.split_off(&(u + 1));
                    let dropped = std::mem::replace(above, kept);
                    if slot.reading {
                        slot.settled_group
                            .extend(dropped.into_iter().map(|s| (*g, s)));
                    }
                    if above.is_empty() {
                        slot.confirmed_above.remove(g);
                    }
                }
            }
        }
        self.prune(user);
        Ok(())
    }

    /// A proto-2 ack: every entry of the user up to `seq` is delivered (MR §6.2 R5 c, §7.4) —
    /// inbox rows and group cursors alike, so no socket of any kind replays it again.
    async fn persist_ack(&self, user: i64, seq: i64) -> anyhow::Result<()> {
        {
            let shard = self.shard(user).lock();
            if shard.get(&user).is_some_and(|s| s.acked_upto >= seq) {
                return Ok(());
            }
        }
        let writer = self.writer.get().expect("the writer is set at start");
        writer
            .confirm(vec![writer::Confirm::UpTo { user, seq }])
            .await?;
        let mut shard = self.shard(user).lock();
        if let Some(slot) = shard.get_mut(&user) {
            slot.acked_upto = slot.acked_upto.max(seq);
        }
        Ok(())
    }
}

/// A committed entry on its way to sockets.
struct Committed {
    frame: Arc<str>,
    seq: i64,
    conv_seq: i64,
    kind: i64,
    from: i64,
}

/// A server instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeId(pub u32);

/// This process.
pub const THIS_NODE: NodeId = NodeId(0);

/// The presence seam: which node holds a user's sockets (ARCHITECTURE backends table). Embedded:
/// users with a socket in this process's hub are on this node. A cluster adds a Redis
/// implementation (`SET online_<id> <node> EX …`, refreshed by heartbeats).
pub enum Presence {
    Local,
}

impl Presence {
    fn node_of(&self, hub: &Hub, user: i64) -> Option<NodeId> {
        match self {
            Presence::Local => hub
                .shard(user)
                .lock()
                .contains_key(&user)
                .then_some(THIS_NODE),
        }
    }
}

/// The bus seam: node-to-node delivery of committed entries. Embedded: every node is this one.
/// A cluster adds Redis pub/sub (one channel per node; group entries to every node, each fanning
/// out to its own online members).
pub enum Bus {
    Local,
}

impl Bus {
    fn to_user(&self, hub: &Arc<Hub>, node: NodeId, user: i64, e: &Committed) {
        match self {
            Bus::Local => {
                debug_assert_eq!(node, THIS_NODE);
                hub.offer(user, &e.frame, e.seq, e.conv_seq, None);
            }
        }
    }

    fn to_group(&self, hub: &Arc<Hub>, group: i64, e: &Committed) {
        match self {
            Bus::Local => hub.fan_out(group, e),
        }
    }
}

/// F5 with the EXTENSION keys `seq`/`conv_seq` (MR §7.1).
pub fn proto2_frame(frame: &str, seq: i64, conv_seq: i64) -> Arc<str> {
    let base = frame.strip_suffix('}').unwrap_or(frame);
    Arc::from(format!(r#"{base},"seq":{seq},"conv_seq":{conv_seq}}}"#))
}
