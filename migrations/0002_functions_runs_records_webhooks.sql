CREATE SEQUENCE "public"."records_cursor_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1;--> statement-breakpoint
CREATE TABLE "function_configs" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "function_configs_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"environment_id" uuid NOT NULL,
	"integration_id" bigint NOT NULL,
	"name" text NOT NULL,
	"type" text NOT NULL,
	"frequency_seconds" integer,
	"auto_start" boolean DEFAULT true NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "run_logs" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "run_logs_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"run_id" uuid NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"level" text NOT NULL,
	"message" text NOT NULL,
	"data" jsonb
);
--> statement-breakpoint
CREATE TABLE "runs" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"environment_id" uuid NOT NULL,
	"connection_pk" bigint NOT NULL,
	"sync_id" bigint,
	"type" text NOT NULL,
	"function_name" text NOT NULL,
	"trigger" text NOT NULL,
	"status" text NOT NULL,
	"attempt" integer DEFAULT 1 NOT NULL,
	"async" boolean DEFAULT false NOT NULL,
	"input" jsonb,
	"output" jsonb,
	"error" jsonb,
	"added" integer DEFAULT 0 NOT NULL,
	"updated" integer DEFAULT 0 NOT NULL,
	"deleted" integer DEFAULT 0 NOT NULL,
	"full_resync" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"ended_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "syncs" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "syncs_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"environment_id" uuid NOT NULL,
	"connection_pk" bigint NOT NULL,
	"function_config_id" bigint NOT NULL,
	"name" text NOT NULL,
	"paused" boolean DEFAULT false NOT NULL,
	"frequency_seconds" integer,
	"checkpoint" jsonb,
	"next_run_at" timestamp with time zone,
	"reset_requested" boolean DEFAULT false NOT NULL,
	"next_run_trigger" text DEFAULT 'schedule' NOT NULL,
	"running_run_id" uuid,
	"lease_expires_at" timestamp with time zone,
	"last_run_id" uuid,
	"last_status" text,
	"last_error" text,
	"last_finished_at" timestamp with time zone,
	"last_success_started_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "records" (
	"connection_pk" bigint NOT NULL,
	"model" text NOT NULL,
	"external_id" text NOT NULL,
	"data" json NOT NULL,
	"hash" text NOT NULL,
	"last_action" text NOT NULL,
	"cursor" bigint DEFAULT nextval('records_cursor_seq') NOT NULL,
	"first_seen_at" timestamp with time zone DEFAULT now() NOT NULL,
	"modified_at" timestamp with time zone DEFAULT now() NOT NULL,
	"deleted_at" timestamp with time zone,
	CONSTRAINT "records_connection_pk_model_external_id_pk" PRIMARY KEY("connection_pk","model","external_id")
);
--> statement-breakpoint
CREATE TABLE "webhook_deliveries" (
	"id" uuid PRIMARY KEY NOT NULL,
	"environment_id" uuid NOT NULL,
	"event_id" bigint NOT NULL,
	"url" text NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_status_code" integer,
	"last_error" text,
	"last_attempt_at" timestamp with time zone,
	"delivered_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "webhook_settings" (
	"environment_id" uuid PRIMARY KEY NOT NULL,
	"urls" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"secret_enc" text NOT NULL,
	"secret_hint" text NOT NULL,
	"previous_secret_enc" text,
	"previous_secret_expires_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "function_configs" ADD CONSTRAINT "function_configs_environment_id_environments_id_fk" FOREIGN KEY ("environment_id") REFERENCES "public"."environments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "function_configs" ADD CONSTRAINT "function_configs_integration_id_integrations_id_fk" FOREIGN KEY ("integration_id") REFERENCES "public"."integrations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "run_logs" ADD CONSTRAINT "run_logs_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "runs" ADD CONSTRAINT "runs_environment_id_environments_id_fk" FOREIGN KEY ("environment_id") REFERENCES "public"."environments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "runs" ADD CONSTRAINT "runs_connection_pk_connections_id_fk" FOREIGN KEY ("connection_pk") REFERENCES "public"."connections"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "runs" ADD CONSTRAINT "runs_sync_id_syncs_id_fk" FOREIGN KEY ("sync_id") REFERENCES "public"."syncs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "syncs" ADD CONSTRAINT "syncs_environment_id_environments_id_fk" FOREIGN KEY ("environment_id") REFERENCES "public"."environments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "syncs" ADD CONSTRAINT "syncs_connection_pk_connections_id_fk" FOREIGN KEY ("connection_pk") REFERENCES "public"."connections"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "syncs" ADD CONSTRAINT "syncs_function_config_id_function_configs_id_fk" FOREIGN KEY ("function_config_id") REFERENCES "public"."function_configs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "records" ADD CONSTRAINT "records_connection_pk_connections_id_fk" FOREIGN KEY ("connection_pk") REFERENCES "public"."connections"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_environment_id_environments_id_fk" FOREIGN KEY ("environment_id") REFERENCES "public"."environments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_event_id_events_id_fk" FOREIGN KEY ("event_id") REFERENCES "public"."events"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "webhook_settings" ADD CONSTRAINT "webhook_settings_environment_id_environments_id_fk" FOREIGN KEY ("environment_id") REFERENCES "public"."environments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "function_configs_integration_name_key" ON "function_configs" USING btree ("integration_id","name");--> statement-breakpoint
CREATE INDEX "run_logs_run_idx" ON "run_logs" USING btree ("run_id","id");--> statement-breakpoint
CREATE INDEX "runs_sync_idx" ON "runs" USING btree ("sync_id","created_at");--> statement-breakpoint
CREATE INDEX "runs_environment_idx" ON "runs" USING btree ("environment_id","created_at");--> statement-breakpoint
CREATE INDEX "runs_connection_idx" ON "runs" USING btree ("connection_pk");--> statement-breakpoint
CREATE INDEX "runs_queued_idx" ON "runs" USING btree ("created_at") WHERE "runs"."status" IN ('queued', 'running');--> statement-breakpoint
CREATE UNIQUE INDEX "syncs_connection_name_key" ON "syncs" USING btree ("connection_pk","name");--> statement-breakpoint
CREATE INDEX "syncs_due_idx" ON "syncs" USING btree ("next_run_at") WHERE NOT "syncs"."paused";--> statement-breakpoint
CREATE INDEX "syncs_function_config_idx" ON "syncs" USING btree ("function_config_id");--> statement-breakpoint
CREATE INDEX "records_feed_idx" ON "records" USING btree ("connection_pk","model","cursor");--> statement-breakpoint
CREATE INDEX "webhook_deliveries_environment_idx" ON "webhook_deliveries" USING btree ("environment_id","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "webhook_deliveries_event_url_key" ON "webhook_deliveries" USING btree ("event_id","url");