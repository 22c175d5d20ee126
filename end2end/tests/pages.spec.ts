// Issue 19 items 10, 15 and 11: one not-found page (HTTP 404, a way back) in every area; the time
// zone is chosen from the IANA list and checked by the server; refused values are said next to
// their field in the field's own words.
import { expect, test } from './fixtures';
import { createUser, signInAndEnrol } from './support';

test('unknown paths and ids show the one not-found page with HTTP 404 and a way back', async ({ page, allowConsole }) => {
  allowConsole(/Failed to load resource: the server responded with a status of 404/);
  const admin = createUser('admin');
  await signInAndEnrol(page, admin);
  const none = '01900000-0000-7000-8000-000000000000';
  for (const [path, back] of [
    [`/campaigns/${none}`, 'All campaigns'],
    ['/campaigns/not-an-id', 'All campaigns'],
    [`/campaigns/${none}/report`, 'All campaigns'],
    [`/segments/${none}`, 'All segments'],
    [`/templates/${none}`, 'All templates'],
    [`/sequences/${none}`, 'All sequences'],
    ['/sequences/not-an-id', 'All sequences'],
    [`/contacts/${none}`, 'All contacts'],
  ]) {
    const res = await page.goto(path);
    expect(res?.status(), path).toBe(404);
    await expect(page.getByRole('heading', { name: 'Page not found' }), path).toBeVisible();
    await expect(page.locator('[data-test=not-found-back]'), path).toHaveText(back);
  }
  await page.locator('[data-test=not-found-back]').click();
  await expect(page).toHaveURL(/\/contacts$/);
  const res = await page.goto('/no/such/page');
  expect(res?.status()).toBe(404);
  await expect(page.getByRole('heading', { name: 'Page not found' })).toBeVisible();
  await page.getByRole('link', { name: 'Go to the home page' }).click();
  await expect(page).toHaveURL(/\/$/);
});

test('a contact time zone is picked from the IANA list; an unknown one is refused next to the field', async ({ page, allowConsole }) => {
  allowConsole(/Failed to load resource: the server responded with a status of 422/);
  const admin = createUser('admin');
  await signInAndEnrol(page, admin);
  await page.goto('/contacts/new');
  await expect(page.getByRole('button', { name: 'Create contact' })).toBeEnabled(); // hydrated
  const zone = page.getByLabel('Time zone');
  await expect(zone).toHaveAttribute('list', 'time-zones');
  const options = page.locator('datalist#time-zones option');
  expect(await options.count()).toBeGreaterThan(300);
  await expect(page.locator('datalist#time-zones option[value="Europe/Berlin"]')).toHaveCount(1);
  await expect(page.locator('datalist#time-zones option[value="America/New_York"]')).toHaveCount(1);
  await page.getByLabel('Email').fill(`tz-${Date.now()}@e2e-patients.example`);
  await zone.fill('Mars/Olympus_Mons');
  await page.getByRole('button', { name: 'Create contact' }).click();
  const err = page.locator('[data-test=field-error-time_zone]');
  await expect(err).toHaveText('Time zone is not a known time zone.');
  await expect(page.getByText('time_zone')).toHaveCount(0); // no internal key anywhere
  await expect(zone).toHaveValue('Mars/Olympus_Mons'); // nothing typed is lost
  await zone.fill('Europe/Berlin');
  await page.getByRole('button', { name: 'Create contact' }).click();
  await expect(page).toHaveURL(/\/contacts\/[0-9a-f-]{36}$/);
  await expect(page.locator('[data-test=contact-fields]')).toContainText('Europe/Berlin');
});

test('a refused custom field says so next to the field, in its label', async ({ page, allowConsole }) => {
  allowConsole(/Failed to load resource: the server responded with a status of 422/);
  const admin = createUser('admin');
  await signInAndEnrol(page, admin);
  await page.goto('/contacts/fields');
  await expect(page.getByRole('button', { name: 'Add field' })).toBeEnabled(); // hydrated
  await page.getByLabel('Label', { exact: true }).fill('Email again');
  await page.getByLabel('Merge field name').fill('email');
  await page.getByRole('button', { name: 'Add field' }).click();
  await expect(page.locator('[data-test=field-error-key]')).toHaveText('Merge field name is reserved for a built-in field.');
  await expect(page.getByText('key:')).toHaveCount(0);
  await expect(page.getByLabel('Merge field name')).toHaveValue('email');
});
