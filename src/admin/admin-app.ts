/**
 * The auth host's own application: the JSON API under `/api/v1/` and the dashboard (pages and `/assets/…`).
 * The front door resolves nothing but the caller; authorisation happens in the API, per operation.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuthHostApp, AuthHostRequest } from '../proxy/index.ts';
import type { AdminOptions } from './options.ts';
import { handleApi } from './api.ts';
import { serveDashboard } from './dashboard.ts';

export class AdminApp implements AuthHostApp {
  readonly #o: AdminOptions;

  constructor(options: AdminOptions) {
    this.#o = options;
  }

  async handle(req: IncomingMessage, res: ServerResponse, request: AuthHostRequest): Promise<boolean> {
    if (request.path === '/api/v1' || request.path.startsWith('/api/v1/')) {
      await handleApi(this.#o, req, res, request);
      return true;
    }
    return serveDashboard(req, res, request);
  }
}
