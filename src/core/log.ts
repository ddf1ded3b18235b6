/**
 * Structured logs: one JSON object a line, each with an event name. Lines are batched — written when 64 KiB
 * have gathered or 50 ms after the first waiting line — so a request never waits on a log write and a busy
 * proxy makes few write calls (as nginx's `access_log … buffer=64k flush=…`).
 */
import { Secret } from './secret.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LogSink {
  write(chunk: string): void;
}

const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

function redact(_key: string, value: unknown): unknown {
  return value instanceof Secret ? '[redacted]' : value;
}

const flushBytes = 64 * 1024;
const flushDelayMs = 50;

let isoMs = 0;
let isoText = '';

/** The current time as ISO 8601, computed at most once per millisecond. */
export function isoNow(): string {
  const now = Date.now();
  if (now !== isoMs) {
    isoMs = now;
    isoText = new Date(now).toISOString();
  }
  return isoText;
}

export class Logger {
  #pending: string[] = [];
  #pendingBytes = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #sink: LogSink;
  readonly #min: number;
  readonly #base: Record<string, unknown>;

  constructor(options: { sink?: LogSink; level?: LogLevel; base?: Record<string, unknown> } = {}) {
    this.#sink = options.sink ?? process.stdout;
    this.#min = order[options.level ?? 'info'];
    this.#base = options.base ?? {};
  }

  log(level: LogLevel, event: string, fields: Record<string, unknown> = {}): void {
    if (order[level] < this.#min) return;
    this.line(JSON.stringify({ time: isoNow(), level, event, ...this.#base, ...fields }, redact));
  }

  info(event: string, fields?: Record<string, unknown>): void {
    this.log('info', event, fields);
  }
  warn(event: string, fields?: Record<string, unknown>): void {
    this.log('warn', event, fields);
  }
  error(event: string, fields?: Record<string, unknown>): void {
    this.log('error', event, fields);
  }
  debug(event: string, fields?: Record<string, unknown>): void {
    this.log('debug', event, fields);
  }

  /** Queues one ready-made JSON line. */
  line(json: string): void {
    this.#pending.push(json);
    this.#pendingBytes += json.length + 1;
    if (this.#pendingBytes >= flushBytes) this.flush();
    else if (!this.#timer) {
      this.#timer = setTimeout(() => this.flush(), flushDelayMs);
      this.#timer.unref();
    }
  }

  flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pendingBytes = 0;
    if (this.#pending.length === 0) return;
    const chunk = this.#pending.join('\n') + '\n';
    this.#pending = [];
    this.#sink.write(chunk);
  }
}
