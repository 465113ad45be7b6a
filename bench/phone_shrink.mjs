// Ten 12-megapixel phone photos sent from the PWA over a throttled link: originals (as the
// reference and earlier versions send them) against photos shrunk on the phone first.
//
//   bench/make-phone-set.sh && cargo build --release && node bench/phone_shrink.mjs
//   (BIN=path/to/photo-pacs RUNS=3 PHOTOS=dir CHROMIUM=/usr/bin/chromium MBITS=20 or 5: one link)
//
// Two gateways (a release build: BIN, default target/release/photo-pacs under
// CARGO_TARGET_DIR or ./target), each on 127.0.0.1 in a scratch folder with the mock PACS
// and the default LOCAL_RESIZE_MAX of 1024: one with PHOTO_PACS_FLAG_SHRINK_ON_PHONE=false
// ("before": originals on the wire), one with the default true ("after"). Debian's Chromium,
// driven by playwright-core (tests/browser/node_modules), with the network throttled by CDP
// Network.emulateNetworkConditions: 20 Mbit/s up and down with 20 ms latency, and 5 Mbit/s
// with 20 ms (Mbit = 10^6 bit).
//
// One run: a new page, the Patient ID typed, the ten photos picked, and send tapped at once
// (so the phone has had no head start at shrinking). Measured:
// - tap to sent: from the tap until the page shows its "sent" result (the status line turns
//   'ok', timed in the page by a MutationObserver);
//   It is split into preparing (tap to the upload's start: shrinking what is not shrunk
//   yet), uploading (the request body on the wire) and the box converting, storing and
//   answering;
// - pick to sent: the same from the moment the photos were picked (the input's change);
// - bytes on the wire: the upload request's body (its Content-Length: the multipart form
//   with the ten photos) and its headers, as Chromium sent them.
// Each condition and mode is run RUNS times (default 3), interleaved; medians are printed,
// with every run's figures, and the ratio before/after.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { BIN, launchChromium, median, root, startGateway } from './gateway.mjs';

const RUNS = Number(process.env.RUNS || 3);
const PHOTO_DIR = process.env.PHOTOS || join(root, 'target/bench-photos/set');
const LINKS = [
  { name: '20 Mbit/s, 20 ms', latency: 20, bitsPerSecond: 20e6 },
  { name: '5 Mbit/s, 20 ms', latency: 20, bitsPerSecond: 5e6 },
].filter((l) => !process.env.MBITS || l.bitsPerSecond === Number(process.env.MBITS) * 1e6);

const mb = (n) => `${(n / 1e6).toFixed(2)} MB`;

async function oneRun(browser, base, link, photos) {
  const context = await browser.newContext({ serviceWorkers: 'block', viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  await page.addInitScript(() => {
    window.benchTimes = {};
    document.addEventListener('change', (e) => {
      if (e.target.id === 'album') window.benchTimes.picked = performance.now();
    }, true);
    const send = XMLHttpRequest.prototype.send;
    XMLHttpRequest.prototype.send = function (body) {
      window.benchTimes.upload = performance.now();
      this.upload.addEventListener('load', () => { window.benchTimes.uploaded = performance.now(); });
      return send.call(this, body);
    };
    new MutationObserver(() => {
      const status = document.getElementById('status');
      if (status && status.className === 'ok' && !window.benchTimes.sent) window.benchTimes.sent = performance.now();
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ['class'] });
  });
  const uploads = [];
  page.on('requestfinished', async (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname.endsWith('/api/studies')) {
      uploads.push({ body: Number(await r.headerValue('content-length')), headers: (await r.sizes()).requestHeadersSize });
    }
  });
  await page.goto(base, { waitUntil: 'load' });
  await page.waitForSelector('html[data-ready]', { state: 'attached' });
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: link.latency,
    downloadThroughput: link.bitsPerSecond / 8,
    uploadThroughput: link.bitsPerSecond / 8,
  });
  await page.fill('#patientId', 'BENCH-1');
  await page.setInputFiles('#album', photos);
  const tapped = await page.evaluate(() => {
    const at = performance.now();
    document.getElementById('send').click();
    return at;
  });
  await page.waitForFunction(() => window.benchTimes.sent, null, { timeout: 600000 });
  const times = await page.evaluate(() => window.benchTimes);
  const sentText = await page.textContent('#status');
  await page.waitForTimeout(100); // requestfinished
  await context.close();
  if (uploads.length !== 1) throw new Error(`expected one upload, saw ${uploads.length}`);
  if (!/10/.test(sentText)) throw new Error(`not all ten photos were sent: ${sentText}`);
  return {
    tapToSent: times.sent - tapped,
    preparing: times.upload - tapped,
    uploading: times.uploaded - times.upload,
    answer: times.sent - times.uploaded,
    pickToSent: times.sent - times.picked,
    body: uploads[0].body,
    headers: uploads[0].headers,
  };
}

const photos = readdirSync(PHOTO_DIR).filter((f) => f.endsWith('.jpg')).sort().slice(0, 10).map((f) => join(PHOTO_DIR, f));
if (photos.length !== 10) throw new Error(`need ten photos in ${PHOTO_DIR}: run bench/make-phone-set.sh`);
const picked = photos.reduce((n, p) => n + statSync(p).size, 0);
const before = await startGateway({ PHOTO_PACS_FLAG_SHRINK_ON_PHONE: 'false' });
const after = await startGateway({});
try {
  const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/);
  console.log(`machine: ${cpu ? cpu[1] : 'unknown CPU'}, ${cpus().length} cores; gateway ${BIN}`);
  console.log(`photos: ${photos.length} from ${PHOTO_DIR}, ${picked} B (${mb(picked)}) picked`);
  const browser = await launchChromium();
  const summary = [];
  try {
    for (const link of LINKS) {
      const runs = { before: [], after: [] };
      for (let i = 0; i < RUNS; i++) {
        for (const [mode, gw] of [['before', before], ['after', after]]) {
          const r = await oneRun(browser, gw.base, link, photos);
          runs[mode].push(r);
          console.log(`${link.name} ${mode.padEnd(6)} run ${i + 1}: tap to sent ${r.tapToSent.toFixed(0)} ms (preparing ${r.preparing.toFixed(0)}, uploading ${r.uploading.toFixed(0)}, converting and answer ${r.answer.toFixed(0)}), pick to sent ${r.pickToSent.toFixed(0)} ms, upload body ${r.body} B + headers ${r.headers} B`);
        }
      }
      const m = (mode, k) => median(runs[mode].map((r) => r[k]));
      summary.push([
        `== ${link.name}: median of ${RUNS}`,
        `before (originals): tap to sent ${m('before', 'tapToSent').toFixed(0)} ms, pick to sent ${m('before', 'pickToSent').toFixed(0)} ms, body ${mb(m('before', 'body'))}`,
        `after (shrunk):     tap to sent ${m('after', 'tapToSent').toFixed(0)} ms, pick to sent ${m('after', 'pickToSent').toFixed(0)} ms, body ${mb(m('after', 'body'))}`,
        `ratio: tap to sent ${(m('before', 'tapToSent') / m('after', 'tapToSent')).toFixed(2)}x faster, ${(m('before', 'body') / m('after', 'body')).toFixed(2)}x fewer bytes`,
      ].join('\n'));
    }
  } finally {
    await browser.close();
  }
  console.log(`\n${summary.join('\n\n')}`);
} finally {
  before.stop();
  after.stop();
}
