CREATE TABLE `dhcp_leases` (
	`ip` int unsigned NOT NULL,
	`mac` char(17) NOT NULL,
	`state` varchar(10) NOT NULL,
	`expires_at` datetime(3) NOT NULL,
	CONSTRAINT `dhcp_leases_ip` PRIMARY KEY(`ip`)
);
--> statement-breakpoint
ALTER TABLE `ports` ADD `fixed_ip` varchar(15);--> statement-breakpoint
CREATE INDEX `dhcp_leases_mac_idx` ON `dhcp_leases` (`mac`);--> statement-breakpoint
CREATE INDEX `dhcp_leases_expiry_idx` ON `dhcp_leases` (`expires_at`);