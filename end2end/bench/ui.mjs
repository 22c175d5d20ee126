// `scripts/bench ui`: how fast the sign-in page becomes usable on a 50 Mbit/s line with 40 ms of
// latency (Chromium's network emulation), against the release server the script started.
// Each run is a fresh browser context (cold cache). Prints one JSON line per run and a summary.
//   BENCH_URL   the server's base URL          BENCH_RUNS  number of cold loads (default 5)
import { chromium } from 'playwright-core';

const base = process.env.BENCH_URL;
if (!base) throw new Error('BENCH_URL is not set');
const runs = Number(process.env.BENCH_RUNS ?? 5);
const mbit = 50;
const latencyMs = 40;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const results = [];
try {
  for (let i = 0; i < runs; i++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: latencyMs,
      downloadThroughput: (mbit * 1_000_000) / 8,
      uploadThroughput: (mbit * 1_000_000) / 8,
    });
    const requests = new Map();
    cdp.on('Network.responseReceived', (e) => {
      requests.set(e.requestId, {
        url: e.response.url,
        encoding: (e.response.headers['content-encoding'] ?? e.response.headers['Content-Encoding'] ?? ''),
      });
    });
    const finished = new Map();
    cdp.on('Network.loadingFinished', (e) => finished.set(e.requestId, e.encodedDataLength));
    const started = Date.now();
    await page.goto(`${base}/login`, { waitUntil: 'commit' });
    const button = page.getByRole('button', { name: 'Sign in' });
    await button.waitFor();
    // Milliseconds from the start of the navigation (performance.now() in the page) to the first
    // animation frame in which the button is enabled, i.e. the app has hydrated.
    const handle = await page.waitForFunction(() => {
      const b = [...document.querySelectorAll('button')].find((x) => x.textContent.trim() === 'Sign in');
      return b && !b.disabled ? performance.now() : false;
    }, null, { polling: 'raf', timeout: 60_000 });
    const interactiveMs = Math.round(await handle.jsonValue());
    const wallMs = Date.now() - started;
    // Everything the page has fetched by then (the wasm must be complete to hydrate).
    await page.waitForTimeout(200);
    let wasmBytes = 0;
    let allBytes = 0;
    const wasm = [];
    for (const [id, r] of requests) {
      const bytes = finished.get(id) ?? 0;
      allBytes += bytes;
      if (new URL(r.url).pathname.endsWith('.wasm')) {
        wasmBytes += bytes;
        wasm.push({ path: new URL(r.url).pathname, bytes, encoding: r.encoding });
      }
    }
    const run = { run: i + 1, interactive_ms: interactiveMs, wall_ms: wallMs, wasm_bytes: wasmBytes, all_bytes: allBytes, wasm };
    console.log(JSON.stringify(run));
    results.push(run);
    await context.close();
  }
} finally {
  await browser.close();
}
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
console.log(JSON.stringify({
  signin_interactive_ms: median(results.map((r) => r.interactive_ms)),
  signin_wasm_bytes: median(results.map((r) => r.wasm_bytes)),
  signin_all_bytes: median(results.map((r) => r.all_bytes)),
}));
