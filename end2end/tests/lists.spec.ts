import { expect, test } from './fixtures';
import { createUser, signInAndEnrol } from './support';
import type { Page } from '@playwright/test';

async function createList(page: Page, name: string) {
  await page.goto('/contacts/lists');
  await expect(page.getByRole('button', { name: 'Create list' })).toBeEnabled(); // hydrated
  await page.getByLabel('Name').fill(name);
  await page.getByRole('button', { name: 'Create list' }).click();
  await expect(page.locator('[data-test=list-row]', { hasText: name })).toBeVisible();
}

async function createContact(page: Page, email: string): Promise<string> {
  await page.goto('/contacts/new');
  await expect(page.getByRole('button', { name: 'Create contact' })).toBeEnabled(); // hydrated
  await page.getByLabel('Email').fill(email);
  await page.getByRole('button', { name: 'Create contact' }).click();
  await expect(page).toHaveURL(/\/contacts\/[0-9a-f-]{36}$/);
  return page.url().split('/').pop()!;
}

// Issue 19 item 4: a withdrawal of consent left the list saying "subscribed" and the suppression
// page empty. The list, the contact page and the suppression page now show it.
test('a withdrawal of consent shows on the list, the contact page and the suppression page', async ({ page }) => {
  await signInAndEnrol(page, createUser('admin'));
  const tag = `Wd${Date.now()}`;
  await createList(page, `News ${tag}`);
  const id = await createContact(page, `${tag.toLowerCase()}@e2e-patients.example`);
  await expect(page.getByRole('button', { name: 'Record' })).toBeEnabled();
  await page.getByRole('button', { name: 'Record' }).click(); // marketing, granted
  await expect(page.locator('[data-test=mailable]')).toContainText('Marketing: yes');
  await page.getByLabel('Add to list').selectOption({ label: `News ${tag}` });
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  await expect(page.locator('[data-test=memberships]')).toContainText(`News ${tag} — subscribed`);

  await page.goto('/contacts/lists');
  const row = page.locator('[data-test=list-row]', { hasText: `News ${tag}` });
  await expect(row.locator('td').nth(3)).toHaveText('1'); // subscribed
  await expect(row.locator('td').nth(5)).toHaveText('0'); // unsubscribed

  // The patient asks the front desk to stop marketing email.
  await page.goto(`/contacts/${id}`);
  await expect(page.getByRole('button', { name: 'Record' })).toBeEnabled();
  await page.locator('#consent-decision').selectOption('withdrawn');
  await page.getByRole('button', { name: 'Record' }).click();
  await expect(page.locator('[data-test=consent-outcome]')).toContainText('Marketing consent withdrawn');
  await page.reload();
  await expect(page.locator('[data-test=memberships]')).toContainText(`News ${tag} — unsubscribed (consent for marketing withdrawn)`);
  await expect(page.locator('[data-test=memberships]').getByRole('button', { name: 'Unsubscribe' })).toHaveCount(0);

  await page.goto('/contacts/lists');
  await expect(row.locator('td').nth(3)).toHaveText('0');
  await expect(row.locator('td').nth(5)).toHaveText('1');

  await page.goto('/contacts/suppression');
  await expect(page.getByText('unsubscribes are listed below')).toBeVisible();
  const entry = page.locator('[data-test=unsubscribe-row]', { has: page.locator(`a[href="/contacts/${id}"]`) });
  await expect(entry).toHaveCount(1);
  await expect(entry).toContainText('Marketing');
  await expect(entry).toContainText('staff');
  await entry.getByRole('link', { name: 'Open contact' }).click();
  await expect(page).toHaveURL(new RegExp(`/contacts/${id}$`));
});

// Issue 19 item 5: deleting a list took one click.
test('deleting a list asks first, and Keep keeps it', async ({ page }) => {
  await signInAndEnrol(page, createUser('admin'));
  const name = `Doomed ${Date.now()}`;
  await createList(page, name);
  const row = page.locator('[data-test=list-row]', { hasText: name });
  await row.locator('[data-test=delete-list]').click();
  const dialog = page.getByRole('alertdialog', { name: 'Confirm deletion' });
  await expect(dialog).toContainText(`Delete the list “${name}”? It has no members.`);
  await dialog.getByRole('button', { name: 'Keep' }).click();
  await expect(dialog).toHaveCount(0);
  await page.reload();
  await expect(row).toHaveCount(1);
  await row.locator('[data-test=delete-list]').click();
  await dialog.getByRole('button', { name: 'Delete list' }).click();
  await expect(row).toHaveCount(0);
  await expect(dialog).toHaveCount(0);
  await page.reload();
  await expect(page.locator('[data-test=lists-table]')).toBeVisible();
  await expect(row).toHaveCount(0);
});

