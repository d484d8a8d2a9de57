//! The rules of the spec: who may do what, in which order, which notice goes to whom.

pub mod accounts;
pub mod friends;
pub mod groups;
pub mod media;
pub mod messaging;
pub mod notices;
pub mod passwords;
pub mod pinyin;
pub mod tokens;
pub mod visitor;
