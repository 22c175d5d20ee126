import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect, test } from './fixtures';
import { createUser, signInAndEnrol } from './support';

// An administrator registers a webhook endpoint (a real HTTP receiver on loopback, allowed by the
// e2e server's development setting): hostile input refused next to the field, the signing secret
// shown once, a test event sent, its signature checked here with Node's crypto, the attempt
// listed on the page; then the endpoint is deleted after a confirmation.
test('Webhooks: register, secret shown once, test event delivered and listed, delete', async ({ page, allowConsole }) => {
  allowConsole(/status of 422/); // the refused forms
  const received: { headers: IncomingHttpHeaders; body: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hermetic-events`;
  try {
    const admin = createUser('admin');
    await signInAndEnrol(page, admin);
    await page.goto('/settings');
    await page.getByRole('link', { name: 'Webhooks' }).click();
    await expect(page.getByRole('heading', { name: 'Webhooks', level: 1 })).toBeVisible();
    await expect(page.locator('[data-test=no-webhooks]')).toBeVisible();
    const create = page.locator('[data-test=create-webhook]');
    await expect(create).toBeEnabled(); // hydrated

    // Hostile input: the reason next to its field, never the value.
    await page.getByLabel('Endpoint URL', { exact: true }).fill('javascript:alert(1)');
    await create.click();
    await expect(page.locator('[data-test=field-error-url]')).toContainText('Endpoint URL');
    await expect(page.locator('[data-test=field-error-url]')).not.toContainText('javascript');
    await page.getByLabel('Endpoint URL', { exact: true }).fill(url);
    await page.locator('[data-test="event-message.sent"]').uncheck();
    await page.locator('[data-test="event-message.bounced"]').uncheck();
    await create.click();
    await expect(page.locator('[data-test=field-error-events]')).toContainText('Events');

    await page.locator('[data-test="event-message.sent"]').check();
    await page.locator('[data-test="event-contact.unsubscribed"]').check();
    await create.click();
    const shown = page.locator('[data-test=webhook-secret-panel]');
    await expect(shown).toBeVisible();
    const secret = await shown.locator('[data-test=webhook-secret]').inputValue();
    expect(secret).toMatch(/^hm_whsec_[A-Za-z0-9_-]{43}$/);
    await shown.locator('[data-test=webhook-secret-done]').click();
    await expect(shown).toHaveCount(0);
    const endpoint = page.locator('[data-test=webhook]');
    await expect(endpoint.locator('[data-test=webhook-url-shown]')).toHaveText(url);
    await expect(endpoint.locator('[data-test=webhook-status]')).toHaveText('Enabled');
    await expect(endpoint.locator('[data-test=no-attempts]')).toBeVisible();
    // Shown once: not on the page after a reload.
    await page.reload();
    await expect(page.locator('[data-test=webhook]')).toBeVisible();
    expect(await page.content()).not.toContain(secret.slice(12));

    // A test event: delivered by a background job, signed, and listed as an attempt.
    await page.locator('[data-test=test-webhook]').click();
    await expect(page.locator('[data-test=test-queued]')).toBeVisible();
    await expect.poll(() => received.length, { timeout: 20_000 }).toBe(1);
    const { headers, body } = received[0];
    const sig = String(headers['hermetic-signature']);
    const t = /t=(\d+)/.exec(sig)![1];
    const v1 = /v1=([0-9a-f]{64})/.exec(sig)![1];
    const mac = createHmac('sha256', secret).update(`${t}.${body}`).digest();
    expect(timingSafeEqual(mac, Buffer.from(v1, 'hex'))).toBe(true);
    const event = JSON.parse(body);
    expect(event.type).toBe('webhook.test');
    expect(Object.keys(event).sort()).toEqual(['created_at', 'data', 'id', 'type']);
    const attempt = page.locator('[data-test=webhook-attempt]').first();
    await expect(async () => {
      await page.locator('[data-test=refresh-webhooks]').click();
      await expect(attempt).toHaveAttribute('data-state', 'delivered', { timeout: 1_000 });
    }).toPass({ timeout: 20_000 });
    await expect(attempt.locator('[data-test=attempt-answer]')).toHaveText('HTTP 204');
    await expect(attempt).toContainText('webhook.test');

    // Delete asks first.
    await page.locator('[data-test=delete-webhook]').click();
    await expect(page.locator('[data-test=confirm-delete-webhook]')).toBeVisible();
    await page.locator('[data-test=confirm-delete-webhook]').click();
    await expect(page.locator('[data-test=no-webhooks]')).toBeVisible();
  } finally {
    server.close();
  }
});
