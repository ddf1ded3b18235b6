import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuthHostRequest } from '../proxy/index.ts';
import type { AdminOptions } from './options.ts';

export async function handleApi(_o: AdminOptions, _req: IncomingMessage, _res: ServerResponse, _request: AuthHostRequest): Promise<void> {
  throw new Error('not yet');
}
