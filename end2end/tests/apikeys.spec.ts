import { createHmac } from 'node:crypto';
import { expect, test } from './fixtures';
import { createUser, signInAndEnrol } from './support';

// An administrator creates API keys for an integration: hostile input refused next to the field,
// the secret shown once and copyable, the key works over the API (events and contacts, signed
// when required), its last use appears, and after revoking it the API refuses it.
test('API keys: create, shown once, used by an integration, revoked', async ({ page, context, allowConsole }) => {
  allowConsole(/status of 422/); // the refused forms
  const admin = createUser('admin');
  await signInAndEnrol(page, admin);
  await page.goto('/settings');
  await page.getByRole('link', { name: 'API keys' }).click();
  await expect(page.getByRole('heading', { name: 'API keys', level: 1 })).toBeVisible();
  const create = page.locator('[data-test=create-key]');
  await expect(create).toBeEnabled(); // hydrated

  // Hostile input: the reason next to its field.
  await create.click();
  await expect(page.locator('[data-test=field-error-name]')).toContainText('Name');
  await page.getByLabel('Name', { exact: true }).fill('Scheduling bridge');
  await page.locator('[data-test="scope-events:write"]').uncheck();
  await create.click();
  await expect(page.locator('[data-test=field-error-scopes]')).toContainText('Scopes');
  await expect(page.locator('[data-test=new-secret]')).toHaveCount(0);

  // A signing key for events and contacts.
  await page.locator('[data-test="scope-events:write"]').check();
  await page.locator('[data-test="scope-contacts:write"]').check();
  await create.click();
  const shown = page.locator('[data-test=new-secret]');
  await expect(shown).toBeVisible();
  const secret = await shown.locator('[data-test=secret]').inputValue();
  const signing = await shown.locator('[data-test=signing-secret]').inputValue();
  expect(secret).toMatch(/^hm_live_[A-Za-z0-9_-]{43}$/);
  expect(signing).toMatch(/^hm_sign_[A-Za-z0-9_-]{43}$/);
  await context.grantPermissions(['clipboard-read', 'clipboard-write']);
  await shown.locator('[data-test=copy-secret]').click();
  await expect(shown.locator('[data-test=copied]')).toHaveText('Copied.');
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(secret);
  const row = page.locator('[data-test=key]', { hasText: 'Scheduling bridge' });
  await expect(row).toHaveAttribute('data-status', 'active');
  await expect(row.locator('[data-test=last-used]')).toHaveText('Never');
  await shown.locator('[data-test=secret-done]').click();
  await expect(shown).toHaveCount(0);
  // Shown once: not on the page after a reload.
  await page.reload();
  await expect(page.locator('[data-test=key]', { hasText: 'Scheduling bridge' })).toBeVisible();
  expect(await page.content()).not.toContain(secret.slice(12));

  // The integration upserts a contact and records an event for it, signed as the key requires.
  const email = `api-${Date.now()}@e2e-patients.example`;
  const t = Math.floor(Date.now() / 1000);
  const sign = (b: string) => `t=${t},v1=${createHmac('sha256', signing).update(`${t}.${b}`).digest('hex')}`;
  const contactBody = JSON.stringify({ email, fields: { first_name: 'Api' } });
  const upsert = await page.request.put('/api/v1/contacts', {
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json', 'hermetic-signature': sign(contactBody) },
    data: contactBody,
  });
  expect(upsert.status()).toBe(201);
  const contactId = (await upsert.json()).id;
  const body = JSON.stringify({ contact: { email }, type: 'appointment.booked', properties: { clinic: 'North', note: 'PHI-MARKER-Vx93q' } });
  const sig = sign(body);
  const ok = await page.request.post('/api/v1/events', {
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json', 'hermetic-signature': sig },
    data: body,
  });
  expect(ok.status()).toBe(202);
  const unsigned = await page.request.post('/api/v1/events', {
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    data: body,
  });
  expect(unsigned.status()).toBe(401);
  expect((await unsigned.json()).code).toBe('bad_signature');

  // The contact's page lists the event; its properties show on request.
  await page.goto(`/contacts/${contactId}`);
  const ev = page.locator('[data-test=event][data-type="appointment.booked"]');
  await expect(ev).toBeVisible();
  await expect(ev.locator('[data-test=properties]')).toHaveCount(0);
  await ev.locator('[data-test=show-properties]').click();
  await expect(ev.locator('[data-test=properties]')).toContainText('North');
  await page.goto('/settings/api-keys');

  // Its last use is shown; revoking (after a confirmation) stops it at once.
  await expect(async () => {
    await page.reload();
    await expect(page.locator('[data-test=key]', { hasText: 'Scheduling bridge' }).locator('[data-test=last-used]')).not.toHaveText('Never', { timeout: 1000 });
  }).toPass({ timeout: 15_000 });
  const again = page.locator('[data-test=key]', { hasText: 'Scheduling bridge' });
  await again.locator('[data-test=revoke-key]').click();
  await again.locator('[data-test=confirm-revoke]').click();
  await expect(page.locator('[data-test=key]', { hasText: 'Scheduling bridge' })).toHaveAttribute('data-status', 'revoked');
  const refused = await page.request.post('/api/v1/events', {
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json', 'hermetic-signature': sig },
    data: body,
  });
  expect(refused.status()).toBe(401);
});
