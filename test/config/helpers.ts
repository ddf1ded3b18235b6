// Shared helpers for the config tests: load YAML text and look at problems as `LINE:COL: message` strings.
import assert from 'node:assert/strict';
import { loadConfigText, type Config, type LoadOptions } from '../../src/config/index.ts';

/** The smallest valid configuration; tests append to it. */
export const minimal = 'server:\n  authHost: gate.example.com\n';

/** `LINE:COL: message` for every problem, in order. */
export async function problemsOf(text: string, options: LoadOptions = {}): Promise<string[]> {
  const r = await loadConfigText(text, '/cfg/gatehouse.yaml', { env: {}, ...options });
  assert.equal(r.ok, false, 'expected problems, but the config loaded');
  if (r.ok) return [];
  for (const p of r.problems) assert.equal(p.file, '/cfg/gatehouse.yaml');
  return r.problems.map((p) => `${p.line}:${p.col}: ${p.message}`);
}

/** Loads text that must be valid and returns the config. */
export async function configOf(text: string, options: LoadOptions = {}): Promise<Readonly<Config>> {
  const r = await loadConfigText(text, '/cfg/gatehouse.yaml', { env: {}, ...options });
  if (!r.ok) assert.fail(`unexpected problems:\n${r.problems.map((p) => `${p.line}:${p.col}: ${p.message}`).join('\n')}`);
  return r.config;
}

/** Lines joined, for writing YAML in tests without template-literal indentation. */
export const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;
