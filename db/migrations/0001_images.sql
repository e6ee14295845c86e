CREATE TABLE `images` (
	`uuid` char(36) NOT NULL,
	`name` varchar(255) NOT NULL,
	`disk_format` varchar(8) NOT NULL,
	`status` varchar(16) NOT NULL,
	`sha256` char(64),
	`size` bigint unsigned NOT NULL DEFAULT 0,
	`virtual_size` bigint unsigned NOT NULL DEFAULT 0,
	`raw_sha256` char(64),
	`properties` json NOT NULL,
	`created_at` datetime(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
	CONSTRAINT `images_uuid` PRIMARY KEY(`uuid`),
	CONSTRAINT `images_name_uq` UNIQUE(`name`)
);
--> statement-breakpoint
CREATE INDEX `images_sha_idx` ON `images` (`sha256`);