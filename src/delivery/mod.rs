//! Delivery: pushes frames to connected users (ARCHITECTURE "delivery"). Sessions of this node,
//! presence and the bus are its seams.

use crate::services::tokens::Ended;
use crate::store::tokens::TokenRow;

#[derive(Default)]
pub struct Delivery {}

impl Delivery {
    /// Tokens replaced by a new issuance: retired ones go inert, revoked ones are kicked.
    pub fn tokens_ended(&self, _user_id: i64, _ended: &[(TokenRow, Ended)]) {}
    /// A logged-out token: its sockets stay open and go inert.
    pub fn token_retired(&self, _user_id: i64, _jti: &str) {}
    /// AF API 三十四: remember the edited field for 60 s.
    pub fn mark_profile_edit(&self, _user_id: i64, _field: &str) {}
    /// AF §3.7: close every socket of the user with `你已被管理员禁用` + 4003.
    pub fn user_disabled(&self, _user_id: i64) {}
}
