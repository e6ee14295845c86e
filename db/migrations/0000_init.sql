CREATE TABLE `controllers` (
	`id` varchar(64) NOT NULL,
	`hostname` varchar(255) NOT NULL,
	`api_address` varchar(255) NOT NULL,
	`group_names` json NOT NULL,
	`started_at` datetime(3) NOT NULL,
	`heartbeat_at` datetime(3) NOT NULL,
	CONSTRAINT `controllers_id` PRIMARY KEY(`id`)
);
--> statement-breakpoint
CREATE TABLE `nodes` (
	`uuid` char(36) NOT NULL,
	`name` varchar(255),
	`group_name` varchar(64) NOT NULL DEFAULT '',
	`cpus` int unsigned NOT NULL,
	`memory_mb` int unsigned NOT NULL,
	`local_gb` int unsigned NOT NULL,
	`cpu_arch` varchar(16) NOT NULL,
	`pm_address` varchar(255) NOT NULL,
	`pm_port` int unsigned NOT NULL DEFAULT 623,
	`pm_user` varchar(64) NOT NULL,
	`pm_password_enc` varbinary(512),
	`power_driver` varchar(32) NOT NULL DEFAULT 'ipmi',
	`provision_state` varchar(32) NOT NULL DEFAULT 'enroll',
	`target_provision_state` varchar(32),
	`power_state` varchar(16) NOT NULL DEFAULT 'unknown',
	`target_power_state` varchar(16),
	`maintenance` boolean NOT NULL DEFAULT false,
	`maintenance_reason` text,
	`instance_uuid` char(36),
	`last_error` text,
	`properties` json NOT NULL,
	`reservation` varchar(64),
	`version` bigint unsigned NOT NULL DEFAULT 1,
	`created_at` datetime(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
	`updated_at` datetime(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
	CONSTRAINT `nodes_uuid` PRIMARY KEY(`uuid`),
	CONSTRAINT `nodes_name_uq` UNIQUE(`name`)
);
--> statement-breakpoint
CREATE TABLE `ports` (
	`uuid` char(36) NOT NULL,
	`node_uuid` char(36) NOT NULL,
	`address` char(17) NOT NULL,
	`created_at` datetime(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
	CONSTRAINT `ports_uuid` PRIMARY KEY(`uuid`),
	CONSTRAINT `ports_address_uq` UNIQUE(`address`)
);
--> statement-breakpoint
ALTER TABLE `ports` ADD CONSTRAINT `ports_node_uuid_nodes_uuid_fk` FOREIGN KEY (`node_uuid`) REFERENCES `nodes`(`uuid`) ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX `nodes_state_idx` ON `nodes` (`provision_state`);--> statement-breakpoint
CREATE INDEX `nodes_group_idx` ON `nodes` (`group_name`);--> statement-breakpoint
CREATE INDEX `nodes_instance_idx` ON `nodes` (`instance_uuid`);--> statement-breakpoint
CREATE INDEX `nodes_reservation_idx` ON `nodes` (`reservation`);--> statement-breakpoint
CREATE INDEX `ports_node_idx` ON `ports` (`node_uuid`);