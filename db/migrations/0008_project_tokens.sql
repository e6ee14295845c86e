CREATE TABLE `api_tokens` (
	`hash` char(64) NOT NULL,
	`project` varchar(64) NOT NULL,
	`role` varchar(8) NOT NULL,
	`description` varchar(255) NOT NULL DEFAULT '',
	`created_at` datetime(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
	CONSTRAINT `api_tokens_hash` PRIMARY KEY(`hash`)
);
--> statement-breakpoint
CREATE INDEX `api_tokens_project_idx` ON `api_tokens` (`project`);