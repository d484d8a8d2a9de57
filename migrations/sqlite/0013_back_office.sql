-- Back office (issue 13): manager accounts, separate from chat users, and their sessions
-- (console cookies and API bearer tokens; only a SHA-256 of each token is kept).
CREATE TABLE IF NOT EXISTS `im_manager` (
  `id` INTEGER PRIMARY KEY AUTOINCREMENT,
  `name` VARCHAR(50) NOT NULL UNIQUE,
  `password` VARCHAR(255) NOT NULL,
  `create_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `last_login` DATETIME NULL
);

CREATE TABLE IF NOT EXISTS `im_manager_session` (
  `token_hash` CHAR(64) NOT NULL PRIMARY KEY,
  `manager_id` INTEGER NOT NULL,
  `csrf` CHAR(64) NOT NULL,
  `expires_ms` BIGINT NOT NULL,
  `create_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS `im_manager_session_manager` ON `im_manager_session` (`manager_id`);
