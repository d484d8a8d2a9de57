//! The rules of the spec: who may do what, in which order, which notice goes to whom.

pub mod accounts;
pub mod admin;
pub mod friends;
pub mod groups;
pub mod legacy_import;
pub mod managers;
pub mod media;
pub mod messaging;
pub mod notices;
pub mod passwords;
pub mod pinyin;
pub mod tokens;
pub mod visitor;

/// A page of a list (AF §6.3).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}
