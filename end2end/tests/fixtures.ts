// The `test` every spec uses: Playwright's, plus a guard that fails the test on any console error,
// uncaught page exception or Content Security Policy violation, in every page of every browser
// context the test opens (its own `page`, and contexts made with `browser.newContext()`).
//
// A test that provokes an error on purpose (a refused form answers 422, which Chromium reports as
// "Failed to load resource") says so with `allowConsole(/pattern/)`; only matching messages pass.
import { test as base, expect, type BrowserContext, type Page } from '@playwright/test';

const problems: string[] = [];
const allowed: RegExp[] = [];
const watched = new WeakSet<Page>();

// Playwright itself runs scripts in every frame, and Chromium reports that as blocked in our
// sandboxed author-HTML frames (template previews, the dev mailbox) although the page runs none
// (microsoft/playwright#33343). Only that message, only for those frames, is not the app's.
const PLAYWRIGHT_IN_SANDBOX =
  /Blocked script execution in 'https?:\/\/[^']+\/(templates\/[0-9a-f-]{36}\/preview\/\d+[^']*|settings\/mailbox\/[0-9a-f-]{36}\/html)' because the document's frame is sandboxed/;

// The test machine has no Internet: remote images of the starter templates (example.org) are
// answered here with a 1×1 PNG, as the real site would answer them.
const PIXEL = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNgYAAAAAMAASsJTYQAAAAASUVORK5CYII=', 'base64');
async function stubInternet(context: BrowserContext) {
  await context.route(/^https?:\/\/([a-z0-9-]+\.)*example\.(org|com|net)\//, (route) =>
    route.fulfill({ status: 200, contentType: 'image/png', body: PIXEL }),
  );
}

function watchPage(page: Page) {
  if (watched.has(page)) return;
  watched.add(page);
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error on ${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`uncaught exception on ${page.url()}: ${String(e)}`));
}

function watchContext(context: BrowserContext) {
  context.pages().forEach(watchPage);
  context.on('page', watchPage);
}

export const test = base.extend<
  { consoleGuard: void; allowConsole: (pattern: RegExp) => void },
  { contextWatcher: void }
>({
  contextWatcher: [
    async ({ browser }, use) => {
      const newContext = browser.newContext.bind(browser);
      browser.newContext = async (options) => {
        const context = await newContext(options);
        watchContext(context);
        await stubInternet(context);
        return context;
      };
      await use();
    },
    { scope: 'worker', auto: true },
  ],
  allowConsole: async ({}, use) => {
    await use((pattern: RegExp) => {
      allowed.push(pattern);
    });
  },
  consoleGuard: [
    async ({ context }, use) => {
      problems.length = 0;
      allowed.length = 0;
      watchContext(context);
      await stubInternet(context);
      await use();
      const unexpected = problems.filter((p) => !PLAYWRIGHT_IN_SANDBOX.test(p) && !allowed.some((a) => a.test(p)));
      expect(unexpected, 'console errors, page exceptions or CSP violations').toEqual([]);
    },
    { auto: true },
  ],
});

export { expect };