// Issue 19 item 8: a search showed the organisation's total ("52 contacts") above its one match.
test('the count above the contacts table describes the rows shown', async ({ page }) => {
  await signInAndEnrol(page, createUser('admin'));
  const tag = Date.now();
  await createContact(page, `count-a-${tag}@e2e-patients.example`);
  await createContact(page, `count-b-${tag}@e2e-patients.example`);
  await page.goto('/contacts');
  await expect(page.getByRole('button', { name: 'Search' })).toBeEnabled(); // hydrated
  const total = page.locator('[data-test=contact-total]');
  await expect(total).toHaveText(/^\d+ contacts$/);
  const all = Number((await total.innerText()).split(' ')[0]);
  expect(all).toBeGreaterThanOrEqual(2);
  await page.getByLabel('Find by email').fill(`count-a-${tag}@e2e-patients.example`);
  await page.getByRole('button', { name: 'Search' }).click();
  await expect(total).toHaveText('1 contact matches.');
  await expect(page.locator('[data-test=contact-row]')).toHaveCount(1);
  await page.getByLabel('Find by email').fill(`nobody-${tag}@e2e-patients.example`);
  await page.getByRole('button', { name: 'Search' }).click();
  await expect(total).toHaveText('No contact matches.');
  await expect(page.locator('[data-test=contact-row]')).toHaveCount(0);
  await page.getByRole('button', { name: 'Clear' }).click();
  await expect(total).toHaveText(/^\d+ contacts$/);
});

// Issue 19 item 14: consent and list columns, filters and an order, done on the server.
test('the contacts table shows consent and lists, and filters and orders them', async ({ page }) => {
  await signInAndEnrol(page, createUser('admin'));
  const tag = `Tbl${Date.now()}`;
  await createList(page, `Clinic news ${tag}`);
  for (const [n, consent] of [['first', true], ['second', false]] as const) {
    await createContact(page, `${n}-${tag.toLowerCase()}@e2e-patients.example`);
    await expect(page.getByRole('button', { name: 'Record' })).toBeEnabled();
    if (consent) {
      await page.getByRole('button', { name: 'Record' }).click();
      await expect(page.locator('[data-test=mailable]')).toContainText('Marketing: yes');
    }
    await page.getByLabel('Add to list').selectOption({ label: `Clinic news ${tag}` });
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    await expect(page.locator('[data-test=memberships]')).toContainText(`Clinic news ${tag} — subscribed`);
  }
  await page.goto('/contacts');
  await expect(page.getByRole('button', { name: 'Search' })).toBeEnabled(); // hydrated
  await expect(page.locator('#contact-list option', { hasText: `Clinic news ${tag}` })).toHaveCount(1);
  await page.getByLabel('List', { exact: true }).selectOption({ label: `Clinic news ${tag}` });
  const total = page.locator('[data-test=contact-total]');
  await expect(total).toHaveText('2 contacts match.');
  const rows = page.locator('[data-test=contact-row]');
  await expect(rows).toHaveCount(2);
  await expect(rows.nth(0)).toContainText(`second-${tag.toLowerCase()}`); // newest first
  await expect(rows.nth(0).locator('[data-test=row-lists]')).toHaveText(`Clinic news ${tag}`);
  await expect(rows.nth(1)).toContainText('Marketing: yes');
  await page.getByLabel('Order').selectOption('created_asc');
  await expect(rows.nth(0)).toContainText(`first-${tag.toLowerCase()}`);
  await page.getByLabel('Consent', { exact: true }).selectOption('marketing:none');
  await expect(total).toHaveText('1 contact matches.');
  await expect(rows).toHaveCount(1);
  await expect(rows.nth(0)).toContainText(`second-${tag.toLowerCase()}`);
  await expect(rows.nth(0)).toContainText('Marketing: —');
  await page.getByLabel('Consent', { exact: true }).selectOption('marketing:withdrawn');
  await expect(total).toHaveText('No contact matches.');
  await page.getByRole('button', { name: 'Clear' }).click();
  await expect(total).toHaveText(/^\d+ contacts$/);
  await expect(page.getByLabel('List', { exact: true })).toHaveValue('');
});
