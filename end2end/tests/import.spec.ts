import { expect, test } from './fixtures';
import { createUser, signInAndEnrol } from './support';

// Issue 19 item 7: a semicolon-separated file was read as one column, "Recent imports" stayed at
// "uploaded, not started" after the import completed, and a header-only file was accepted.
test('a semicolon file is split into columns, recent imports follow the import, a header-only file is refused', async ({ page, allowConsole }) => {
  allowConsole(/Failed to load resource: the server responded with a status of 422/);
  await signInAndEnrol(page, createUser('admin'));
  await page.goto('/contacts/import');
  await expect(page.getByRole('button', { name: 'Upload' })).toBeEnabled(); // hydrated
  const tag = Date.now();
  const csv = [
    'Email;First name;Last name',
    `semi.${tag}@e2e-import.example;Sam;"Lee; Jr"`,
    `colon.${tag}@e2e-import.example;Cole;Ng`,
  ].join('\r\n');
  await page.getByLabel('CSV file').setInputFiles({ name: 'export.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
  await page.getByRole('button', { name: 'Upload' }).click();
  await expect(page.locator('[data-test=import-delimiter]')).toContainText('Columns are separated by semicolons.');
  const selects = page.locator('[data-test=map-select]');
  await expect(selects).toHaveCount(3);
  await expect(selects.nth(0)).toHaveValue('email');
  await expect(page.locator('[data-test=import-preview]')).toContainText('Lee; Jr');
  await page.getByRole('button', { name: 'Start import' }).click();
  await expect(page.locator('[data-test=import-done]')).toBeVisible({ timeout: 30_000 });
  await expect(page.locator('[data-test=import-counts]')).toContainText('2 rows read · 2 created');
  // The newest import in "Recent imports" is this one, and it says so without a reload.
  const newest = page.locator('[data-test=recent-import]').first();
  await expect(newest.locator('[data-test=recent-status]')).toHaveText('completed');
  await expect(newest.locator('td').nth(2)).toHaveText('2');

  await page.getByRole('button', { name: 'Import another file' }).click();
  await page.getByLabel('CSV file').setInputFiles({ name: 'empty.csv', mimeType: 'text/csv', buffer: Buffer.from('Email;First name\r\n') });
  await page.getByRole('button', { name: 'Upload' }).click();
  await expect(page.locator('.alert.error')).toContainText('has a header row but no contacts under it');
  await expect(page.locator('[data-test=import-preview]')).toHaveCount(0);
});
