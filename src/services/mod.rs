//! The rules of the spec: who may do what, in which order, which notice goes to whom.

pub mod accounts;
pub mod passwords;
pub mod pinyin;
pub mod tokens;
pub mod visitor;
