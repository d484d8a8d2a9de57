-- Back office (issue 13): manager accounts, separate from chat users, and their sessions
-- (console cookies and API bearer tokens; only a SHA-256 of each token is kept).
CREATE TABLE IF NOT EXISTS `im_manager` (
  `id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `name` VARCHAR(50) NOT NULL,
  `password` VARCHAR(255) NOT NULL,
  `create_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `last_login` DATETIME NULL,
  UNIQUE KEY `im_manager_name` (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS `im_manager_session` (
  `token_hash` CHAR(64) NOT NULL PRIMARY KEY,
  `manager_id` BIGINT NOT NULL,
  `csrf` CHAR(64) NOT NULL,
  `expires_ms` BIGINT NOT NULL,
  `create_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  KEY `im_manager_session_manager` (`manager_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
