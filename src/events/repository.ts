import type { DbOrTx } from '../db/client.js';
import { type EventType, events } from '../db/schema/index.js';

export interface NewEvent {
  environmentId: string;
  type: EventType;
  operation: string;
  success: boolean;
  providerConfigKey?: string;
  connectionId?: string;
  payload?: Record<string, unknown>;
}

/** Records an event for the webhook sender; call it inside the transaction of the change it reports. */
export async function recordEvent(db: DbOrTx, event: NewEvent): Promise<void> {
  await db.insert(events).values({ ...event, payload: event.payload ?? {} });
}

/** Records several events in one statement (a bulk write reports each row it changed). */
export async function recordEvents(db: DbOrTx, list: readonly NewEvent[]): Promise<void> {
  if (!list.length) return;
  await db.insert(events).values(list.map((e) => ({ ...e, payload: e.payload ?? {} })));
}
