/** Small file helpers the commands share. */
import { access } from 'node:fs/promises';

/** Whether `file` exists (anything at that path). */
export async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}
