/**
 * The YAML text of a configuration file, parsed with positions: finds the node a config path refers to, and expands
 * `${NAME}` in every string value, remembering which values came from the environment.
 */
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, visit, type Document, type Node, type Pair, type Scalar, type YAMLMap } from 'yaml';
import { expandEnv } from './env.ts';
import type { ConfigPath } from './path.ts';

export interface Position {
  readonly line: number;
  readonly col: number;
}

export interface SourceError extends Position {
  readonly message: string;
}

interface Located {
  /** The value node at the path (undefined when the path is missing, null when the key has an empty value). */
  readonly node: Node | null | undefined;
  /** The key node of the last segment, when it is a mapping key that exists. */
  readonly key: Node | undefined;
  /** The deepest node on the path that exists (undefined for an empty document). */
  readonly deepest: Node | undefined;
}

const yamlMessage = (message: string) => message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');

export class YamlSource {
  readonly #doc: Document.Parsed;
  readonly #lines: LineCounter;
  readonly #fromEnv = new Set<Node>();
  readonly #envErrors = new Set<Node>();

  private constructor(doc: Document.Parsed, lines: LineCounter) {
    this.#doc = doc;
    this.#lines = lines;
  }

  /** Parses `text`; YAML errors (syntax, duplicate keys, several documents) come back with their positions. */
  static parse(text: string): { source: YamlSource; errors: SourceError[] } {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, merge: true, uniqueKeys: true });
    const source = new YamlSource(doc, lines);
    const errors = [...doc.errors, ...doc.warnings].map((e) => {
      let message = yamlMessage(e.message);
      if (e.code === 'DUPLICATE_KEY') message = `duplicate key ${JSON.stringify(source.#keyAt(e.pos[0]) ?? '?')}`;
      return { ...source.#at(e.pos[0]), message };
    });
    return { source, errors };
  }

  /** The text of the mapping key that starts at `offset`. */
  #keyAt(offset: number): string | undefined {
    let found: string | undefined;
    visit(this.#doc, {
      Pair: (_, pair) => {
        if (isScalar(pair.key) && pair.key.range?.[0] === offset) {
          found = String(pair.key.value);
          return visit.BREAK;
        }
        return undefined;
      },
    });
    return found;
  }

  /** Whether the document has anything at all, and whether that is a mapping. */
  get rootKind(): 'empty' | 'mapping' | 'other' {
    const root = this.#doc.contents;
    if (root === null || (isScalar(root) && root.value === null)) return 'empty';
    return isMap(root) ? 'mapping' : 'other';
  }

  /**
   * Replaces `${NAME}` in every string value from `env`. A plain (unquoted) value that becomes a number or a
   * boolean is read as one, as if the text had been written there (`workers: ${WORKERS}`); a quoted one stays text.
   */
  expandEnv(env: NodeJS.ProcessEnv): SourceError[] {
    const errors: SourceError[] = [];
    visit(this.#doc, {
      Scalar: (key, node) => {
        if (key === 'key' || typeof node.value !== 'string') return;
        const r = expandEnv(node.value, env);
        if (!r.ok) {
          this.#envErrors.add(node);
          for (const message of r.errors) errors.push({ ...this.#nodePosition(node), message });
          return;
        }
        if (r.value === node.value) return;
        node.value = node.type === 'PLAIN' ? retype(r.value) : r.value;
        if (r.substituted) this.#fromEnv.add(node);
      },
    });
    return errors;
  }

  /** The plain JavaScript data of the document. */
  toJS(): unknown {
    return this.#doc.toJS({ maxAliasCount: 1000 });
  }

  /** Whether the value at `path` came (partly) from an environment variable, so it should not be quoted back. */
  isFromEnv(path: ConfigPath): boolean {
    const { node } = this.#locate(path);
    return node != null && this.#fromEnv.has(node);
  }

  /** Whether the value at `path` had a bad `${…}` reference (already reported; later complaints about it are noise). */
  hasEnvError(path: ConfigPath): boolean {
    const { node } = this.#locate(path);
    return node != null && this.#envErrors.has(node);
  }

  /** Whether the mapping on the way to `path` has its last key, even with an empty value. */
  hasKey(path: ConfigPath): boolean {
    return this.#locate(path).node !== undefined;
  }

  /**
   * Where to point for a problem at `path`: the value (or its key when the value is empty); the key itself with
   * `at: 'key'`; for a path that does not exist, the deepest mapping or list on the way (the parent of a missing key).
   */
  positionOf(path: ConfigPath, at: 'key' | 'value' = 'value'): Position {
    const { node, key, deepest } = this.#locate(path);
    if (at === 'key' && key) return this.#nodePosition(key);
    if (node === undefined) return this.#nodePosition(deepest);
    if (node === null || isEmptyScalar(node)) return this.#nodePosition(key ?? deepest);
    return this.#nodePosition(node);
  }

  #locate(path: ConfigPath): Located {
    const root = this.#doc.contents;
    if (root === null) return { node: undefined, key: undefined, deepest: undefined };
    let current: Node | null = root;
    let key: Node | undefined;
    let deepest: Node = root;
    for (const seg of path) {
      if (current === null) return { node: undefined, key: undefined, deepest };
      deepest = current;
      const container = this.#deref(current);
      if (isMap(container)) {
        const pair = this.#findPair(container, String(seg), 0);
        if (!pair) return { node: undefined, key: undefined, deepest };
        key = pair.key as Node;
        current = (pair.value as Node | null) ?? null;
      } else if (isSeq(container) && typeof seg === 'number') {
        const item = container.items[seg] as Node | null | undefined;
        if (item === undefined) return { node: undefined, key: undefined, deepest };
        key = undefined;
        current = item;
      } else {
        return { node: undefined, key: undefined, deepest };
      }
    }
    return { node: current, key, deepest: current ?? deepest };
  }

  #deref(node: Node): Node {
    let n: Node | undefined = node;
    for (let i = 0; i < 100 && n && isAlias(n); i++) n = n.resolve(this.#doc) as Node | undefined;
    return n ?? node;
  }

  /** The pair for `key`, looking into `<<` merge keys after the mapping's own keys, as YAML merging does. */
  #findPair(map: YAMLMap, key: string, depth: number): Pair | undefined {
    if (depth > 20) return undefined;
    for (const pair of map.items) {
      if (isScalar(pair.key) && typeof pair.key.value !== 'symbol' && String(pair.key.value) === key) return pair;
    }
    for (const pair of map.items) {
      if (!isMergeKey(pair.key)) continue;
      const value = pair.value as Node | null;
      const sources = value && isSeq(value) ? (value.items as Node[]) : value ? [value] : [];
      for (const source of sources) {
        const target = this.#deref(source);
        if (isMap(target)) {
          const found = this.#findPair(target, key, depth + 1);
          if (found) return found;
        }
      }
    }
    return undefined;
  }

  #nodePosition(node: Node | undefined): Position {
    const offset = node?.range?.[0] ?? 0;
    return this.#at(offset);
  }

  #at(offset: number): Position {
    const { line, col } = this.#lines.linePos(offset);
    return line < 1 ? { line: 1, col: Math.max(1, offset + 1) } : { line, col };
  }
}

function isMergeKey(key: unknown): boolean {
  return isScalar(key) && (typeof key.value === 'symbol' || key.value === '<<');
}

function isEmptyScalar(node: Node): boolean {
  return isScalar(node) && (node as Scalar).value === null && node.range != null && node.range[0] === node.range[1];
}

const intPattern = /^[-+]?[0-9]+$/;
const floatPattern = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;

/** What a plain YAML 1.2 scalar with this text would have been: a number, a boolean, or text. */
function retype(text: string): string | number | boolean {
  if (intPattern.test(text) || floatPattern.test(text)) {
    const n = Number(text);
    if (Number.isSafeInteger(n) || !intPattern.test(text)) return n;
    return text;
  }
  if (/^(true|True|TRUE)$/.test(text)) return true;
  if (/^(false|False|FALSE)$/.test(text)) return false;
  return text;
}
