CREATE TABLE "accounts" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "environments" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"account_id" uuid NOT NULL,
	"name" text NOT NULL,
	"secret_key_hash" text NOT NULL,
	"secret_key_hint" text NOT NULL,
	"secret_key_rotated_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "integrations" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "integrations_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"environment_id" uuid NOT NULL,
	"unique_key" text NOT NULL,
	"provider" text NOT NULL,
	"display_name" text,
	"oauth_client_id" text,
	"oauth_client_secret_enc" text,
	"oauth_scopes" text[] DEFAULT '{}'::text[] NOT NULL,
	"params" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"secrets_enc" text,
	"url_overrides" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "connections" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "connections_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"environment_id" uuid NOT NULL,
	"integration_id" bigint NOT NULL,
	"connection_id" text NOT NULL,
	"credentials_type" text NOT NULL,
	"credentials_enc" text,
	"credentials_expires_at" timestamp with time zone,
	"refreshable" boolean DEFAULT false NOT NULL,
	"connection_config" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"tags" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"end_user_id" text,
	"end_user" jsonb,
	"error" jsonb,
	"last_refreshed_at" timestamp with time zone,
	"last_fetched_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "environments" ADD CONSTRAINT "environments_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "integrations" ADD CONSTRAINT "integrations_environment_id_environments_id_fk" FOREIGN KEY ("environment_id") REFERENCES "public"."environments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "connections" ADD CONSTRAINT "connections_environment_id_environments_id_fk" FOREIGN KEY ("environment_id") REFERENCES "public"."environments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "connections" ADD CONSTRAINT "connections_integration_id_integrations_id_fk" FOREIGN KEY ("integration_id") REFERENCES "public"."integrations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "environments_secret_key_hash_key" ON "environments" USING btree ("secret_key_hash");--> statement-breakpoint
CREATE UNIQUE INDEX "environments_account_name_key" ON "environments" USING btree ("account_id","name");--> statement-breakpoint
CREATE INDEX "environments_account_idx" ON "environments" USING btree ("account_id");--> statement-breakpoint
CREATE UNIQUE INDEX "integrations_environment_unique_key_key" ON "integrations" USING btree ("environment_id","unique_key");--> statement-breakpoint
CREATE UNIQUE INDEX "connections_integration_connection_id_key" ON "connections" USING btree ("integration_id","connection_id");--> statement-breakpoint
CREATE INDEX "connections_environment_id_idx" ON "connections" USING btree ("environment_id","id");--> statement-breakpoint
CREATE INDEX "connections_environment_connection_id_idx" ON "connections" USING btree ("environment_id","connection_id");--> statement-breakpoint
CREATE INDEX "connections_environment_end_user_idx" ON "connections" USING btree ("environment_id","end_user_id");--> statement-breakpoint
CREATE INDEX "connections_refresh_due_idx" ON "connections" USING btree ("credentials_expires_at") WHERE "connections"."refreshable";