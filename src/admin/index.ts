export { AdminApp } from './admin-app.ts';
export type { AdminOptions } from './options.ts';
export { API_ROUTES } from './api.ts';
