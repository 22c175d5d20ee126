// The production bundle split by route (docs/architecture.md, "The production bundle"): the sign-in
// page loads only the main WebAssembly module; other pages load their group's chunks, which the
// server names as preloads, and which are served compressed and cached for good. Only the release
// build is split: these tests run with `scripts/e2e --release` and are skipped otherwise.
import type { Page, Response } from '@playwright/test';
import { expect, test } from './fixtures';
import { createUser, signInAndEnrol } from './support';

test.skip(process.env.E2E_PROFILE !== 'release', 'the split bundle is the release build: scripts/e2e --release');

const HASHED = /^\/pkg\/[A-Za-z0-9_.-]+\.[A-Za-z0-9_-]{22}\.(wasm|js)$/;

function collectWasm(page: Page): Response[] {
  const wasm: Response[] = [];
  page.on('response', (r) => {
    if (new URL(r.url()).pathname.endsWith('.wasm')) wasm.push(r);
  });
  return wasm;
}

test('the sign-in page is interactive after the main module alone, under 500 KB compressed', async ({ page }) => {
  const wasm = collectWasm(page);
  await page.goto('/login');
  await expect(page.getByRole('button', { name: 'Sign in' })).toBeEnabled(); // hydrated
  await page.waitForTimeout(300); // nothing else arrives later
  expect(wasm.map((r) => new URL(r.url()).pathname)).toEqual([expect.stringMatching(/^\/pkg\/hermetic\.[A-Za-z0-9_-]{22}\.wasm$/)]);
  const main = wasm[0];
  expect(['br', 'gzip']).toContain(main.headers()['content-encoding']);
  expect(main.headers()['cache-control']).toBe('public, max-age=31536000, immutable');
  const { responseBodySize } = await main.request().sizes();
  expect(responseBodySize).toBeGreaterThan(0);
  expect(responseBodySize).toBeLessThanOrEqual(500_000);
  // No chunk is announced on the sign-in page.
  await expect(page.locator('link[rel=modulepreload][href*="__wasm_split"]')).toHaveCount(0);
});

test('pages load their chunks: preloaded by the server, on client-side navigation too, cached for good', async ({ page }) => {
  const wasm = collectWasm(page);
  await signInAndEnrol(page, createUser('admin', 'bundle'));
  await expect(page.locator('[data-test=sign-out]')).toBeEnabled(); // the app group hydrated

  // A page loaded from the server names its chunks and the chunk loader in <head>.
  await page.goto('/segments');
  await expect(page.locator('[data-test=new-segment]')).toBeVisible();
  await expect(page.locator('link[rel=modulepreload][href*="/pkg/__wasm_split."]')).toHaveCount(1);
  const preloads = await page.locator('link[rel=preload][as=fetch][href$=".wasm"]').evaluateAll((ls) =>
    ls.map((l) => new URL((l as HTMLLinkElement).href).pathname),
  );
  expect(preloads.length).toBeGreaterThan(0);
  for (const p of preloads) expect(p).toMatch(HASHED);

  // Client-side navigation to an editor fetches the editors' chunks then, and the page works.
  const before = wasm.length;
  await page.locator('[data-test=new-segment]').click();
  await expect(page).toHaveURL(/\/segments\/new$/);
  await expect(page.locator('[data-test=add-condition]')).toBeEnabled();
  await page.locator('[data-test=add-condition]').click();
  await expect(page.locator('[data-test=condition]')).toHaveCount(1);
  expect(wasm.length).toBeGreaterThan(before);

  for (const r of wasm) {
    const path = new URL(r.url()).pathname;
    expect(path).toMatch(HASHED);
    expect(r.status(), path).toBe(200);
    expect(r.headers()['cache-control'], path).toBe('public, max-age=31536000, immutable');
  }
});
