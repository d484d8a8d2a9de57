//! `imrs import-redis` (spec LT3, issue 16 item 5): the original's offline queues
//! (`chat_getmessage_<uid>`, oldest first) become timeline entries their users receive on the
//! next `chatGetmessageOffLine`, in the original order, each once. 1:1 messages go on the pair
//! timeline, group messages once on the group timeline (deduplicated by id across the members'
//! queues, each member's cursor placed so that they get exactly what was queued for them),
//! notices on the user's notice timeline; a revoke notice revokes its message. Redis is only read.
//! The whole import is one transaction: it happens completely or not at all, and a second run
//! finds every message id already stored and changes nothing.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::fmt;

use anyhow::Context;
use serde_json::Value;

use crate::store::legacy::import as sql;
use crate::store::timeline::{
    self, group_key, notice_key, pair_key, Append, Recipients, KIND_CHAT, KIND_NOTICE, KIND_REVOKE,
};
use crate::store::Db;

const QUEUE_PREFIX: &str = "chat_getmessage_";

/// What one queue element is, once parsed.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Single,
    Group(i64),
    Notice,
    Revoke { group: Option<i64> },
}

#[derive(Debug, Clone)]
struct Item {
    owner: i64,
    id: String,
    kind: Kind,
    from_id: i64,
    to_id: i64,
    create_time: i64,
    body: String,
}

/// An integer given as a JSON number or a numeric string.
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Parse one queue element of user `owner`; the error says why it is skipped.
fn parse(owner: i64, raw: &str) -> Result<Item, String> {
    let v: Value = serde_json::from_str(raw).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(m) = &v else {
        return Err("not a JSON object".into());
    };
    let id = match m.get("id") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 36 => s.clone(),
        _ => return Err("no message id (a string of 1 to 36 characters)".into()),
    };
    let chat_type = match m.get("chatType").and_then(Value::as_str) {
        Some(c @ ("single" | "group")) => c,
        _ => return Err("chatType is neither single nor group".into()),
    };
    let create_time = m
        .get("create_time")
        .and_then(int)
        .filter(|t| *t > 0)
        .ok_or("no create_time in epoch milliseconds")?;
    let to_id = m.get("to_id").and_then(int).ok_or("no numeric to_id")?;
    let (from_id, from_is_name) = match m.get("from_id") {
        Some(Value::String(s)) if s.trim().parse::<i64>().is_err() => (0, !s.is_empty()),
        Some(f) => (int(f).ok_or("from_id is not a user id")?, false),
        None => return Err("no from_id".into()),
    };
    let system = m.get("type").and_then(Value::as_str) == Some("systemNotice");
    let kind = if system && m.get("actionType").and_then(Value::as_str) == Some("revoke") {
        Kind::Revoke {
            group: (chat_type == "group").then_some(to_id),
        }
    } else if from_is_name || (system && chat_type == "single") {
        Kind::Notice
    } else if chat_type == "group" {
        Kind::Group(to_id)
    } else {
        Kind::Single
    };
    if matches!(kind, Kind::Single | Kind::Group(_) | Kind::Revoke { .. }) && from_id <= 0 {
        return Err("from_id is not a user id".into());
    }
    Ok(Item {
        owner,
        id,
        kind,
        from_id,
        to_id,
        create_time,
        body: raw.trim().to_string(),
    })
}

/// What the import found and did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub dry_run: bool,
    pub queues: usize,
    pub entries_read: usize,
    pub single: usize,
    pub group: usize,
    pub notices: usize,
    pub revokes: usize,
    /// Group message copies beyond the first (the same id in several members' queues).
    pub group_copies_merged: usize,
    /// Elements whose id (and kind) appeared earlier in the same import.
    pub duplicates: usize,
    /// Entries a previous run (or imrs itself) had already stored.
    pub already_imported: usize,
    pub skipped_unknown_user: usize,
    pub skipped_unknown_group: usize,
    pub malformed: Vec<String>,
    /// Ignored keys by kind (history lists, tokens, presence, visitor limits, other).
    pub ignored: BTreeMap<&'static str, usize>,
    /// Group entries some member will receive although the original had not queued them for
    /// that member (their queue was not a suffix of the group's imported messages).
    pub extra_group_deliveries: usize,
    /// Members whose queue held a group message but who are no active member any more.
    pub undeliverable_group_copies: usize,
}

