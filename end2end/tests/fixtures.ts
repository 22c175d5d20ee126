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
      await use();
      const unexpected = problems.filter((p) => !allowed.some((a) => a.test(p)));
      expect(unexpected, 'console errors, page exceptions or CSP violations').toEqual([]);
    },
    { auto: true },
  ],
});

export { expect };
