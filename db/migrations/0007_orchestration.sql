CREATE TABLE `flavors` (
	`uuid` char(36) NOT NULL,
	`name` varchar(255) NOT NULL,
	`ram_mb` int unsigned NOT NULL,
	`disk_gb` int unsigned NOT NULL,
	`cpus` int unsigned NOT NULL,
	`extra_specs` json NOT NULL,
	`created_at` datetime(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
	CONSTRAINT `flavors_uuid` PRIMARY KEY(`uuid`),
	CONSTRAINT `flavors_name_uq` UNIQUE(`name`)
);
--> statement-breakpoint
CREATE TABLE `instances` (
	`uuid` char(36) NOT NULL,
	`name` varchar(255) NOT NULL,
	`project` varchar(64) NOT NULL,
	`flavor_uuid` char(36) NOT NULL,
	`image_uuid` char(36) NOT NULL,
	`node_uuid` char(36),
	`state` varchar(16) NOT NULL,
	`progress` int unsigned NOT NULL DEFAULT 0,
	`last_error` text,
	`user_data` mediumblob,
	`ssh_keys` json NOT NULL,
	`network` json NOT NULL,
	`address` varchar(45),
	`created_at` datetime(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
	`updated_at` datetime(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
	CONSTRAINT `instances_uuid` PRIMARY KEY(`uuid`)
);
--> statement-breakpoint
ALTER TABLE `nodes` MODIFY COLUMN `group_name` varchar(64) NOT NULL DEFAULT 'default';--> statement-breakpoint
ALTER TABLE `nodes` ADD `agent_token_sealed` varbinary(512);--> statement-breakpoint
ALTER TABLE `nodes` ADD `agent_token_delivered` boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE `nodes` ADD `resource_class` varchar(80) DEFAULT '' NOT NULL;--> statement-breakpoint
CREATE INDEX `instances_project_idx` ON `instances` (`project`);--> statement-breakpoint
CREATE INDEX `instances_node_idx` ON `instances` (`node_uuid`);--> statement-breakpoint
CREATE INDEX `instances_flavor_idx` ON `instances` (`flavor_uuid`);--> statement-breakpoint
CREATE INDEX `nodes_sched_idx` ON `nodes` (`provision_state`,`cpu_arch`,`memory_mb`,`cpus`,`local_gb`);