impl Report {
    pub fn imported(&self) -> usize {
        self.single + self.group + self.notices + self.revokes
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run {
            "would import"
        } else {
            "imported"
        };
        writeln!(
            f,
            "offline queues: {} ({} entries read)",
            self.queues, self.entries_read
        )?;
        writeln!(
            f,
            "{verb}: {} entries ({} single, {} group, {} notices, {} revokes)",
            self.imported(),
            self.single,
            self.group,
            self.notices,
            self.revokes
        )?;
        writeln!(
            f,
            "group copies merged: {}; duplicates skipped: {}; already imported: {}",
            self.group_copies_merged, self.duplicates, self.already_imported
        )?;
        writeln!(
            f,
            "skipped: {} for unknown users, {} for unknown groups, {} malformed",
            self.skipped_unknown_user,
            self.skipped_unknown_group,
            self.malformed.len()
        )?;
        for m in &self.malformed {
            writeln!(f, "  malformed {m}")?;
        }
        if self.extra_group_deliveries + self.undeliverable_group_copies > 0 {
            writeln!(
                f,
                "group cursors: {} extra deliveries (clients dedup by id), {} copies for users no longer active members",
                self.extra_group_deliveries, self.undeliverable_group_copies
            )?;
        }
        let ignored: Vec<String> = self
            .ignored
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        write!(
            f,
            "ignored keys: {}",
            if ignored.is_empty() {
                "none".to_string()
            } else {
                ignored.join(", ")
            }
        )
    }
}

/// Which kind of key an ignored key is (LT3: sessions, presence and limits are not data).
fn ignored_kind(key: &str) -> &'static str {
    if key.starts_with("chatlog") {
        "history lists (chatlog)"
    } else if key == "chat_user_online" || key.starts_with("online_") {
        "presence"
    } else if key.starts_with("chat_user_") {
        "tokens"
    } else if key.starts_with("chat_visitor") || key.contains("visitor") {
        "visitor limits"
    } else {
        "other"
    }
}

/// Read every key of the original's Redis (SCAN, never KEYS; nothing is written).
async fn read_queues(
    con: &mut redis::aio::MultiplexedConnection,
    report: &mut Report,
) -> anyhow::Result<Vec<(String, i64, Vec<Vec<u8>>)>> {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await
            .context("SCAN")?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    let mut queues = Vec::new();
    for key in keys {
        let Some(uid) = key.strip_prefix(QUEUE_PREFIX) else {
            *report.ignored.entry(ignored_kind(&key)).or_default() += 1;
            continue;
        };
        let Some(uid) = uid.parse::<i64>().ok().filter(|u| *u > 0) else {
            report
                .malformed
                .push(format!("key {key}: not chat_getmessage_<user id>"));
            continue;
        };
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(con).await?;
        if kind != "list" {
            report
                .malformed
                .push(format!("key {key}: a {kind}, not a list"));
            continue;
        }
        let items: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query_async(con)
            .await
            .with_context(|| format!("LRANGE {key}"))?;
        queues.push((key, uid, items));
    }
    queues.sort_by_key(|q| q.1);
    Ok(queues)
}

/// Merge the queues into one order that keeps each queue's own order: repeatedly take the
/// oldest head (ties: lower user id first).
fn merge(queues: Vec<Vec<Item>>) -> Vec<Item> {
    let mut heads: Vec<std::collections::VecDeque<Item>> =
        queues.into_iter().map(Into::into).collect();
    let mut heap = BinaryHeap::new();
    for (qi, q) in heads.iter().enumerate() {
        if let Some(h) = q.front() {
            heap.push(std::cmp::Reverse((h.create_time, qi)));
        }
    }
    let mut out = Vec::new();
    while let Some(std::cmp::Reverse((_, qi))) = heap.pop() {
        if let Some(item) = heads[qi].pop_front() {
            out.push(item);
        }
        if let Some(h) = heads[qi].front() {
            heap.push(std::cmp::Reverse((h.create_time, qi)));
        }
    }
    out
}

/// One entry to write, with the users it was queued for (several for group entries).
struct Planned {
    item: Item,
    recipients: BTreeSet<i64>,
}

fn kind_code(k: &Kind) -> i64 {
    match k {
        Kind::Single | Kind::Group(_) => KIND_CHAT,
        Kind::Notice => KIND_NOTICE,
        Kind::Revoke { .. } => KIND_REVOKE,
    }
}

/// The conversation an item belongs to (a revoke's may be corrected to its message's).
fn conv_of(i: &Item) -> String {
    match i.kind {
        Kind::Single | Kind::Revoke { group: None } => pair_key(i.from_id, i.owner),
        Kind::Group(g) | Kind::Revoke { group: Some(g) } => group_key(g),
        Kind::Notice => notice_key(i.owner),
    }
}

