import { expect, test } from '@playwright/test';
import { createUser, signInAndEnrol } from './support';

// Script in template content never runs in the admin UI: not in the editor, not in the preview
// (an <iframe sandbox> served with a script-free CSP), not even through links that slip past the
// save-time lint.
test('template content never executes script in the editor or the preview', async ({ page }) => {
  const admin = createUser('admin');
  await signInAndEnrol(page, admin);
  let dialogs = 0;
  page.on('dialog', async (d) => { dialogs++; await d.dismiss(); });
  await page.goto('/templates');
  await expect(page.locator('[data-test=create-template]')).toBeEnabled();
  await page.locator('#template-name').fill(`Newsletter ${Date.now()}`);
  await page.locator('#template-starter').selectOption('newsletter');
  await page.locator('[data-test=create-template]').click();
  await expect(page).toHaveURL(/\/templates\/[0-9a-f-]{36}$/);
  const state = page.locator('[data-test=save-state]');
  await expect(state).toHaveText('Saved · version 1');
  await expect(page.locator('[data-test=add-block]')).toBeEnabled();
  await expect(page.locator('[data-test=phi-badge]')).toBeVisible();

  // Hostile text in a block: saved as text, shown as text.
  const hostile = '<img src=x onerror=alert(1)><script>alert(2)</script>';
  const text = page.locator('[data-test=block-text]').first();
  await text.fill(`Hello ${hostile}`);
  await expect(state).toHaveText('Saved · version 2', { timeout: 15_000 });
  // TODO(issue 4 follow-up): the frame should follow autosaves without a reload.
  await page.reload();
  await expect(page.locator('[data-test=add-block], [data-test=html]').first()).toBeEnabled();
  const frame = page.frameLocator('[data-test=preview-frame]');
  await expect(frame.locator('body')).toContainText(hostile, { timeout: 15_000 });
  await expect(frame.locator('img[src=x]')).toHaveCount(0);
  await expect(page.locator('[data-test=preview-frame]')).toHaveAttribute('sandbox', '');

  // The merge-field picker inserts at the caret, with PHI fields marked.
  await text.click();
  await text.fill('Dear ');
  await text.press('End');
  const first = page.locator('[data-test=merge-field]', { hasText: 'First name' });
  await expect(first.locator('.phi')).toHaveText('PHI');
  await first.click();
  await expect(text).toHaveValue('Dear {{contact.first_name}}');
  await expect(state).toHaveText('Saved · version 3', { timeout: 15_000 });
  await page.reload();
  await expect(page.locator('[data-test=add-block], [data-test=html]').first()).toBeEnabled();
  await expect(frame.locator('body')).toContainText('Dear Alex', { timeout: 15_000 });

  // PHI in the subject is refused in plain words and kept as a draft.
  await page.locator('[data-test=subject]').fill('Hi {{contact.first_name}}');
  await expect(page.locator('[data-test=save-problem]')).toContainText('lock screens', { timeout: 15_000 });
  // Putting the subject back matches version 3 again: the draft is cleared, no new version.
  await page.locator('[data-test=subject]').fill('News from {{organisation.name}}');
  await expect(state).toHaveText('Saved · version 3', { timeout: 15_000 });

  // Raw HTML: event handlers are refused at save time…
  await page.locator('[data-test=mode-html]').click();
  const html = page.locator('[data-test=html]');
  await html.fill('<html><body><p>Raw</p><img src=x onerror=alert(3)></body></html>');
  await expect(page.locator('[data-test=save-problem]')).toContainText('event-handler', { timeout: 15_000 });
  // …and a link the lint cannot see through (an entity-encoded javascript: URL) does nothing in
  // the sandboxed preview when clicked.
  await html.fill('<html><body><p>Raw <a id="sneaky" href="jav&#x61;script:alert(4)">click me</a> {{links.unsubscribe}}</p></body></html>');
  await expect(state).toHaveText('Saved · version 4', { timeout: 15_000 });
  await page.reload();
  await expect(page.locator('[data-test=add-block], [data-test=html]').first()).toBeEnabled();
  await expect(frame.locator('#sneaky')).toBeVisible({ timeout: 15_000 });
  await frame.locator('#sneaky').click();
  await page.waitForTimeout(500);

  // TODO(issue 4 follow-up): the preview tabs and the test-send button do not react after
  // hydration yet; plain text and test sends are covered by server/tests/it/templates.rs.

  expect(dialogs).toBe(0);
  expect(await page.evaluate(() => (window as any).__pwned)).toBeUndefined();
});
