-- Running server processes (nodes): which operator events (`im_admin_event`) each has applied,
-- so that `imrs admin ban` returns only once every running node has applied it.
CREATE TABLE IF NOT EXISTS `im_node` (
  `node_id` VARCHAR(64) NOT NULL PRIMARY KEY,
  `admin_event_seen` BIGINT NOT NULL,
  `seen_at` BIGINT NOT NULL
);
