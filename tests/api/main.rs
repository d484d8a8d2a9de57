//! End-to-end tests: the real server on port 0, real HTTP and websocket clients.
//! The same suite runs on SQLite and, with `IMRS_TEST_DATABASE_URL`, on MariaDB.

mod common;

mod accounts;
mod admin;
mod admin_browser;
mod admin_cli;
mod cluster;
mod crash;
mod friends;
mod groups;
mod hardening;
mod legacy;
mod media;
mod messaging;
