export { AdminApp } from './admin-app.ts';
export type { AdminOptions } from './options.ts';
