ALTER TABLE `nodes` ADD `deploy_image_sha256` char(64);--> statement-breakpoint
ALTER TABLE `nodes` ADD `deploy_committed_offset` bigint unsigned DEFAULT 0 NOT NULL;