export * from './errors.ts';
export * from './duration.ts';
export * from './size.ts';
export * from './secret.ts';
export * from './listen.ts';
export * from './request-id.ts';
export * from './log.ts';
export * from './metrics.ts';