/// Import the offline queues of the Redis at `redis_url` into `db` (which must have imrs's
/// schema). With `dry_run`, everything is read and counted and nothing is written.
pub async fn import_redis(db: &Db, redis_url: &str, dry_run: bool) -> anyhow::Result<Report> {
    match crate::store::legacy::classify(db).await? {
        crate::store::legacy::Schema::Imrs => {}
        crate::store::legacy::Schema::Original { .. } => {
            anyhow::bail!("the database still has the original's schema: run `imrs migrate` first")
        }
        other => anyhow::bail!(
            "the database does not have imrs's schema ({other:?}): run `imrs migrate` first"
        ),
    }
    let client =
        redis::Client::open(redis_url).with_context(|| format!("bad Redis URL {redis_url}"))?;
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis")?;
    let mut report = Report {
        dry_run,
        ..Report::default()
    };
    let raw = read_queues(&mut con, &mut report).await?;
    report.queues = raw.len();
    let mut parsed = Vec::new();
    for (key, uid, items) in raw {
        let mut q = Vec::new();
        for (pos, bytes) in items.into_iter().enumerate() {
            report.entries_read += 1;
            let item = std::str::from_utf8(&bytes)
                .map_err(|_| "not UTF-8".to_string())
                .and_then(|s| parse(uid, s));
            match item {
                Ok(i) => q.push(i),
                Err(why) => report.malformed.push(format!("{key}[{pos}]: {why}")),
            }
        }
        parsed.push(q);
    }
    let items = merge(parsed);

    let owners: Vec<i64> = items
        .iter()
        .map(|i| i.owner)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let users = sql::existing_ids(db, "user", &owners).await?;
    let gids: Vec<i64> = items
        .iter()
        .filter_map(|i| match i.kind {
            Kind::Group(g) | Kind::Revoke { group: Some(g) } => Some(g),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let groups = sql::existing_ids(db, "group", &gids).await?;

    // Deduplicate: group entries by (id, kind) across queues, others by (id, kind, owner).
    let mut plan: Vec<Planned> = Vec::new();
    let mut group_index: HashMap<(String, i64), usize> = HashMap::new();
    let mut seen: HashSet<(String, i64, i64)> = HashSet::new();
    for item in items {
        if !users.contains(&item.owner) {
            report.skipped_unknown_user += 1;
            continue;
        }
        let code = kind_code(&item.kind);
        match item.kind {
            Kind::Group(g) | Kind::Revoke { group: Some(g) } => {
                if !groups.contains(&g) {
                    report.skipped_unknown_group += 1;
                    continue;
                }
                let key = (item.id.clone(), code);
                if let Some(&at) = group_index.get(&key) {
                    if plan[at].recipients.insert(item.owner) {
                        report.group_copies_merged += 1;
                    } else {
                        report.duplicates += 1;
                    }
                    continue;
                }
                group_index.insert(key, plan.len());
            }
            _ => {
                if !seen.insert((item.id.clone(), code, item.owner)) {
                    report.duplicates += 1;
                    continue;
                }
            }
        }
        let recipients = BTreeSet::from([item.owner]);
        plan.push(Planned { item, recipients });
    }
    let mut todo = Vec::new();
    for p in plan {
        let conv = conv_of(&p.item);
        // Chat messages are unique by id; notices and revokes by id within their conversation.
        let code = kind_code(&p.item.kind);
        let scope = (code != KIND_CHAT).then_some(conv.as_str());
        if sql::entry_exists(db, &p.item.id, code, scope).await? {
            report.already_imported += 1;
            continue;
        }
        match p.item.kind {
            Kind::Single => report.single += 1,
            Kind::Group(_) => report.group += 1,
            Kind::Notice => report.notices += 1,
            Kind::Revoke { .. } => report.revokes += 1,
        }
        todo.push(p);
    }
    if dry_run || todo.is_empty() {
        return Ok(report);
    }
    write(db, todo, &mut report).await?;
    Ok(report)
}

/// A group entry written by this import.
struct GroupEntry {
    seq: i64,
    recipients: BTreeSet<i64>,
    from_id: i64,
    chat: bool,
}

async fn write(db: &Db, todo: Vec<Planned>, report: &mut Report) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    let mut last_before: BTreeMap<i64, i64> = BTreeMap::new();
    let mut written: BTreeMap<i64, Vec<GroupEntry>> = BTreeMap::new();
    for p in todo {
        let i = p.item;
        let mut conv = conv_of(&i);
        let mut revokes = None;
        if let Kind::Revoke { .. } = i.kind {
            if let Some((target, target_conv)) = sql::chat_entry(&mut tx, &i.id).await? {
                revokes = Some(target);
                conv = target_conv;
            }
        }
        let group = match i.kind {
            Kind::Group(g) | Kind::Revoke { group: Some(g) } => Some(g),
            _ => None,
        };
        if let Some(g) = group {
            if let std::collections::btree_map::Entry::Vacant(e) = last_before.entry(g) {
                e.insert(timeline::last_seq(&mut tx, &conv).await?);
            }
        }
        let recipients = match group {
            Some(g) => Recipients::Group(g),
            // No echo: a message queued for its own sender is stored for nobody (R7).
            None if i.kind != Kind::Notice && i.from_id == i.owner => Recipients::Users(vec![]),
            None => Recipients::Users(vec![i.owner]),
        };
        let appended = timeline::append(
            &mut tx,
            &Append {
                conv_key: conv,
                msg_id: i.id.clone(),
                kind: kind_code(&i.kind),
                chat_type: if group.is_some() { "group" } else { "single" },
                from_id: i.from_id,
                to_id: if group.is_some() { i.to_id } else { i.owner },
                history: true,
                client_msg_id: None,
                create_time: i.create_time,
                body: i.body,
                recipients,
                revokes,
            },
        )
        .await?;
        if let Some(g) = group {
            written.entry(g).or_default().push(GroupEntry {
                seq: appended.conv_seq,
                recipients: p.recipients,
                from_id: i.from_id,
                chat: i.kind == Kind::Group(g),
            });
        }
    }
    for (g, entries) in &written {
        let before = last_before.get(g).copied().unwrap_or(0);
        let last_after = entries.iter().map(|e| e.seq).max().unwrap_or(before);
        let cursors = sql::open_cursors(&mut tx, *g).await?;
        let members: HashSet<i64> = cursors.iter().map(|c| c.0).collect();
        for e in entries {
            report.undeliverable_group_copies +=
                e.recipients.iter().filter(|u| !members.contains(u)).count();
        }
        for (user, delivered) in cursors {
            let owed = |e: &GroupEntry| !(e.chat && e.from_id == user);
            if delivered < before {
                // Still owed older entries: it receives every imported one too.
                report.extra_group_deliveries += entries
                    .iter()
                    .filter(|e| owed(e) && !e.recipients.contains(&user))
                    .count();
                continue;
            }
            let first = entries
                .iter()
                .filter(|e| e.recipients.contains(&user))
                .map(|e| e.seq)
                .min();
            let at = first.map(|s| s - 1).unwrap_or(last_after);
            report.extra_group_deliveries += entries
                .iter()
                .filter(|e| e.seq > at && owed(e) && !e.recipients.contains(&user))
                .count();
            sql::set_delivered(&mut tx, *g, user, at).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_elements_parse_into_their_kinds() {
        let single = r#"{"id":"a","from_id":2,"to_id":1,"chatType":"single","type":"text","data":{},"create_time":5}"#;
        assert_eq!(parse(1, single).expect("ok").kind, Kind::Single);
        let group =
            r#"{"id":"b","from_id":3,"to_id":7,"chatType":"group","type":"text","create_time":5}"#;
        assert_eq!(parse(1, group).expect("ok").kind, Kind::Group(7));
        let notice = r#"{"id":"c","from_id":"redirect-applyFriend-5","to_id":1,"chatType":"single","type":"text","create_time":5}"#;
        assert_eq!(parse(1, notice).expect("ok").kind, Kind::Notice);
        let friends = r#"{"id":"d","from_id":1,"to_id":9,"chatType":"single","type":"systemNotice","create_time":5}"#;
        assert_eq!(parse(9, friends).expect("ok").kind, Kind::Notice);
        let revoke = r#"{"id":"e","from_id":4,"to_id":1,"chatType":"single","type":"systemNotice","actionType":"revoke","create_time":5}"#;
        assert_eq!(
            parse(1, revoke).expect("ok").kind,
            Kind::Revoke { group: None }
        );
        for bad in [
            "nope",
            "[1]",
            r#"{"from_id":2,"to_id":1,"chatType":"single","create_time":5}"#,
            r#"{"id":"x","from_id":2,"to_id":1,"chatType":"other","create_time":5}"#,
            r#"{"id":"x","from_id":2,"to_id":1,"chatType":"single"}"#,
            r#"{"id":"x","from_id":null,"to_id":1,"chatType":"single","create_time":5}"#,
        ] {
            assert!(parse(1, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn merging_keeps_each_queue_in_order() {
        let item = |owner, id: &str, t| Item {
            owner,
            id: id.into(),
            kind: Kind::Single,
            from_id: 2,
            to_id: owner,
            create_time: t,
            body: String::new(),
        };
        let merged = merge(vec![
            vec![item(1, "a", 10), item(1, "b", 30)],
            vec![item(9, "c", 20), item(9, "d", 40)],
        ]);
        let ids: Vec<&str> = merged.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "b", "d"]);
    }
}
