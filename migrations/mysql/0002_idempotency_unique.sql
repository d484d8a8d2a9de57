-- An idempotency key stores one message per sender, by construction (hardening): the index
-- becomes unique. Keys a concurrent race stored twice before keep their oldest message only.
UPDATE `im_entry` e JOIN (
  SELECT `from_id`, `client_msg_id`, MIN(`id`) AS `keep` FROM `im_entry`
  WHERE `client_msg_id` IS NOT NULL GROUP BY `from_id`, `client_msg_id` HAVING COUNT(*) > 1
) d ON d.`from_id` = e.`from_id` AND d.`client_msg_id` = e.`client_msg_id` AND e.`id` <> d.`keep`
SET e.`client_msg_id` = NULL;
-- Keys compare exactly (the table's collation ignores case and trailing spaces).
ALTER TABLE `im_entry` MODIFY `client_msg_id` VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;
CREATE UNIQUE INDEX `im_entry_idem_unique` ON `im_entry` (`from_id`, `client_msg_id`);
DROP INDEX `im_entry_idem` ON `im_entry`;
