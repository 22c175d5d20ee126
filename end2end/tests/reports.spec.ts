import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { expect, test } from './fixtures';
import { createOrg, createUser, signInAndEnrol } from './support';

const SERVER_BIN = process.env.E2E_SERVER_BIN ?? '../target/debug/server';

// An organisation of its own with report history (the operator's demo command: campaigns over
// the last 60 days, deliveries, opens, clicks, unsubscribes through the real tables and rollup).
// An administrator reads the overview: the chart is an SVG whose hover values match the table
// beside it, the headline figures compare with the previous period, the range picker changes
// them, and the CSV export has the same figures as the page. The comparison sorts. An analyst
// sees the same pages with figures only, the home page's headline figures, and no time-zone form.
test('reports: overview chart matches its table, range picker, CSV export, comparison, analyst view', async ({ page, browser, allowConsole }) => {
  allowConsole(/status of 422/); // the refused range below
  const org = `Reports E2E ${Date.now()}`;
  createOrg(org);
  const admin = createUser('admin', 'radmin', org);
  const analyst = createUser('analyst', 'ranalyst', org);
  execFileSync(SERVER_BIN, ['admin', 'demo-reports', '--org', org, '--events', '1500', '--campaigns', '6', '--days', '60', '--contacts', '60'], {
    env: { ...process.env, HERMETIC_LOG: 'error' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });

  await signInAndEnrol(page, admin);
  // The home page shows the last 7 days' headline figures.
  await expect(page.locator('[data-test=home-figures] [data-test=figure]').first()).toBeVisible();

  await page.goto('/reports');
  await expect(page.locator('[data-test=sign-out]')).toBeEnabled(); // hydrated
  await expect(page.locator('[data-test=range-apply]')).toBeEnabled();
  const overview = page.locator('[data-test=overview]');
  await expect(overview.locator('[data-test=figure]')).toHaveCount(13);
  const sent30 = await overview.locator('[data-test=figure][data-metric=sent] [data-test=figure-value]').innerText();
  expect(Number(sent30)).toBeGreaterThan(0);

  // The chart: an accessible SVG with one hover value per day of the table, and they agree.
  const chart = page.locator('[data-test=overview-chart-box] svg[role=img]');
  await expect(chart).toBeVisible();
  const rows = page.locator('[data-test=series-table] [data-test=series-row]');
  await expect(rows).toHaveCount(30);
  const targets = chart.locator('rect.hover-target');
  await expect(targets).toHaveCount(30);
  for (const i of [0, 10, 29]) {
    const title = await targets.nth(i).locator('title').textContent();
    const delivered = await rows.nth(i).locator('[data-test=series-delivered]').innerText();
    const opened = await rows.nth(i).locator('[data-test=series-opened]').innerText();
    expect(title).toContain(`delivered ${delivered},`);
    expect(title).toContain(`opened by people ${opened},`);
  }
  // Deliverability: bounces by class (the demo's 550 5.1.1 and 421 4.7.0), deferrals, suppressions.
  await expect(page.locator('[data-test=deliverability] [data-test=bounce-row]')).toHaveCount(4);
  await expect(page.locator('[data-test=deliverability] [data-test=suppression-row]')).toHaveCount(4);
  // By mailbox provider and by TLS version (the demo's deliveries carry both).
  const providers = page.locator('[data-test=deliverability] [data-test=breakdown-provider] [data-test=breakdown-row]');
  await expect(providers.first()).toBeVisible();
  expect(await providers.count()).toBeGreaterThanOrEqual(3);
  await expect(page.locator('[data-test=breakdown-tls] [data-test=breakdown-row]').first()).toContainText('TLS 1.');
  // The series adds up to the headline figure.
  const cells = await rows.locator('[data-test=series-delivered]').allInnerTexts();
  const delivered30 = await overview.locator('[data-test=figure][data-metric=delivered] [data-test=figure-value]').innerText();
  expect(cells.map(Number).reduce((a, b) => a + b, 0)).toBe(Number(delivered30));

  if (process.env.E2E_SHOTS) await page.screenshot({ path: `${process.env.E2E_SHOTS}/reports.png`, fullPage: true });
  // The CSV export downloads the same figures.
  const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-test=export-overview-csv]').click()]);
  const csv = readFileSync((await download.path())!, 'utf8');
  expect(csv).toContain(`headline,Sent,${sent30},`);
  expect(csv).toContain(`headline,Delivered,${delivered30},`);
  const firstDay = csv.split('\n').find((l) => /^\d{4}-\d{2}-\d{2} 00:00,/.test(l))!;
  expect(firstDay.split(',')[1]).toBe(await rows.nth(0).locator('[data-test=series-delivered]').innerText());

  // The range picker: the last 7 days chart 7 days and count less (the history spans 60).
  await page.locator('[data-test=range-preset]').selectOption('7');
  await expect(rows).toHaveCount(7);
  await expect(targets).toHaveCount(7);
  const sent7 = await overview.locator('[data-test=figure][data-metric=sent] [data-test=figure-value]').innerText();
  expect(Number(sent7)).toBeLessThan(Number(sent30));
  // Two days chart by hour.
  await page.locator('[data-test=range-preset]').selectOption('2');
  await expect(rows).toHaveCount(48);
  // A hostile custom range is refused next to the range fields.
  await page.locator('[data-test=range-from]').fill('2026-12-31');
  await page.locator('[data-test=range-to]').fill('2026-01-01');
  await page.locator('[data-test=range-apply]').click();
  await expect(page.locator('[data-test=field-error-range]')).toContainText('end on or after');

  // The comparison: every campaign in 90 days, sortable.
  await page.locator('[data-test=range-preset]').selectOption('90');
  const comparison = page.locator('[data-test=comparison-table] [data-test=comparison-row]');
  await expect(comparison).toHaveCount(6);
  await page.locator('[data-test=sort][data-column="Open rate"]').click();
  await expect(page.locator('[data-test=comparison-table] th[aria-sort=descending]')).toHaveCount(1);
  const rates = (await comparison.locator('td:nth-child(7)').allInnerTexts()).map((t) => parseFloat(t));
  expect([...rates].sort((a, b) => b - a)).toEqual(rates);
  await expect(page.locator('[data-test=report-time-zone]')).toBeVisible();

  // Overlay two campaigns' opens-since-send curves.
  await expect(page.locator('[data-test=compare-curves]')).toBeDisabled();
  await comparison.nth(0).locator('[data-test=pick]').check();
  await comparison.nth(1).locator('[data-test=pick]').check();
  await page.locator('[data-test=compare-curves]').click();
  await expect(page.locator('[data-test=curves-table] [data-test=curves-row]')).toHaveCount(2);
  await expect(page.locator('[data-test=curves-chart-box] svg[role=img] rect.hover-target')).toHaveCount(9);

  // The chart as a PNG, drawn by the browser.
  const [png] = await Promise.all([page.waitForEvent('download'), page.locator('[data-test=export-overview-chart-box-png]').click()]);
  expect(png.suggestedFilename()).toBe('overview-chart-box.png');
  expect(readFileSync((await png.path())!).subarray(1, 4).toString()).toBe('PNG');

  // Drill down into the most opened campaign: since the send, links, heatmap, its CSV.
  const name = await comparison.nth(0).locator('th a').innerText();
  await comparison.nth(0).locator('th a').click();
  await expect(page).toHaveURL(/\/reports\/source\?kind=campaign&id=/);
  await expect(page.locator('[data-test=sign-out]')).toBeEnabled();
  await expect(page.locator('[data-test=source-name]')).toHaveText(name);
  await expect(page.locator('[data-test=since-table] [data-test=since-row]')).toHaveCount(9);
  await expect(page.locator('[data-test=since-chart-box] svg[role=img]')).toBeVisible();
  await expect(page.locator('[data-test=links-table] [data-test=link-row]').first()).toContainText('https://demo.hermetic.test/');
  await expect(page.locator('[data-test=heatmap-chart] [data-test=heat-cell]')).toHaveCount(168);
  // Breakdowns: provider (adding up to the delivered headline), email client, audience list.
  const drillDelivered = await page.locator('[data-test=figure][data-metric=delivered] [data-test=figure-value]').innerText();
  const byProvider = await page.locator('[data-test=breakdowns] [data-test=breakdown-provider] [data-test=breakdown-row] td:nth-child(2)').allInnerTexts();
  expect(byProvider.map(Number).reduce((a, b) => a + b, 0)).toBe(Number(drillDelivered));
  await expect(page.locator('[data-test=breakdown-client] [data-test=breakdown-row]').first()).toBeVisible();
  await expect(page.locator('[data-test=breakdown-list] [data-test=breakdown-row]')).toHaveCount(2);
  await expect(page.locator('[data-test=breakdown-list]')).toContainText('Riverside clinic patients');
  if (process.env.E2E_SHOTS) await page.screenshot({ path: `${process.env.E2E_SHOTS}/drill.png`, fullPage: true });
  const [drillCsv] = await Promise.all([page.waitForEvent('download'), page.locator('[data-test=export-overview-csv]').click()]);
  const drillText = readFileSync((await drillCsv.path())!, 'utf8');
  expect(drillText).toContain(`source,Campaign,${name}`);
  expect(drillText).toContain('mailbox_provider,delivered,bounced');
  expect(drillText).toContain('Riverside clinic patients,');
  await page.locator('[data-test=back-to-reports]').click();
  await expect(page).toHaveURL(/\/reports$/);

  // An analyst: the same figures, no time-zone form, no contact anywhere.
  const ctx = await browser.newContext();
  const a = await ctx.newPage();
  await signInAndEnrol(a, analyst);
  await expect(a.locator('[data-test=home-figures]')).toBeVisible();
  await a.goto('/reports');
  await expect(a.locator('[data-test=sign-out]')).toBeEnabled();
  // Figures from fewer than 11 messages are hidden for analysts; this history is large enough.
  await expect(a.locator('[data-test=overview] [data-test=figure][data-metric=sent] [data-test=figure-value]')).toHaveText(new RegExp(`^(${sent30}|hidden)$`));
  await expect(a.locator('[data-test=overview-chart-box] svg[role=img]')).toBeVisible();
  await expect(a.locator('[data-test=report-time-zone]')).toHaveCount(0);
  await expect(a.locator('main')).not.toContainText('demo-patients');
  // The weekly digest is the analyst's own choice, in Settings.
  await a.goto('/settings');
  await expect(a.locator('[data-test=sign-out]')).toBeEnabled();
  const toggle = a.locator('[data-test=digest-toggle]');
  await expect(toggle).toBeEnabled();
  await expect(toggle).not.toBeChecked();
  await toggle.check();
  await expect(a.locator('[data-test=digest-saved]')).toContainText('You will get the weekly report');
  await a.reload();
  await expect(a.locator('[data-test=digest-toggle]')).toBeChecked();
  await ctx.close();
});
