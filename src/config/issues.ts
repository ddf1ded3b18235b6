/**
 * Turns zod's issues into messages a person can act on: what was expected, what was found, and a hint for a
 * misspelt or renamed key. Positions are not known here; each message is attached to the path it is about.
 */
import type { z } from 'zod';
import { configSchema } from './schema.ts';
import { didYouMean, renamedKeyHint, reshapedValueHint } from './hints.ts';
import { allowedKeysAt, valueDescriptionAt } from './schema-walk.ts';
import type { ConfigPath } from './path.ts';
import type { PathProblem } from './problem.ts';

/** What the formatter may ask about the input. */
export interface IssueContext {
  /** The input value at `path` (undefined when absent). */
  valueAt(path: ConfigPath): unknown;
  /** Whether the file has the key at `path`, even with an empty value. */
  hasKey(path: ConfigPath): boolean;
  /** Whether the value at `path` came from an environment variable: such values are never quoted back. */
  isFromEnv(path: ConfigPath): boolean;
}

type Issue = z.core.$ZodIssue;

const typeNames: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'a mapping',
  record: 'a mapping',
  array: 'a list',
  null: 'an empty value',
};

export function describeIssues(issues: readonly Issue[], ctx: IssueContext): PathProblem[] {
  return issues.flatMap((issue) => describeIssue(issue, [], ctx));
}

function describeIssue(issue: Issue, base: ConfigPath, ctx: IssueContext): PathProblem[] {
  const path: ConfigPath = [...base, ...(issue.path as (string | number)[])];
  const value = ctx.valueAt(path);
  const shown = () => showValue(value, ctx.isFromEnv(path) ? 'environment' : isSensitive(path) ? 'secret' : 'file');
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((key) => ({ path: [...path, key], at: 'key' as const, message: `unknown key (${unknownKeyHint(path, key)})` }));
    case 'invalid_type': {
      if (value === undefined) {
        return [{ path, message: ctx.hasKey(path) ? 'required, but has no value' : 'required key is missing' }];
      }
      const reshaped = reshapedValueHint(path, value);
      const expected = unitDescriptionAt(path) ?? expectedType(issue.expected);
      let message = `expected ${expected}, got ${shown()}`;
      if (reshaped) message += ` (${reshaped})`;
      else if (ctx.isFromEnv(path) && issue.expected === 'string' && typeof value !== 'string') {
        message += ' (quote the value, "${NAME}", to keep it text)';
      }
      return [{ path, message }];
    }
    case 'invalid_value': {
      const values = issue.values.map((v) => JSON.stringify(v));
      if (values.length === 1) return [{ path, message: `must be ${values[0]}, got ${shown()}` }];
      const suggestion = typeof value === 'string' ? didYouMean(value, issue.values.map(String)) : undefined;
      const hint = suggestion === undefined ? '' : ` (did you mean ${JSON.stringify(suggestion)}?)`;
      return [{ path, message: `${shown()} is not one of ${issue.values.join(', ')}${hint}` }];
    }
    case 'invalid_union': {
      const branches = issue.errors;
      // A branch whose type matched here but whose value failed a check (or failed inside) says the most.
      const matchedHere = (i: Issue) => i.path.length > 0 || (i.code !== 'invalid_type' && i.code !== 'invalid_value');
      const deeper = branches.find((b) => b.length > 0 && b.every(matchedHere));
      if (deeper) return deeper.flatMap((i) => describeIssue(i, path, ctx));
      const described = unitDescriptionAt(path);
      if (described) return [{ path, message: `expected ${described}, got ${shown()}` }];
      const expected = branches.flatMap((b) => b.map((i) => expectationOf(i))).filter((e): e is string => e !== undefined);
      if (expected.length === 0) return [{ path, message: `${shown()} is not valid here` }];
      return [{ path, message: `expected ${[...new Set(expected)].join(' or ')}, got ${shown()}` }];
    }
    case 'invalid_format': {
      if (!issue.message.startsWith('Invalid')) return [{ path, message: `${shown()} ${issue.message}` }];
      if (issue.format === 'url') return [{ path, message: `${shown()} is not a URL` }];
      if (issue.format === 'regex' && 'pattern' in issue) return [{ path, message: `${shown()} must match ${String(issue.pattern)}` }];
      return [{ path, message: `${shown()} is not a valid ${issue.format}` }];
    }
    case 'too_small':
    case 'too_big':
      return [{ path, message: boundMessage(issue) }];
    default:
      return [{ path, message: issue.message }];
  }
}

function unknownKeyHint(path: ConfigPath, key: string): string {
  const renamed = renamedKeyHint([...path, key]);
  if (renamed) return renamed;
  const allowed = allowedKeysAt(configSchema, path);
  const suggestion = didYouMean(key, allowed);
  if (suggestion) return `did you mean ${JSON.stringify(suggestion)}?`;
  return allowed.length > 0 ? `allowed here: ${allowed.join(', ')}` : 'not allowed here';
}

/** "a duration such as 2s" / "a size such as 512k…" where the schema says the value is one. */
function unitDescriptionAt(path: ConfigPath): string | undefined {
  const description = valueDescriptionAt(configSchema, path);
  return description !== undefined && /^(a (duration|size)\b|HOST:PORT)/.test(description) ? description : undefined;
}

function expectedType(expected: string): string {
  return typeNames[expected] ?? expected;
}

function expectationOf(issue: Issue): string | undefined {
  if (issue.path.length > 0) return undefined;
  if (issue.code === 'invalid_type') return expectedType(issue.expected);
  if (issue.code === 'invalid_value') return issue.values.map((v) => JSON.stringify(v)).join(' or ');
  return undefined;
}

function boundMessage(issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig): string {
  if (!issue.message.startsWith('Too ')) return issue.message;
  const small = issue.code === 'too_small';
  const n = Number(small ? (issue as z.core.$ZodIssueTooSmall).minimum : (issue as z.core.$ZodIssueTooBig).maximum);
  const exclusive = issue.inclusive === false;
  switch (issue.origin) {
    case 'string':
      if (small && n === 1) return 'must not be empty';
      return `must have ${small ? 'at least' : 'at most'} ${exclusive ? (small ? n + 1 : n - 1) : n} characters`;
    case 'array':
    case 'set':
      if (small && n === 1) return 'must not be empty';
      return `must have ${small ? 'at least' : 'at most'} ${exclusive ? (small ? n + 1 : n - 1) : n} entries`;
    default:
      return `must be ${small ? (exclusive ? 'more than' : 'at least') : exclusive ? 'less than' : 'at most'} ${n}`;
  }
}

/** Settings whose values are never repeated in a message, even when written in the file. */
function isSensitive(path: ConfigPath): boolean {
  const last = path.findLast((seg) => typeof seg === 'string');
  return typeof last === 'string' && /secret|password|token/i.test(last);
}

/**
 * A value as the message shows it. Values from the environment and of secret settings are described by their type
 * only: they may be secrets, and `gatehouse check` output ends up in CI logs.
 */
function showValue(value: unknown, from: 'file' | 'environment' | 'secret'): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  const type = `a ${typeof value === 'boolean' ? 'boolean' : typeof value}`;
  if (from === 'environment') return `${type} from the environment`;
  if (from === 'secret') return type;
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  return String(value);
}
