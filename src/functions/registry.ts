import type { ActionDefinition, FunctionDefinition, SyncDefinition } from './define.js';
import { builtinFunctions } from './library/index.js';

export const MIN_FREQUENCY_SECONDS = 60;
export const MAX_FREQUENCY_SECONDS = 31 * 86_400;

const UNITS: Record<string, number> = {
  m: 60,
  min: 60,
  mins: 60,
  minute: 60,
  minutes: 60,
  h: 3600,
  hr: 3600,
  hrs: 3600,
  hour: 3600,
  hours: 3600,
  d: 86_400,
  day: 86_400,
  days: 86_400,
  w: 604_800,
  week: 604_800,
  weeks: 604_800,
};

/**
 * Parses a sync frequency: `15m`, `2h`, `1d`, `30 minutes`, `every hour`, `every 2 days`.
 * Returns seconds, or an error sentence when the text is not a frequency or is out of range.
 */
export function parseFrequency(text: string): { seconds: number } | { error: string } {
  const m = /^\s*(?:every\s+)?(\d+)?\s*([a-z]+)\s*$/i.exec(text);
  const unit = m && UNITS[m[2]!.toLowerCase()];
  if (!m || !unit) return { error: 'must look like "15m", "2h", "1d" or "every 30 minutes"' };
  const seconds = Number(m[1] ?? 1) * unit;
  if (seconds < MIN_FREQUENCY_SECONDS || seconds > MAX_FREQUENCY_SECONDS) return { error: 'must be between 1 minute and 31 days' };
  return { seconds };
}

/** `900` → `15m`: the shortest exact spelling. */
export function formatFrequency(seconds: number): string {
  if (seconds % 86_400 === 0) return `${seconds / 86_400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  return `${Math.round(seconds / 60)}m`;
}

export interface FunctionRegistry {
  forProvider(provider: string): readonly FunctionDefinition[];
  find(provider: string, name: string): FunctionDefinition | undefined;
  sync(provider: string, name: string): SyncDefinition | undefined;
  action(provider: string, name: string): ActionDefinition | undefined;
}

/** The functions Terapi can run: the built-in library, plus any given by the embedding code. */
export function createFunctionRegistry(extra: Record<string, readonly FunctionDefinition[]> = {}): FunctionRegistry {
  const byProvider = new Map<string, FunctionDefinition[]>();
  for (const source of [builtinFunctions, extra]) {
    for (const [provider, defs] of Object.entries(source)) {
      const list = byProvider.get(provider) ?? [];
      for (const def of defs) {
        if (list.some((d) => d.name === def.name)) throw new Error(`function ${provider}/${def.name} is defined twice`);
        if (def.type === 'sync' && 'error' in parseFrequency(def.frequency))
          throw new Error(`function ${provider}/${def.name}: bad frequency "${def.frequency}"`);
        list.push(def);
      }
      byProvider.set(provider, list);
    }
  }
  const find = (provider: string, name: string) => byProvider.get(provider)?.find((d) => d.name === name);
  return {
    forProvider: (provider) => byProvider.get(provider) ?? [],
    find,
    sync: (provider, name) => {
      const d = find(provider, name);
      return d?.type === 'sync' ? d : undefined;
    },
    action: (provider, name) => {
      const d = find(provider, name);
      return d?.type === 'action' ? d : undefined;
    },
  };
}
