import { expect, test } from './fixtures';
import { createOrg, createUser, signInAndEnrol } from './support';

// A new organisation's home page: what to do next, in order, with the page for each step; the steps
// tick off as they are done. Analysts get the campaign figures, not the checklist.
test('home: a getting-started checklist for a new organisation, recent campaigns for everyone', async ({ page, browser }) => {
  const org = `Home Clinic ${Date.now()}`;
  createOrg(org);
  const admin = createUser('admin', 'home', org);
  await signInAndEnrol(page, admin);
  await page.goto('/');
  const steps = page.locator('[data-test=getting-started]');
  await expect(steps).toContainText('0 of 4 done');
  await expect(steps.locator('li')).toHaveCount(4);
  for (const s of ['step-contacts', 'step-domain', 'step-template', 'step-test']) {
    await expect(steps.locator(`[data-test=${s}]`)).toHaveAttribute('data-done', 'no');
  }
  await expect(steps.locator('[data-test=step-domain] a')).toHaveAttribute('href', '/settings/domains');
  await expect(steps.locator('progress')).toHaveAttribute('value', '0');
  const recent = page.locator('[data-test=recent-campaigns]');
  await expect(recent).toContainText('No campaigns yet.');
  await expect(recent.getByRole('link', { name: 'Create your first campaign' })).toBeVisible();

  // Create a template: its step is done.
  await page.goto('/templates');
  await expect(page.locator('[data-test=create-template]')).toBeEnabled();
  await page.locator('#template-name').fill('Welcome');
  await page.locator('#template-starter').selectOption('newsletter');
  await page.locator('[data-test=create-template]').click();
  await expect(page.locator('[data-test=save-state]')).toHaveText('Saved · version 1');
  await page.goto('/');
  await expect(steps).toContainText('1 of 4 done');
  await expect(steps.locator('[data-test=step-template]')).toHaveAttribute('data-done', 'yes');
  await expect(steps.locator('[data-test=step-contacts]')).toHaveAttribute('data-done', 'no');

  // An analyst of the organisation: campaigns, no checklist.
  const analyst = createUser('analyst', 'home-analyst', org);
  const ctx = await browser.newContext();
  const other = await ctx.newPage();
  await signInAndEnrol(other, analyst);
  await other.goto('/');
  await expect(other.locator('[data-test=recent-campaigns]')).toContainText('No campaigns yet.');
  await expect(other.locator('[data-test=getting-started]')).toHaveCount(0);
  await expect(other.getByRole('link', { name: 'Create your first campaign' })).toHaveCount(0);
  await ctx.close();
});

// The E2E organisation has campaigns (the campaign specs): the home page lists the latest with
// their figures.
test('home: the latest campaigns with their figures', async ({ page }) => {
  const admin = createUser('admin');
  await signInAndEnrol(page, admin);
  await page.goto('/campaigns/new');
  await expect(page.locator('[data-test=save-campaign]')).toBeEnabled();
  const name = `Home draft ${Date.now()}`;
  await page.locator('[data-test=campaign-name]').fill(name);
  await page.locator('[data-test=save-campaign]').click();
  await expect(page).toHaveURL(/\/campaigns\/[0-9a-f-]{36}$/);
  await page.goto('/');
  const row = page.locator('[data-test=home-campaign-row]', { hasText: name });
  await expect(row).toBeVisible();
  await expect(row).toContainText('Draft');
  await expect(row.getByRole('link', { name })).toHaveAttribute('href', /\/campaigns\/[0-9a-f-]{36}$/);
});
