CREATE INDEX "connect_sessions_environment_idx" ON "connect_sessions" USING btree ("environment_id");--> statement-breakpoint
CREATE INDEX "connect_sessions_reconnect_connection_idx" ON "connect_sessions" USING btree ("reconnect_connection_id");--> statement-breakpoint
CREATE INDEX "oauth_sessions_environment_idx" ON "oauth_sessions" USING btree ("environment_id");--> statement-breakpoint
CREATE INDEX "oauth_sessions_integration_idx" ON "oauth_sessions" USING btree ("integration_id");--> statement-breakpoint
CREATE INDEX "oauth_sessions_connect_session_idx" ON "oauth_sessions" USING btree ("connect_session_id");--> statement-breakpoint
CREATE INDEX "function_configs_environment_idx" ON "function_configs" USING btree ("environment_id");--> statement-breakpoint
CREATE INDEX "syncs_environment_idx" ON "syncs" USING btree ("environment_id");