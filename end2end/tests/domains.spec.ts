import { appendFileSync } from 'node:fs';
import { type Page } from '@playwright/test';
import { expect, test } from './fixtures';
import { createUser, signInAndEnrol } from './support';

// The DNS zone the server's sending-domain checks read (scripts/test runs a local DNS server on it).
const ZONE = process.env.E2E_DNS_ZONE;

/**
 * Every console error and uncaught exception of the page; the test fails on any. Chromium also
 * reports each 4xx response as a console error: those the test provokes on purpose (a refused
 * hostile domain answers 422) are expected and left out.
 */
function watchConsole(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of 422/.test(m.text())) {
      errors.push(m.text());
    }
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  return errors;
}

class SendingDomainsPage {
  constructor(private page: Page) {}
  async goto() {
    await this.page.goto('/settings/domains');
    await expect(this.page.getByRole('heading', { name: 'Sending domains', level: 1 })).toBeVisible();
    await expect(this.page.locator('[data-test=add-domain]')).toBeEnabled(); // hydrated
  }
  async add(name: string) {
    await this.page.getByLabel('Domain', { exact: true }).fill(name);
    await this.page.locator('[data-test=add-domain]').click();
  }
  card(domain: string) {
    return this.page.locator(`[data-test=domain][data-domain="${domain}"]`);
  }
}

// An administrator adds a sending domain (hostile names refused next to the field), copies the
// records, verifies before publishing them (each record fails with its reason), publishes them in
// the DNS zone, verifies again (verified), sees it offered in the campaign editor, and removes it.
test('sending domains: add, records, verify against DNS, offered to campaigns, remove', async ({ page, context, browser, allowConsole }) => {
  // Deliberate: hostile domains are refused (422); a marketer may not manage domains (403).
  allowConsole(/status of 422/);
  allowConsole(/status of 403/);
  expect(ZONE, 'E2E_DNS_ZONE must name the DNS zone file (run scripts/test)').toBeTruthy();
  const errors = watchConsole(page);
  const admin = createUser('admin');
  await signInAndEnrol(page, admin);
  await page.goto('/settings');
  await page.getByRole('link', { name: 'Sending domains' }).click();
  const domains = new SendingDomainsPage(page);
  await domains.goto();

  // Hostile input: a plain reason next to the field, and the typed text is kept.
  for (const [bad, why] of [['*.wild.example', 'wildcards'], ['192.0.2.7', 'IP address'], ['news@clinic.example', 'not an address']]) {
    await domains.add(bad);
    await expect(page.locator('[data-test=domain-error]')).toContainText(why);
    await expect(page.getByLabel('Domain', { exact: true })).toHaveValue(bad);
    await expect(page.getByLabel('Domain', { exact: true })).toHaveAttribute('aria-invalid', 'true');
  }

  const name = `spec-${Date.now()}.example`;
  await domains.add(`  ${name.toUpperCase()}. `);
  const card = domains.card(name);
  await expect(card).toBeVisible({ timeout: 30_000 });
  await expect(page.locator('[data-test=domain-error]')).toHaveText('');
  await expect(card.locator('[data-test=domain-status]')).toHaveText('Not verified yet');
  await expect(card.locator('tr[data-test^=record-]')).toHaveCount(3);
  const dkim = card.locator('[data-test=record-dkim]');
  await expect(dkim.locator('[data-test=record-name]')).toHaveValue(new RegExp(`^hm[a-z0-9]+\\._domainkey\\.${name.replace(/\./g, '\\.')}$`));
  const dkimValue = await dkim.locator('[data-test=record-value]').inputValue();
  expect(dkimValue).toMatch(/^v=DKIM1; k=rsa; p=MII[A-Za-z0-9+/=]+$/);
  await expect(card.locator('[data-test=record-dmarc] [data-test=record-value]')).toHaveValue(/^v=DMARC1; p=none/);

  // Copyable: the Copy button puts the exact value on the clipboard.
  await context.grantPermissions(['clipboard-read', 'clipboard-write']);
  await dkim.locator('[data-test=copy-value]').click();
  await expect(card.locator('[data-test=copied]')).toHaveText('Copied.');
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(dkimValue);

  // Verify before publishing: every record fails, with a reason.
  await card.locator('[data-test=verify-domain]').click();
  await expect(card.locator('[data-test=verify-domain]')).toHaveText('Verify', { timeout: 30_000 });
  await expect(card.locator('[data-test=check-dkim]')).toHaveAttribute('data-ok', 'false');
  await expect(card.locator('[data-test=check-dkim]')).toContainText('No TXT record');
  await expect(card.locator('[data-test=check-spf]')).toHaveAttribute('data-ok', 'false');
  await expect(card.locator('[data-test=check-dmarc]')).toHaveAttribute('data-ok', 'false');
  await expect(card.locator('[data-test=domain-status]')).toContainText('Not verified');

  // Publish the records exactly as shown (zone-file lines), verify again.
  await card.locator('summary', { hasText: 'zone-file' }).click();
  const lines = await card.locator('[data-test=zone-lines]').innerText();
  expect(lines.split('\n')).toHaveLength(3);
  appendFileSync(ZONE!, `${lines}\n`);
  await card.locator('[data-test=verify-domain]').click();
  await expect(card.locator('[data-test=domain-status]')).toHaveText('Verified', { timeout: 30_000 });
  for (const kind of ['dkim', 'spf', 'dmarc']) {
    await expect(card.locator(`[data-test=check-${kind}]`)).toHaveAttribute('data-ok', 'true');
  }
  await page.reload();
  await expect(domains.card(name).locator('[data-test=domain-status]')).toHaveText('Verified');

  // The campaign editor offers the verified domains as From addresses.
  await page.goto('/campaigns/new');
  await expect(page.locator('[data-test=save-campaign]')).toBeEnabled();
  await expect(page.locator('[data-test=sending-domains]')).toContainText(name);
  await expect(page.locator('[data-test=sending-domains]')).toContainText('e2e-clinic.example');
  await expect(page.locator(`#sending-addresses option[value$="@${name}"]`)).toHaveCount(1);

  // Remove (with a confirmation step, no browser dialog).
  await domains.goto();
  await domains.card(name).locator('[data-test=remove-domain]').click();
  await domains.card(name).locator('[data-test=confirm-remove]').click();
  await expect(domains.card(name)).toHaveCount(0);
  await expect(domains.card('e2e-clinic.example')).toBeVisible();

  // Marketers may not manage sending domains.
  const marketer = createUser('marketer');
  const ctx = await browser.newContext();
  const other = await ctx.newPage();
  await signInAndEnrol(other, marketer);
  await other.goto('/settings/domains');
  await expect(other.getByRole('heading', { name: 'Not available' })).toBeVisible();
  await ctx.close();

  expect(errors).toEqual([]);
});
