-- An idempotency key stores one message per sender, by construction (hardening): the index
-- becomes unique. Keys a concurrent race stored twice before keep their oldest message only.
UPDATE `im_entry` SET `client_msg_id` = NULL
WHERE `client_msg_id` IS NOT NULL AND `id` NOT IN (
  SELECT MIN(`id`) FROM `im_entry` WHERE `client_msg_id` IS NOT NULL GROUP BY `from_id`, `client_msg_id`
);
DROP INDEX IF EXISTS `im_entry_idem`;
CREATE UNIQUE INDEX IF NOT EXISTS `im_entry_idem_unique` ON `im_entry` (`from_id`, `client_msg_id`);
