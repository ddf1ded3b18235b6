/**
 * Reads the config schema itself: which keys a mapping allows at a path, and what a value there should look like.
 * The loader uses it for did-you-mean hints, so the schema stays the only list of keys.
 */
import { z } from 'zod';
import type { ConfigPath } from './path.ts';

type Schema = z.core.$ZodType;

/** Looks through the wrappers that do not change what the input looks like (optional, default, pipe…). */
function unwrap(schema: Schema): Schema {
  let s = schema;
  for (let i = 0; i < 32; i++) {
    const def = s._zod.def;
    switch (def.type) {
      case 'optional':
      case 'nullable':
      case 'default':
      case 'prefault':
      case 'readonly':
      case 'catch':
      case 'nonoptional':
        s = (def as z.core.$ZodOptionalDef).innerType;
        break;
      case 'pipe':
        s = (def as z.core.$ZodPipeDef).in;
        break;
      case 'lazy':
        s = (def as z.core.$ZodLazyDef).getter();
        break;
      default:
        return s;
    }
  }
  return s;
}

/** The schema that describes the value at `path`, or undefined when the path leaves the schema. */
export function schemaAt(root: Schema, path: ConfigPath): Schema | undefined {
  let s: Schema | undefined = root;
  for (const seg of path) {
    if (s === undefined) return undefined;
    s = childSchema(unwrap(s), seg);
  }
  return s === undefined ? undefined : unwrap(s);
}

function childSchema(s: Schema, seg: string | number): Schema | undefined {
  const def = s._zod.def;
  switch (def.type) {
    case 'object': {
      const shape = (def as z.core.$ZodObjectDef).shape;
      return typeof seg === 'string' && Object.hasOwn(shape, seg) ? shape[seg] : undefined;
    }
    case 'array':
      return typeof seg === 'number' ? (def as z.core.$ZodArrayDef).element : undefined;
    case 'record':
      return (def as z.core.$ZodRecordDef).valueType;
    case 'union':
      for (const option of (def as z.core.$ZodUnionDef).options) {
        const child = childSchema(unwrap(option), seg);
        if (child !== undefined) return child;
      }
      return undefined;
    default:
      return undefined;
  }
}

/** The keys a mapping at `path` accepts (empty when the schema there is not a fixed mapping). */
export function allowedKeysAt(root: Schema, path: ConfigPath): string[] {
  const s = schemaAt(root, path);
  if (s === undefined || s._zod.def.type !== 'object') return [];
  return Object.keys((s._zod.def as z.core.$ZodObjectDef).shape);
}

/** The description registered on the value type at `path` itself (e.g. "a duration such as 2s"), if any. */
export function valueDescriptionAt(root: Schema, path: ConfigPath): string | undefined {
  const s = schemaAt(root, path);
  if (s === undefined) return undefined;
  const meta = z.globalRegistry.get(s);
  return typeof meta?.description === 'string' ? meta.description : undefined;
}
