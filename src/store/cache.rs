//! Hot rows in memory for the embedded (single-process SQLite) backend: users by id, tokens by jti
//! and friendship rows by pair, read on every request or message. Every committed write
//! transaction that touched `user`, `im_token` or `goodfriend` clears the matching map; a generation counter keeps a read that raced a commit from
//! caching what it read before it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::friends::FriendRow;
use super::tokens::TokenRow;
use super::users::UserRow;

pub const USERS: u8 = 1;
pub const TOKENS: u8 = 2;
pub const FRIENDS: u8 = 4;

/// Which cached tables a write statement may change: the table named right after `UPDATE`,
/// `INTO`, `FROM` (DELETE) or `TABLE` (ALTER), quoted or not.
pub fn touched_by(sql: &str) -> u8 {
    let head: String = sql
        .chars()
        .take(160)
        .collect::<String>()
        .to_ascii_lowercase()
        .replace('`', " ");
    let words: Vec<&str> = head
        .split(|c: char| c.is_whitespace() || c == '(' || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let mut t = 0;
    for w in words.windows(2) {
        if matches!(w[0], "update" | "into" | "from" | "table") {
            t |= match w[1] {
                "user" => USERS,
                "im_token" => TOKENS,
                "goodfriend" => FRIENDS,
                _ => 0,
            };
        }
    }
    t
}

#[derive(Default)]
pub struct Cache {
    generation: AtomicU64,
    users: Mutex<HashMap<i64, UserRow>>,
    tokens: Mutex<HashMap<String, TokenRow>>,
    /// (owner, friend) → the owner's row for the friend, or its absence.
    friends: Mutex<HashMap<(i64, i64), Option<FriendRow>>>,
}

const MAX_ENTRIES: usize = 200_000;

impl Cache {
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn invalidate(&self, touched: u8) {
        if touched == 0 {
            return;
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        if touched & USERS != 0 {
            self.users.lock().clear();
        }
        if touched & TOKENS != 0 {
            self.tokens.lock().clear();
        }
        if touched & FRIENDS != 0 {
            self.friends.lock().clear();
        }
    }

    /// Forget everything (another process changed the store, e.g. `imrs admin ban`).
    pub fn invalidate_all(&self) {
        self.invalidate(USERS | TOKENS | FRIENDS);
    }

    pub fn user(&self, id: i64) -> Option<UserRow> {
        self.users.lock().get(&id).cloned()
    }

    /// Keep a row read while the generation was `seen` (dropped if a write committed since).
    pub fn put_user(&self, seen: u64, row: &UserRow) {
        let mut m = self.users.lock();
        if self.generation() == seen {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(row.id, row.clone());
        }
    }

    pub fn token(&self, jti: &str) -> Option<TokenRow> {
        self.tokens.lock().get(jti).cloned()
    }

    pub fn put_token(&self, seen: u64, row: &TokenRow) {
        let mut m = self.tokens.lock();
        if self.generation() == seen {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(row.jti.clone(), row.clone());
        }
    }
}

impl Cache {
    pub fn friend(&self, owner: i64, friend: i64) -> Option<Option<FriendRow>> {
        self.friends.lock().get(&(owner, friend)).cloned()
    }

    pub fn put_friend(&self, seen: u64, owner: i64, friend: i64, row: &Option<FriendRow>) {
        let mut m = self.friends.lock();
        if self.generation() == seen {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert((owner, friend), row.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_classified_by_their_target_table() {
        assert_eq!(touched_by("UPDATE `user` SET `status` = ?"), USERS);
        assert_eq!(touched_by("update user set x=1"), USERS);
        assert_eq!(
            touched_by("INSERT INTO `im_inbox` (`user_id`,`entry_id`) VALUES (?,?)"),
            0
        );
        assert_eq!(
            touched_by("INSERT INTO `user_info` (`user_id`) VALUES (?)"),
            0
        );
        assert_eq!(
            touched_by("DELETE FROM goodfriend WHERE user_id = ?"),
            FRIENDS
        );
        assert_eq!(touched_by("ALTER TABLE `goodfriend` RENAME TO x"), FRIENDS);
        assert_eq!(touched_by("UPDATE `im_token` SET `state` = 2"), TOKENS);
        assert_eq!(
            touched_by("INSERT IGNORE INTO `im_session` (`user_id`) VALUES (?)"),
            0
        );
    }
}
