import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuthHostRequest } from '../proxy/index.ts';

export async function serveDashboard(_req: IncomingMessage, _res: ServerResponse, _request: AuthHostRequest): Promise<boolean> {
  return false;
}
