import { expect, test } from './fixtures';
import { createUser, signInAndEnrol } from './support';

// An analyst reads: on every page their role opens, nothing offers a change they may not make —
// no enabled button or field that writes, no link to a page that creates something.
test('analysts see no write control anywhere', async ({ page, browser, allowConsole }) => {
  // Deliberate: pages outside the analyst's role answer 403.
  allowConsole(/status of 403/);
  const admin = createUser('admin');
  await signInAndEnrol(page, admin);
  const tag = `Ana${Date.now()}`;
  await page.goto('/templates');
  await expect(page.locator('[data-test=create-template]')).toBeEnabled();
  await page.locator('#template-name').fill(`Letter ${tag}`);
  await page.locator('#template-starter').selectOption('newsletter');
  await page.locator('[data-test=create-template]').click();
  await expect(page).toHaveURL(/\/templates\/[0-9a-f-]{36}$/);
  const templateUrl = new URL(page.url()).pathname;
  await page.goto('/segments/new');
  await expect(page.locator('[data-test=add-condition]')).toBeEnabled();
  await page.locator('[data-test=segment-name]').fill(`Everyone ${tag}`);
  await page.locator('[data-test=save-segment]').click();
  await expect(page).toHaveURL(/\/segments\/[0-9a-f-]{36}$/);
  const segmentUrl = new URL(page.url()).pathname;

  const analyst = createUser('analyst');
  const ctx = await browser.newContext();
  const a = await ctx.newPage();
  await signInAndEnrol(a, analyst);
  const writes = /^(save|create|new|add|delete|remove|archive|launch|send|import|invite|publish|duplicate|pause|resume|cancel|withdraw|record|upload|verify)/i;
  for (const path of ['/', '/campaigns', '/templates', templateUrl, '/segments', segmentUrl, '/reports', '/sequences']) {
    await a.goto(path);
    await expect(a.locator('main')).not.toContainText('Loading…');
    await expect(a.locator('[data-test=sign-out]')).toBeEnabled(); // hydrated
    const buttons = a.locator('main button:enabled, main a.button');
    const labels = (await buttons.allInnerTexts()).map((t) => t.trim()).filter((t) => writes.test(t));
    expect(labels, `write controls on ${path}`).toEqual([]);
    // Filters (a report's date range) read, they do not write.
    await expect(a.locator('main input:enabled:not([type=checkbox]):not([type=radio]):not([data-filter]), main textarea:enabled'), path).toHaveCount(0);
  }
  await ctx.close();
});
