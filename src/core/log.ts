/**
 * Structured logs: one JSON object a line, each with an event name. Lines are batched and written
 * asynchronously, so a request never waits on a log write.
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

export class Logger {
  #pending: string[] = [];
  #scheduled = false;
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
    this.line(JSON.stringify({ time: new Date().toISOString(), level, event, ...this.#base, ...fields }, redact));
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
    if (this.#pending.length >= 256) this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.#scheduled = false;
    if (this.#pending.length === 0) return;
    const chunk = this.#pending.join('\n') + '\n';
    this.#pending = [];
    this.#sink.write(chunk);
  }
}
