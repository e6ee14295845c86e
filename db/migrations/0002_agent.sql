ALTER TABLE `nodes` ADD `agent_address` varchar(255);--> statement-breakpoint
ALTER TABLE `nodes` ADD `agent_seen_at` datetime(3);--> statement-breakpoint
ALTER TABLE `nodes` ADD `agent_token_hash` char(64);--> statement-breakpoint
ALTER TABLE `nodes` ADD `agent_token_expires_at` datetime(3);