// The PWA's first load on a slow phone network, and what the barcode decoder adds.
//
//   node bench/first_load.mjs                 (BIN=path/to/photo-pacs RUNS=5 CHROMIUM=/usr/bin/chromium)
//
// Starts the gateway (a release build: BIN, default target/release/photo-pacs under
// CARGO_TARGET_DIR or ./target) on 127.0.0.1 in a scratch folder with the demo worklist on,
// and measures with Debian's Chromium driven by playwright-core (tests/browser/node_modules):
//
// 1. The decoder's size on disk: the ES modules and the .wasm, raw and `gzip -9`, and whether
//    the gateway answers them compressed (Accept-Encoding: gzip, br).
// 2. RUNS cold loads (a new browser context each, HTTP cache disabled, service workers blocked
//    so that the shell's precache does not compete with the page), throttled by CDP
//    Network.emulateNetworkConditions to DevTools' "Regular 3G": 100 ms latency,
//    750 kbit/s down, 250 kbit/s up (kbit = 1024 bit, as DevTools defines the preset).
//    - bytes: the sum of encodedDataLength over Network.loadingFinished events of the page
//      (headers included, as they cross the network).
//    - time to interactive (TTI): from navigation start until the page is usable and calm:
//      the later of (a) the 'photo-pacs-ready' mark app.js sets once the Patient ID field,
//      the scan button and the send button are wired (patient.js and worklist.js loaded and
//      initialised, the box's info read) and (b) the end of the last long task (> 50 ms,
//      PerformanceObserver 'longtask') -- taken once the main thread has then been free of
//      long tasks for 500 ms.
//    Then, in the same page, "Scan wristband" is pressed (still-photo path, ZXing forced):
//    - decoder bytes: encodedDataLength of what that press fetched (scan.js, the zxing-wasm
//      modules and the .wasm);
//    - decoder ready: from the press until scan.js's 'photo-pacs-decoder-ready' mark (the
//      .wasm fetched, compiled and instantiated).
// Medians of RUNS (default 5) are printed, with every run's figures.
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, launchChromium, median, root, startGateway } from './gateway.mjs';

const RUNS = Number(process.env.RUNS || 5);
const REGULAR_3G = {
  offline: false,
  latency: 100,
  downloadThroughput: (750 * 1024) / 8,
  uploadThroughput: (250 * 1024) / 8,
};
const DECODER_FILES = [
  'scan.js',
  'vendor/zxing-wasm/es/reader/index.js',
  'vendor/zxing-wasm/es/share.js',
  'vendor/zxing-wasm/reader/zxing_reader.wasm',
];

const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;

function gzip9(path) {
  return execFileSync('gzip', ['-9', '-c', path], { maxBuffer: 64 << 20 }).length;
}

async function sizes(base) {
  const rows = [];
  for (const f of DECODER_FILES) {
    const path = join(root, 'assets', f);
    const r = await fetch(base + f, { headers: { 'Accept-Encoding': 'gzip, br' } });
    await r.arrayBuffer();
    rows.push({
      file: f,
      raw: statSync(path).size,
      gzip9: gzip9(path),
      servedAs: `${r.headers.get('content-type')}; content-encoding: ${r.headers.get('content-encoding') || 'none'}`,
    });
  }
  return rows;
}

