// The API documentation (/api/docs): public, styled by the app's own style sheet (no CDN, no
// inline style or script: the guard fails on any CSP violation), made from the OpenAPI document
// (/api/v1/openapi.json) — every operation in the document is on the page with its scope and
// errors — and reached from Settings → API keys.
import { createHmac } from 'node:crypto';
import { expect, test } from './fixtures';
import { createUser, signInAndEnrol } from './support';

test('API docs: public, styled, made from the OpenAPI document, linked from API keys', async ({ page, request }) => {
  // The document: public JSON.
  const specRes = await request.get('/api/v1/openapi.json');
  expect(specRes.status()).toBe(200);
  expect(specRes.headers()['content-type']).toBe('application/json');
  const spec = await specRes.json();
  expect(spec.openapi).toBe('3.1.0');
  const operations: { method: string; path: string; scope: string; id: string; summary: string }[] = [];
  for (const [path, item] of Object.entries<Record<string, any>>(spec.paths)) {
    for (const [method, op] of Object.entries<any>(item)) {
      operations.push({ method: method.toUpperCase(), path, scope: op.security[0].apiKey[0], id: op.operationId, summary: op.summary });
    }
  }
  expect(operations.length).toBeGreaterThanOrEqual(4);

  // The page, signed out.
  const res = await page.goto('/api/docs');
  expect(res?.status()).toBe(200);
  await expect(page).toHaveTitle('API documentation · Hermetic');
  await expect(page.getByRole('heading', { name: /Hermetic API/, level: 1 })).toBeVisible();
  // The app's style sheet applies (served from /pkg, hashed in a release build).
  const sheet = await page.locator('link[rel=stylesheet]').getAttribute('href');
  expect(sheet).toMatch(/^\/pkg\/hermetic(\.[A-Za-z0-9_-]{22})?\.css$/);
  expect(await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor)).toBe('rgb(244, 246, 248)');
  expect(await page.locator('.endpoint .method.post').first().evaluate((e) => getComputedStyle(e).backgroundColor)).toBe('rgb(29, 107, 58)');
  expect(await page.locator('script').count()).toBe(0);

  // Every operation of the document, and nothing else, with its scope, examples and errors.
  const endpoints = page.locator('[data-test=endpoint]');
  await expect(endpoints).toHaveCount(operations.length);
  for (const op of operations) {
    const section = page.locator(`[data-test=endpoint][data-method="${op.method}"][data-path="${op.path}"]`);
    await expect(section, `${op.method} ${op.path}`).toHaveCount(1);
    await expect(section.locator('h2')).toContainText(op.path);
    await expect(section.locator('[data-test=scope]')).toHaveText(op.scope);
    await expect(section.locator('[data-test=response-example]').first()).toBeVisible();
    await expect(section.locator('[data-test=errors] tr[data-status="401"]')).toContainText('unauthenticated');
    await expect(page.locator('.docs-nav').getByRole('link', { name: op.summary })).toBeVisible();
  }
  for (const op of operations.filter((o) => o.method !== 'GET')) {
    const example = page.locator(`[data-test=endpoint][data-method="${op.method}"][data-path="${op.path}"] [data-test=request-example]`);
    const documented = spec.paths[op.path][op.method.toLowerCase()].requestBody.content['application/json'].example;
    expect(JSON.parse(await example.innerText()), `${op.method} ${op.path}`).toEqual(documented);
  }

  // Navigation within the page: an endpoint, then a problem code's entry (where a problem's `type` leads).
  await page.locator('.docs-nav').getByRole('link', { name: 'Record a batch of events' }).click();
  await expect(page).toHaveURL(/#op-recordEventBatch$/);
  await page.locator('[data-test=endpoint][data-path="/api/v1/events/batch"] [data-test=errors] a', { hasText: 'rate_limited' }).click();
  await expect(page).toHaveURL(/#problem-rate_limited$/);
  await expect(page.locator('#problem-rate_limited')).toContainText('Retry-After');

  // The worked signature example is right (Node's HMAC, a third implementation).
  const secret = await page.locator('[data-test=sign-secret]').innerText();
  const t = await page.locator('[data-test=sign-t]').innerText();
  const body = await page.locator('[data-test=sign-body]').innerText();
  const v1 = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
  await expect(page.locator('[data-test=sign-expected]')).toHaveText(`Hermetic-Signature: t=${t},v1=${v1}`);

  // Reached from Settings → API keys.
  const admin = createUser('admin');
  await signInAndEnrol(page, admin);
  await page.goto('/settings/api-keys');
  await expect(page.getByRole('heading', { name: 'API keys', level: 1 })).toBeVisible();
  await page.getByRole('link', { name: 'API documentation' }).click();
  await expect(page).toHaveURL(/\/api\/docs$/);
  await expect(page.getByRole('heading', { name: /Hermetic API/, level: 1 })).toBeVisible();
});
