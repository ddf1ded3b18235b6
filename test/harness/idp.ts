/** The in-process OpenID provider (src/demo/idp.ts) and helpers to drive its sign-in page from Playwright. */
import type { Page } from 'playwright-core';

export { startIdp, type RunningIdp, type IdpOptions, type IdpUser, type IdpClient, type IdpEvent } from '../../src/demo/idp.ts';

/**
 * Completes the IdP's sign-in form (the page must be on it, or on its way there) and waits for the next page.
 * Returns `rejected` when that page is the form again with its error (wrong email or password), else `submitted`
 * (the browser has left the IdP: on the relying party's redirect URI, or wherever that led).
 */
export async function loginInBrowser(page: Page, credentials: { email: string; password: string }): Promise<'submitted' | 'rejected'> {
  await page.waitForSelector('input[name=email]');
  await page.fill('input[name=email]', credentials.email);
  await page.fill('input[name=password]', credentials.password);
  await Promise.all([page.waitForEvent('framenavigated', (frame) => frame === page.mainFrame()), page.click('button[type=submit]')]);
  await page.waitForLoadState('domcontentloaded');
  const onForm = new URL(page.url()).pathname.startsWith('/interaction/');
  return onForm && (await page.locator('#error').count()) > 0 ? 'rejected' : 'submitted';
}