async function oneRun(browser, base) {
  const context = await browser.newContext({ serviceWorkers: 'block', viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  await page.addInitScript(() => {
    window.longTaskEnds = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.longTaskEnds.push(e.startTime + e.duration);
    }).observe({ type: 'longtask', buffered: true });
  });
  page.on('filechooser', () => { /* the still-photo picker: left unanswered */ });
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  await cdp.send('Network.emulateNetworkConditions', REGULAR_3G);
  const urls = new Map();
  let phase = 'load';
  const bytes = { load: 0, decoder: 0 };
  const files = { load: [], decoder: [] };
  cdp.on('Network.requestWillBeSent', (e) => urls.set(e.requestId, new URL(e.request.url).pathname));
  cdp.on('Network.loadingFinished', (e) => {
    bytes[phase] += e.encodedDataLength;
    const path = urls.get(e.requestId) || '?';
    files[phase].push(`${path.length > 60 ? `${path.slice(0, 30)}…` : path} ${e.encodedDataLength}`);
  });

  await page.goto(`${base}?scan=photo&decoder=zxing`, { waitUntil: 'load', timeout: 120000 });
  await page.waitForFunction(() => performance.getEntriesByName('photo-pacs-ready').length > 0, null, { timeout: 120000 });
  // Calm: 500 ms without a long task after the later of ready and the last long task.
  const tti = await page.evaluate(async () => {
    const ready = performance.getEntriesByName('photo-pacs-ready')[0].startTime;
    for (;;) {
      const last = Math.max(ready, ...window.longTaskEnds);
      if (performance.now() - last >= 500) return last;
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  // Let stragglers (the worklist answer, the icon) finish before the decoder's phase.
  await page.waitForLoadState('networkidle').catch(() => {});
  phase = 'decoder';
  const pressed = await page.evaluate(() => performance.now());
  await page.click('#scan');
  await page.waitForFunction(() => performance.getEntriesByName('photo-pacs-decoder-ready').length > 0, null, { timeout: 300000 });
  const decoderReady = await page.evaluate(() => performance.getEntriesByName('photo-pacs-decoder-ready')[0].startTime);
  await page.waitForTimeout(200);
  await context.close();
  return { bytes: bytes.load, tti, decoderBytes: bytes.decoder, decoderMs: decoderReady - pressed, files };
}

const gw = await startGateway({ PHOTO_PACS_WORKLIST_ENABLED: 'true', PHOTO_PACS_PATIENT_ID_PATTERN: '^PID:([^;]+)' });
try {
  const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/);
  console.log(`machine: ${cpu ? cpu[1] : 'unknown CPU'}, ${(await import('node:os')).cpus().length} cores; gateway ${BIN}`);
  console.log('\n== the decoder on disk and on the wire');
  let raw = 0;
  let gz = 0;
  for (const r of await sizes(gw.base)) {
    raw += r.raw;
    gz += r.gzip9;
    console.log(`${r.file.padEnd(45)} raw ${String(r.raw).padStart(8)} B  gzip -9 ${String(r.gzip9).padStart(7)} B  served: ${r.servedAs}`);
  }
  console.log(`${'total'.padEnd(45)} raw ${String(raw).padStart(8)} B  gzip -9 ${String(gz).padStart(7)} B`);

  const browser = await launchChromium();
  const runs = [];
  try {
    for (let i = 0; i < RUNS; i++) {
      const r = await oneRun(browser, gw.base);
      runs.push(r);
      console.log(`run ${i + 1}: first load ${r.bytes} B, TTI ${r.tti.toFixed(0)} ms; decoder +${r.decoderBytes} B, ready ${r.decoderMs.toFixed(0)} ms after the press`);
      if (i === 0) {
        console.log(`  first load: ${r.files.load.join(', ')}`);
        console.log(`  decoder:    ${r.files.decoder.join(', ')}`);
      }
    }
  } finally {
    await browser.close();
  }
  const m = (k) => median(runs.map((r) => r[k]));
  console.log(`\n== Regular 3G (100 ms, 750/250 kbit/s), cache disabled, median of ${RUNS} cold loads`);
  console.log(`without the decoder: ${m('bytes')} B (${kb(m('bytes'))}) transferred, time to interactive ${m('tti').toFixed(0)} ms`);
  console.log(`the decoder (after pressing scan): +${m('decoderBytes')} B (${kb(m('decoderBytes'))}), ready ${m('decoderMs').toFixed(0)} ms after the press`);
  console.log(`with the decoder: ${m('bytes') + m('decoderBytes')} B (${kb(m('bytes') + m('decoderBytes'))})`);
} finally {
  gw.stop();
}
