import { expect, test } from './fixtures';
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
  // The preview frame follows the autosave.
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
  await expect(frame.locator('body')).toContainText('Dear Alex', { timeout: 15_000 });

  // PHI in the subject is refused in plain words and kept as a draft.
  await page.locator('[data-test=subject]').fill('Hi {{contact.first_name}}');
  await expect(page.locator('[data-test=save-problem]')).toContainText('lock screens', { timeout: 15_000 });
  // Putting the subject back matches version 3 again: the draft is cleared, no new version.
  await page.locator('[data-test=subject]').fill('News from {{organisation.name}}');
  await expect(state).toHaveText('Saved · version 3', { timeout: 15_000 });

  // Raw HTML: event handlers are refused at save time, and so is a javascript: link however it is
  // disguised (here with a character reference).
  await page.locator('[data-test=mode-html]').click();
  const html = page.locator('[data-test=html]');
  await html.fill('<html><body><p>Raw</p><img src=x onerror=alert(3)></body></html>');
  await expect(page.locator('[data-test=save-problem]')).toContainText('event-handler', { timeout: 15_000 });
  await html.fill('<html><body><p>Raw <a id="sneaky" href="jav&#x61;script:alert(4)">click me</a></p></body></html>');
  await expect(page.locator('[data-test=save-problem]')).toContainText('javascript:', { timeout: 15_000 });
  // Markup that is allowed but hostile if it ever ran: inert in the sandboxed preview.
  await html.fill('<html><body><p>Raw <a id="plain" href="https://example.org/">click me</a> {{links.unsubscribe}}</p>' +
    '<svg><a xlink:href="#x"><text>svg</text></a></svg></body></html>');
  await expect(state).toHaveText('Saved · version 4', { timeout: 15_000 });
  await expect(frame.locator('#plain')).toBeVisible({ timeout: 15_000 });

  // Desktop, mobile and plain-text previews.
  await page.locator('[data-test=preview-mobile]').click();
  await expect(page.locator('[data-test=preview-frame]')).toHaveAttribute('width', '375');
  await page.locator('[data-test=preview-text]').click();
  await expect(page.locator('[data-test=preview-plain]')).toContainText('Raw click me');
  await expect(page.locator('[data-test=preview-frame]')).toHaveCount(0);
  await page.locator('[data-test=preview-desktop]').click();
  await expect(page.locator('[data-test=preview-frame]')).toHaveAttribute('width', '680');

  // A test send goes to the signed-in user through the configured transport.
  await page.locator('[data-test=test-send]').click();
  await expect(page.locator('[data-test=test-send-result]')).toContainText('Test sent to your address', { timeout: 15_000 });

  // Restoring version 2 saves its content as version 5; the history only grows.
  const versions = page.locator('[data-test=versions] li');
  await expect(versions).toHaveCount(4);
  await versions.filter({ hasText: 'Version 2 ' }).locator('[data-test=restore-version]').click();
  await expect(state).toHaveText('Saved · version 5', { timeout: 15_000 });
  await expect(versions).toHaveCount(5);
  await expect(page.locator('[data-test=add-block]')).toBeEnabled();
  await expect(frame.locator('body')).toContainText(hostile, { timeout: 15_000 });

  expect(dialogs).toBe(0);
  expect(await page.evaluate(() => (window as any).__pwned)).toBeUndefined();
});
