export async function runDemo(_o: { dir: string; port: number }): Promise<void> {
  throw new Error('the demo is being built');
}
