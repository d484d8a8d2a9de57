-- imrs schema on MySQL/MariaDB. Legacy tables keep the original names and columns (spec AF §5, GR §2);
-- im_* tables are new: tokens (AF §3.3) and durable timelines (ARCHITECTURE "Messages").

CREATE TABLE IF NOT EXISTS `user` (
  `id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `uuid` VARCHAR(36) NOT NULL UNIQUE,
  `username` VARCHAR(50) NOT NULL UNIQUE,
  `password` VARCHAR(255) NOT NULL,
  `nickname` VARCHAR(50) NOT NULL DEFAULT '',
  `avatar` VARCHAR(1000) NULL DEFAULT 'https://thinkphp-all.oss-cn-hangzhou.aliyuncs.com/public/67b3001b2aedd.png',
  `devicefingeruuid` VARCHAR(200) NULL,
  `uniplatform` VARCHAR(50) NULL DEFAULT '',
  `devicemodel` VARCHAR(50) NULL DEFAULT '',
  `deviceos` VARCHAR(50) NULL DEFAULT '',
  `devicebrand` VARCHAR(50) NULL DEFAULT '',
  `mobile` VARCHAR(20) NULL UNIQUE,
  `email` VARCHAR(100) NULL UNIQUE,
  `status` BIGINT NOT NULL DEFAULT 1,
  `last_login` DATETIME NULL,
  `last_login_ip` VARCHAR(45) NULL,
  `register_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `register_ip` VARCHAR(45) NULL,
  `is_deleted` BIGINT NOT NULL DEFAULT 0,
  `wechat_openid` VARCHAR(128) NULL UNIQUE,
  `qq_openid` VARCHAR(128) NULL UNIQUE,
  `weibo_uid` VARCHAR(128) NULL UNIQUE,
  `role` VARCHAR(20) NOT NULL DEFAULT 'user',
  `is_email_verified` BIGINT NOT NULL DEFAULT 0,
  `is_mobile_verified` BIGINT NOT NULL DEFAULT 0,
  `order` BIGINT NULL DEFAULT 50,
  `userset` TEXT NULL,
  `invite_confirm` BIGINT NULL DEFAULT 0,
  `create_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `update_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE INDEX `user_devicefingeruuid` ON `user` (`devicefingeruuid`);

CREATE TABLE IF NOT EXISTS `user_info` (
  `id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `user_id` BIGINT NOT NULL UNIQUE,
  `gender` VARCHAR(20) NOT NULL DEFAULT 'unknown',
  `birthday` DATE NULL,
  `bio` VARCHAR(500) NULL,
  `location` VARCHAR(100) NULL,
  `website` VARCHAR(255) NULL,
  `order` BIGINT NULL DEFAULT 50,
  `create_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `update_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS `goodfriend` (
  `id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `user_id` BIGINT NOT NULL,
  `friend_id` BIGINT NOT NULL,
  `nickname` VARCHAR(50) NOT NULL DEFAULT '',
  `friendlookme` BIGINT NOT NULL DEFAULT 1,
  `melookfriend` BIGINT NOT NULL DEFAULT 1,
  `ismystarfriend` BIGINT NOT NULL DEFAULT 0,
  `isblack` BIGINT NOT NULL DEFAULT 0,
  `status` BIGINT NOT NULL DEFAULT 1,
  `order` BIGINT NULL DEFAULT 50,
  `create_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `update_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (`user_id`, `friend_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE INDEX `goodfriend_friend_id` ON `goodfriend` (`friend_id`);

CREATE TABLE IF NOT EXISTS `goodfriendapply` (
  `id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `user_id` BIGINT NOT NULL,
  `friend_id` BIGINT NOT NULL,
  `nickname` VARCHAR(255) NOT NULL DEFAULT '',
  `friendlookme` BIGINT NOT NULL DEFAULT 1,
  `melookfriend` BIGINT NOT NULL DEFAULT 1,
  `ismystarfriend` BIGINT NOT NULL DEFAULT 0,
  `isblack` BIGINT NOT NULL DEFAULT 0,
  `status` VARCHAR(10) NOT NULL DEFAULT 'pending',
  `order` BIGINT NULL DEFAULT 50,
  `create_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `update_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE INDEX `goodfriendapply_pair` ON `goodfriendapply` (`user_id`, `friend_id`);
CREATE INDEX `goodfriendapply_friend_id` ON `goodfriendapply` (`friend_id`);

CREATE TABLE IF NOT EXISTS `group` (
  `id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `uuid` VARCHAR(36) NOT NULL,
  `user_id` BIGINT NOT NULL,
  `name` VARCHAR(50) NOT NULL DEFAULT '',
  `avatar` TEXT NOT NULL,
  `remark` VARCHAR(500) NOT NULL DEFAULT '',
  `invite_confirm` BIGINT NOT NULL DEFAULT 0,
  `status` BIGINT NOT NULL DEFAULT 1,
  `order` BIGINT NOT NULL DEFAULT 50,
  `create_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `update_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS `group_user` (
  `id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `group_id` BIGINT NOT NULL,
  `user_id` BIGINT NOT NULL,
  `nickname` VARCHAR(50) NOT NULL DEFAULT '',
  `avatar` VARCHAR(1000) NOT NULL DEFAULT '',
  `status` BIGINT NOT NULL DEFAULT 1,
  `order` BIGINT NOT NULL DEFAULT 50,
  `create_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `update_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (`group_id`, `user_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE INDEX `group_user_user_id` ON `group_user` (`user_id`);

-- Tokens (AF §3.3): one row per issued token; state 1 active, 2 retired, 3 revoked.
-- im_session holds the user's one active token and is the row every issuance locks.
CREATE TABLE IF NOT EXISTS `im_token` (
  `jti` VARCHAR(64) NOT NULL PRIMARY KEY,
  `user_id` BIGINT NOT NULL,
  `device_id` VARCHAR(200) NULL,
  `role` VARCHAR(20) NOT NULL,
  `iat` BIGINT NOT NULL,
  `state` BIGINT NOT NULL,
  `end_time` DATETIME NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE INDEX `im_token_user` ON `im_token` (`user_id`, `state`);
CREATE INDEX `im_token_device` ON `im_token` (`device_id`, `state`);
CREATE TABLE IF NOT EXISTS `im_session` (
  `user_id` BIGINT NOT NULL PRIMARY KEY,
  `jti` VARCHAR(64) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- Durable timelines. im_conv: one sequence per conversation ('p:<a>:<b>' user pair,
-- 'g:<id>' group, 'n:<id>' a user's notices). im_entry: every message and notice, once.
CREATE TABLE IF NOT EXISTS `im_conv` (
  `conv_key` VARCHAR(64) NOT NULL PRIMARY KEY,
  `last_seq` BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE IF NOT EXISTS `im_entry` (
  `id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `conv_key` VARCHAR(64) NOT NULL,
  `conv_seq` BIGINT NOT NULL,
  `msg_id` VARCHAR(36) NOT NULL,
  `kind` BIGINT NOT NULL,
  `chat_type` VARCHAR(10) NOT NULL,
  `from_id` BIGINT NOT NULL,
  `to_id` BIGINT NOT NULL,
  `history` BIGINT NOT NULL,
  `revoked` BIGINT NOT NULL DEFAULT 0,
  `client_msg_id` VARCHAR(64) NULL,
  `create_time` BIGINT NOT NULL,
  `body` MEDIUMTEXT NOT NULL,
  UNIQUE (`conv_key`, `conv_seq`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE INDEX `im_entry_msg` ON `im_entry` (`msg_id`);
CREATE INDEX `im_entry_pair` ON `im_entry` (`from_id`, `to_id`, `kind`);
CREATE INDEX `im_entry_idem` ON `im_entry` (`from_id`, `client_msg_id`);
-- Delivery entries of individually addressed items (1:1 messages, notices): one row per recipient.
CREATE TABLE IF NOT EXISTS `im_inbox` (
  `id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `user_id` BIGINT NOT NULL,
  `entry_id` BIGINT NOT NULL,
  `delivered` BIGINT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE INDEX `im_inbox_pending` ON `im_inbox` (`user_id`, `delivered`, `entry_id`);
-- Group delivery: one cursor per member and membership interval (GR GD8), no per-recipient rows.
CREATE TABLE IF NOT EXISTS `im_group_cursor` (
  `group_id` BIGINT NOT NULL,
  `user_id` BIGINT NOT NULL,
  `conv_key` VARCHAR(64) NOT NULL,
  `join_seq` BIGINT NOT NULL,
  `left_seq` BIGINT NULL,
  `delivered_seq` BIGINT NOT NULL,
  `read_seq` BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (`group_id`, `user_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE INDEX `im_group_cursor_user` ON `im_group_cursor` (`user_id`);
-- Read cursors of single conversations (EXTENSION MR §7.6).
CREATE TABLE IF NOT EXISTS `im_read_cursor` (
  `user_id` BIGINT NOT NULL,
  `conv_key` VARCHAR(64) NOT NULL,
  `read_seq` BIGINT NOT NULL,
  PRIMARY KEY (`user_id`, `conv_key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
-- Operator actions the running server must apply to live sockets (bans from `imrs admin`).
CREATE TABLE IF NOT EXISTS `im_admin_event` (
  `id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `user_id` BIGINT NOT NULL,
  `kind` VARCHAR(20) NOT NULL,
  `create_time` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
