// Browser scenarios for the PWA, run by tests/browser.rs against the real gateway:
//
//   node tests/browser/scenarios.mjs SCENARIO BASE_URL [OUT_DIR]
//
// Debian's Chromium, driven by playwright-core, headless, loopback only. Each scenario
// throws (exit code 1, with the reason) when the page does not behave.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import bwipjs from 'bwip-js';

const here = dirname(fileURLToPath(import.meta.url));
const photo = (name) => join(here, '..', 'data', name);
const PHOTOS = [photo('pillow_flower.jpg'), photo('pillow_iptc.jpg'), photo('pillow_hopper.jpg')];
const pageErrors = [];
const PATIENT = { id: 'CANARY-ID-4711', name: 'CANARY王大明', description: 'CANARY wound' };
// The admin password tests/browser.rs gives the gateways that have one.
const ADMIN_PASSWORD = 'admin-pass-123';

async function browser(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
      ...extraArgs,
    ],
  });
}

/// `requests`, when given, collects "METHOD /path" of every request from the first one on.
/// `timezoneId` is the phone's time zone; `setup(page)` runs before the page is loaded (to
/// set the page's clock, or add init scripts).
async function openPage(b, base, {
  locale = 'en-US', viewport = { width: 390, height: 844 }, requests, hasTouch = false, timezoneId, setup,
} = {}) {
  const context = await b.newContext({ locale, viewport, deviceScaleFactor: 1, hasTouch, timezoneId });
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  if (requests) context.on('request', (r) => requests.push(`${r.method()} ${new URL(r.url()).pathname}`));
  if (setup) await setup(page);
  await page.goto(base, { waitUntil: 'load' });
  await page.waitForFunction(() => document.getElementById('tab-home').textContent.trim() !== '');
  // The home view's modules (patient.js, worklist.js) are in.
  await page.waitForSelector('html[data-ready]', { state: 'attached' });
  return { context, page };
}

/// A wristband barcode as a PNG, made here: `bcid` is bwip-js's name ('code128', 'qrcode').
function wristband(bcid, text, extra = {}) {
  return bwipjs.toBuffer({
    bcid, text, scale: 3, paddingwidth: 24, paddingheight: 24, backgroundcolor: 'FFFFFF', ...extra,
  });
}

/// The demo worklist entries as the box serves them.
async function worklistEntries(page) {
  return page.evaluate(() => fetch('api/worklist', { cache: 'no-store' }).then((r) => r.json()).then((d) => d.entries));
}

/// Every place a page could keep something: hits of `values` in localStorage,
/// sessionStorage, IndexedDB (any database is a hit) and the Cache Storage, and the cached paths.
async function storedValues(page, values) {
  return page.evaluate(async (wanted) => {
    const hits = [];
    const check = (where, text) => { for (const v of wanted) if (v && String(text).includes(v)) hits.push(`${where}: ${v}`); };
    for (const store of [localStorage, sessionStorage]) {
      for (let i = 0; i < store.length; i++) check('storage', `${store.key(i)}=${store.getItem(store.key(i))}`);
    }
    const dbs = indexedDB.databases ? await indexedDB.databases() : [];
    for (const db of dbs) hits.push(`IndexedDB database ${db.name}`);
    const cached = [];
    for (const name of await caches.keys()) {
      const cache = await caches.open(name);
      for (const req of await cache.keys()) {
        cached.push(new URL(req.url).pathname);
        check('cache url', req.url);
        const res = await cache.match(req);
        check(`cache ${req.url}`, await res.text());
      }
    }
    return { hits, cached };
  }, values);
}

async function fillPatient(page) {
  await page.fill('#patientId', PATIENT.id);
  await page.fill('#patientName', PATIENT.name);
  await page.fill('#birthDate', '1990-01-15');
  await page.selectOption('#sex', 'M');
  await page.fill('#examDescription', PATIENT.description);
}

async function metric(page, line) {
  const text = await page.evaluate(() => fetch('metrics').then((r) => r.text()));
  const found = text.split('\n').find((l) => l.startsWith(line));
  return found ? Number(found.split(' ').pop()) : 0;
}

/// Keeps the text fields of every upload's form, as the page hands it to XMLHttpRequest
/// (the browser does not show a multipart body with files to the test), in
/// `window.sentForms`; its files ({ name, size, type }) in `window.sentFiles`; and every text
/// the status line shows in `window.statusLog`. For `setup` (before the page loads).
async function recordUploads(page) {
  await page.addInitScript(() => {
    window.sentFiles = [];
    window.statusLog = [];
    const send = XMLHttpRequest.prototype.send;
    XMLHttpRequest.prototype.send = function (body) {
      if (body instanceof FormData) {
        const entries = [...body];
        window.sentForms = [...(window.sentForms || []), Object.fromEntries(entries.filter(([, v]) => typeof v === 'string'))];
        window.sentFiles.push(entries.filter(([, v]) => typeof v !== 'string').map(([, v]) => ({ name: v.name, size: v.size, type: v.type })));
      }
      return send.call(this, body);
    };
    new MutationObserver(() => {
      const text = document.getElementById('status')?.textContent;
      if (text && window.statusLog[window.statusLog.length - 1] !== text) window.statusLog.push(text);
    }).observe(document, { subtree: true, childList: true, characterData: true });
  });
}

/// Opens the admin area (the Settings tab), signing in with `password` when the box asks,
/// then its view `sub`: 'settings', 'status' or 'backup'.
async function openAdmin(page, sub, password = ADMIN_PASSWORD) {
  await page.click('#tab-settings');
  await page.waitForFunction(() => !document.getElementById('login').hidden
    || document.getElementById('pacsCalledAET').value !== '');
  if (await page.isVisible('#login')) {
    await page.fill('#login-password', password);
    await page.click('#login-button');
  }
  await page.waitForSelector('#admin', { state: 'visible' });
  await page.click(`#sub-${sub}`);
  assert.equal(await page.getAttribute(`#sub-${sub}`, 'aria-selected'), 'true');
  if (sub === 'settings') await page.waitForFunction(() => document.getElementById('pacsCalledAET').value !== '');
  if (sub === 'status') await page.waitForSelector('#status-facts .card');
  // The view shows before its module has decided whether secrets may be included.
  if (sub === 'backup') await page.waitForSelector('#admin-backup[data-ready="1"]', { state: 'visible' });
  if (sub === 'update') await page.waitForSelector('#admin-update[data-ready="1"]', { state: 'visible' });
}

/// The facts of one status card: { label: value } as shown.
async function facts(page, card) {
  return page.$$eval(`#${card} dt`, (dts) => Object.fromEntries(dts.map((dt) => [dt.textContent, dt.nextElementSibling.textContent])));
}

/// What `action` makes the page download: its file name and bytes.
async function downloaded(page, action) {
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 30000 }), action()]);
  assert.equal(await download.failure(), null);
  return { name: download.suggestedFilename(), bytes: readFileSync(await download.path()) };
}

/// The settings as the box gives them (the page must be signed in).
async function settingsOf(page) {
  return page.evaluate(() => fetch('api/settings', { cache: 'no-store' }).then((r) => r.json()).then((d) => d.settings));
}

/// The member names of a tar archive.
function tarNames(tar) {
  const names = [];
  const field = (h, from, to) => h.subarray(from, to).toString('latin1').replace(/\0[^]*$/, '');
  for (let off = 0; off + 512 <= tar.length;) {
    const h = tar.subarray(off, off + 512);
    if (h.every((x) => x === 0)) break;
    const prefix = field(h, 345, 500);
    names.push(prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
    off += 512 + Math.ceil(parseInt(field(h, 124, 136).trim() || '0', 8) / 512) * 512;
  }
  return names;
}

/// Waits (in node) until `check()` holds.
async function until(check, what, ms = 10000) {
  for (const end = Date.now() + ms; !(await check());) {
    assert.ok(Date.now() < end, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/// An instant as a wall clock at a fixed UTC offset: { date: 'YYYY-MM-DD', time: 'HH:MM:SS' }.
function wallClockAt(ms, offsetMinutes) {
  const iso = new Date(ms + offsetMinutes * 60000).toISOString();
  return { date: iso.slice(0, 10), time: iso.slice(11, 19) };
}

/// Sends `files` as one study for Patient ID `id` and waits for "sent"; the files the page
/// put on the wire and the status texts it showed on the way.
async function sendPhotos(page, id, files) {
  await page.fill('#patientId', id);
  await page.setInputFiles('#album', files);
  await page.evaluate(() => { window.statusLog = []; });
  await page.click('#send');
  await page.waitForFunction(() => document.getElementById('status').className === 'ok', null, { timeout: 60000 });
  assert.match(await page.textContent('#status'), new RegExp(String(files.length)));
  return page.evaluate(() => ({ sent: window.sentFiles[window.sentFiles.length - 1], log: window.statusLog }));
}

/// Slows uploads so the progress bar can be seen.
async function slowUpload(context, page) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 20,
    downloadThroughput: -1,
    uploadThroughput: 64 * 1024,
  });
}

const scenarios = {
  // 1. Fill, attach two real photos, send: progress, success, form cleared, both arrived.
  async send(base) {
    const b = await browser();
    try {
      const { context, page } = await openPage(b, base);
      const before = await metric(page, 'photo_pacs_instances_total{result="success"}');
      await fillPatient(page);
      await page.setInputFiles('#album', PHOTOS.slice(0, 2));
      assert.equal(await page.locator('#thumbs li').count(), 2);
      await slowUpload(context, page);
      await page.click('#send');
      await page.waitForSelector('#progress:not([hidden])', { timeout: 5000 });
      await page.waitForFunction(() => /%/.test(document.getElementById('status').textContent));
      await page.waitForFunction(() => document.getElementById('status').className === 'ok', null, { timeout: 30000 });
      assert.match(await page.textContent('#status'), /2/);
      assert.equal(await page.inputValue('#patientId'), '');
      assert.equal(await page.inputValue('#patientName'), '');
      assert.equal(await page.locator('#thumbs li').count(), 0);
      assert.equal(await page.isDisabled('#send'), true);
      const after = await metric(page, 'photo_pacs_instances_total{result="success"}');
      assert.equal(after - before, 2, 'the server received both photos');
    } finally {
      await b.close();
    }
  },

  // 2. The send button waits for an ID and an image; a future birth date shows the
  //    server's error beside the field.
  async disabled(base) {
    const b = await browser();
    try {
      const { page } = await openPage(b, base);
      assert.equal(await page.isDisabled('#send'), true, 'nothing filled');
      await page.setInputFiles('#album', PHOTOS.slice(0, 1));
      assert.equal(await page.isDisabled('#send'), true, 'image but no ID');
      await page.fill('#patientId', 'P-1');
      assert.equal(await page.isDisabled('#send'), false, 'ID and image');
      await page.fill('#patientId', '   ');
      assert.equal(await page.isDisabled('#send'), true, 'a blank ID is no ID');
      await page.fill('#patientId', 'P-1');
      await page.locator('#thumbs button').first().click();
      assert.equal(await page.isDisabled('#send'), true, 'ID but no image');
      await page.setInputFiles('#album', PHOTOS.slice(0, 1));
      // The picker stops at today; a typed or pasted date is checked by the server.
      await page.evaluate(() => { document.getElementById('birthDate').value = '2999-01-01'; });
      await page.click('#send');
      const error = page.locator('.field-error[data-error-for="birthDate"]');
      await error.waitFor({ state: 'visible', timeout: 15000 });
      assert.match(await error.textContent(), /future/);
      assert.equal(await page.getAttribute('#birthDate', 'aria-invalid'), 'true');
      assert.equal(await page.locator('#thumbs li').count(), 1, 'a refused send keeps the photos');
    } finally {
      await b.close();
    }
  },

  // 3. Remove one of three thumbnails: exactly two arrive.
  async remove(base) {
    const b = await browser();
    try {
      const { page } = await openPage(b, base);
      const before = await metric(page, 'photo_pacs_instances_total{result="success"}');
      const studiesBefore = await metric(page, 'photo_pacs_studies_total{result="sent"}');
      await page.fill('#patientId', 'P-2');
      await page.setInputFiles('#album', PHOTOS);
      assert.equal(await page.locator('#thumbs li').count(), 3);
      await page.click('#thumbs li:nth-child(2) button');
      assert.equal(await page.locator('#thumbs li').count(), 2);
      // Double tap: the second click must not send again.
      await page.dblclick('#send');
      await page.waitForFunction(() => document.getElementById('status').className === 'ok', null, { timeout: 30000 });
      await page.waitForTimeout(500);
      const after = await metric(page, 'photo_pacs_instances_total{result="success"}');
      assert.equal(after - before, 2);
      const studies = await metric(page, 'photo_pacs_studies_total{result="sent"}');
      assert.equal(studies - studiesBefore, 1, 'one submission only');
    } finally {
      await b.close();
    }
  },

  // 4. Settings: save the called AET and find it after a reload; echo; a bad port's error
  //    shows beside the field.
  async settings(base) {
    const b = await browser();
    try {
      const { page } = await openPage(b, base);
      await page.click('#tab-settings');
      await page.waitForFunction(() => document.getElementById('pacsCalledAET').value !== '');
      assert.equal(await page.isVisible('#card-cstore'), true);
      await page.fill('#pacsCalledAET', 'NEW_PACS');
      await page.click('#save');
      await page.waitForFunction(() => document.getElementById('save-result').className === 'ok');
      await page.reload({ waitUntil: 'load' });
      await page.click('#tab-settings');
      await page.waitForFunction(() => document.getElementById('pacsCalledAET').value === 'NEW_PACS');

      await page.click('#echo');
      await page.waitForFunction(() => document.getElementById('echo-result').className === 'ok', null, { timeout: 30000 });

      await page.fill('#pacsPort', '70000');
      await page.click('#save');
      const error = page.locator('.field-error[data-error-for="pacsPort"]');
      await error.waitFor({ state: 'visible' });
      assert.match(await error.textContent(), /65535/);
      assert.equal(await page.getAttribute('#pacsPort', 'aria-invalid'), 'true');
      // The worklist card: its fields save, and the server's errors show beside them.
      await page.fill('#pacsPort', '104');
      assert.equal(await page.isVisible('#card-worklist'), true);
      await page.fill('#patientIdPattern', 'PID:(');
      await page.click('#save');
      await page.locator('.field-error[data-error-for="patientIdPattern"]').waitFor({ state: 'visible' });
      await page.fill('#patientIdPattern', '^PID:([^;]+)');
      await page.fill('#worklistCalledAET', 'WLM_SCP');
      await page.check('#worklistEnabled');
      await page.click('#save');
      await page.waitForFunction(() => document.getElementById('save-result').className === 'ok');
      const info = await page.evaluate(() => fetch('api/settings/info').then((r) => r.json()));
      assert.equal(info.patientIdPattern, '^PID:([^;]+)');
      // Time: the zone (or this phone's) and the NTP servers save; a bad one is said beside it.
      assert.equal(await page.isVisible('#card-time'), true);
      await page.click('#time-zone-phone');
      const phoneZone = await page.evaluate(() => Intl.DateTimeFormat().resolvedOptions().timeZone);
      assert.equal(await page.inputValue('#timeZone'), phoneZone);
      assert.equal(await page.textContent('#time-zone-phone'), `Use this phone's: ${phoneZone}`);
      await page.fill('#timeZone', 'Asia/Tai pei');
      await page.fill('#ntpServers', 'ntp1.example, 192.0.2.7');
      await page.click('#save');
      await page.locator('.field-error[data-error-for="timeZone"]').waitFor({ state: 'visible' });
      assert.equal(await page.getAttribute('#timeZone', 'aria-invalid'), 'true');
      await page.fill('#timeZone', 'Asia/Taipei');
      await page.click('#save');
      await page.waitForFunction(() => document.getElementById('save-result').className === 'ok');
      const time = await page.evaluate(() => fetch('api/settings').then((r) => r.json()).then((d) => d.settings));
      assert.equal(time.timeZone, 'Asia/Taipei');
      assert.equal(time.ntpServers, 'ntp1.example 192.0.2.7');
      assert.equal(await page.inputValue('#ntpServers'), 'ntp1.example 192.0.2.7');
      // The advanced section opens on its own when its field is wrong.
      await page.fill('#pacsPort', '104');
      await page.click('summary');
      await page.fill('#localResizeMax', '10');
      await page.click('#save');
      await page.locator('.field-error[data-error-for="localResizeMax"]').waitFor({ state: 'visible' });
    } finally {
      await b.close();
    }
  },

  // An admin password and an upload PIN: the PIN is asked on the page and kept in memory,
  // the settings need a login.
  async protected(base) {
    const b = await browser();
    try {
      const { page } = await openPage(b, base);
      await page.waitForSelector('#pin-box', { state: 'visible' });
      await page.fill('#patientId', 'P-PIN');
      await page.setInputFiles('#album', PHOTOS.slice(0, 1));
      await page.click('#send');
      await page.waitForSelector('#pin-error', { state: 'visible' });
      await page.fill('#upload-pin', '0000');
      await page.click('#send');
      await page.waitForFunction(() => /PIN/.test(document.getElementById('pin-error').textContent) && document.getElementById('status').className === 'error');
      assert.equal(await page.locator('#thumbs li').count(), 1, 'a refused PIN keeps the photos');
      await page.fill('#upload-pin', 'pin-2468');
      await page.click('#send');
      await page.waitForFunction(() => document.getElementById('status').className === 'ok', null, { timeout: 30000 });
      assert.equal(await page.inputValue('#upload-pin'), 'pin-2468', 'asked once: kept for the next photo');
      const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
      assert.ok(!stored.includes('pin-2468'), stored);

      await page.click('#tab-settings');
      await page.waitForSelector('#login', { state: 'visible' });
      assert.equal(await page.isVisible('#settings'), false);
      await page.fill('#login-password', 'not-the-password');
      await page.click('#login-button');
      await page.waitForSelector('#login-error', { state: 'visible' });
      await page.fill('#login-password', 'admin-pass-123');
      await page.click('#login-button');
      await page.waitForSelector('#settings', { state: 'visible' });
      await page.waitForFunction(() => document.getElementById('pacsCalledAET').value !== '');
      assert.match(await page.getAttribute('#uploadPin', 'placeholder'), /^set/);
      await page.click('#logout');
      await page.waitForSelector('#login', { state: 'visible' });
    } finally {
      await b.close();
    }
  },

  // The DICOMweb backend: only its card, credentials shown as set / not set, no demo banner.
  async dicomweb(base) {
    const b = await browser();
    try {
      const { page } = await openPage(b, base);
      await page.click('#tab-settings');
      await page.waitForFunction(() => document.getElementById('dicomwebBaseUrl').value !== '');
      assert.equal(await page.isVisible('#card-dicomweb'), true);
      assert.equal(await page.isVisible('#card-cstore'), false);
      assert.equal(await page.isVisible('#demo'), false);
      assert.match(await page.getAttribute('#dicomwebPassword', 'placeholder'), /^set/);
      assert.match(await page.getAttribute('#dicomwebToken', 'placeholder'), /not set/);
      assert.equal(await page.inputValue('#dicomwebPassword'), '', 'a secret is never shown');
      // Saving without touching the password keeps it.
      await page.click('#save');
      await page.waitForFunction(() => document.getElementById('save-result').className === 'ok');
      assert.match(await page.getAttribute('#dicomwebPassword', 'placeholder'), /^set/);
    } finally {
      await b.close();
    }
  },

  // 5. Language and theme survive a reload.
  async prefs(base) {
    const b = await browser();
    try {
      const { page } = await openPage(b, base, { locale: 'en-US' });
      assert.equal(await page.textContent('#tab-settings'), 'Settings');
      assert.equal(await page.getAttribute('html', 'data-theme'), 'dark');
      await page.click('#lang');
      assert.equal(await page.textContent('#tab-settings'), '設定');
      assert.equal(await page.getAttribute('html', 'lang'), 'zh-TW');
      await page.click('#tab-settings');
      await page.uncheck('#theme-dark');
      assert.equal(await page.getAttribute('html', 'data-theme'), 'light');
      await page.reload({ waitUntil: 'load' });
      assert.equal(await page.textContent('#tab-settings'), '設定');
      assert.equal(await page.getAttribute('html', 'data-theme'), 'light');
      // A Chinese browser gets Chinese from the start.
      const zh = await openPage(b, base, { locale: 'zh-TW' });
      assert.equal(await zh.page.textContent('#tab-home'), '首頁');
      // Every visible string comes from the dictionary: no element with data-i18n is empty.
      const empty = await zh.page.$$eval('[data-i18n]', (els) => els.filter((e) => !e.textContent.trim()).map((e) => e.dataset.i18n));
      assert.deepEqual(empty, []);
    } finally {
      await b.close();
    }
  },

  // 6. After a successful send, no patient value is in localStorage, sessionStorage,
  //    IndexedDB or the Cache Storage; the cache holds only the app shell.
  async storage(base) {
    const b = await browser();
    try {
      const { page } = await openPage(b, base);
      await page.evaluate(() => navigator.serviceWorker.ready);
      await page.reload({ waitUntil: 'load' }); // now under the service worker
      await fillPatient(page);
      await page.setInputFiles('#album', PHOTOS.slice(0, 1));
      await page.locator('#thumbs select').selectOption('forearm');
      await page.locator('#thumbs input.site-note').fill('CANARY site note');
      await page.click('#send');
      await page.waitForFunction(() => document.getElementById('status').className === 'ok', null, { timeout: 30000 });
      const found = await page.evaluate(async (values) => {
        const hits = [];
        const check = (where, text) => { for (const v of values) if (String(text).includes(v)) hits.push(`${where}: ${v}`); };
        for (const store of [localStorage, sessionStorage]) {
          for (let i = 0; i < store.length; i++) check('storage', `${store.key(i)}=${store.getItem(store.key(i))}`);
        }
        const dbs = indexedDB.databases ? await indexedDB.databases() : [];
        for (const db of dbs) hits.push(`IndexedDB database ${db.name}`);
        const cached = [];
        for (const name of await caches.keys()) {
          const cache = await caches.open(name);
          for (const req of await cache.keys()) {
            cached.push(new URL(req.url).pathname);
            check('cache url', req.url);
            const res = await cache.match(req);
            check(`cache ${req.url}`, await res.text());
          }
        }
        return { hits, cached };
      }, [PATIENT.id, PATIENT.name, PATIENT.description, '1990-01-15', 'CANARY']);
      assert.deepEqual(found.hits, []);
      assert.ok(found.cached.length > 0, 'the service worker cached the shell');
      assert.ok(found.cached.every((p) => !p.startsWith('/api/') && p !== '/healthz' && p !== '/metrics'), found.cached.join(' '));
    } finally {
      await b.close();
    }
  },

  // Photos shrunk on the phone (the box resizes to 1024): 12-megapixel JPEGs go as 2048-pixel
  // JPEGs, turned upright, with "preparing" shown before "uploading"; then, with the setting
  // turned off on the settings page, the same photos go as they are. tests/browser.rs
  // compares the objects and what crossed the wire. PHONE_PHOTOS: phone_photos.py's folder.
  async shrink(base) {
    const dir = process.env.PHONE_PHOTOS;
    const phone = [1, 2, 3].map((i) => join(dir, `phone-${i}.jpg`));
    const turned = [1, 2, 3, 4, 5, 6, 7, 8].map((k) => join(dir, `turned-${k}.jpg`));
    const size = (f) => readFileSync(f).length;
    const b = await browser();
    try {
      const { page } = await openPage(b, base, { setup: recordUploads });
      const info = await page.evaluate(() => fetch('api/settings/info').then((r) => r.json()));
      assert.equal(info.phoneLongEdge, 2048);
      assert.equal(info.resizeMax, 1024);
      // Twice what the box makes of each phone size (src/convert/photo.rs: 4032 / 4 = 1008,
      // 8064 / 8 = 1008, 4000 / 4 = 1000; 3264 / 2 = 1632 resampled to 1024), at most 2048.
      const edges = await page.evaluate(() => import('./shrink.js').then((m) => [4032, 8064, 4000, 4080, 3264, 2560, 1600]
        .map((long) => m.phoneLongEdge(long, { limit: 1024, cap: 2048 }))));
      assert.deepEqual(edges, [2016, 2016, 2000, 2040, 2048, 2048, 2048]);

      const shrunk = await sendPhotos(page, 'SHRUNK-PHONE', phone);
      assert.equal(shrunk.sent.length, 3);
      shrunk.sent.forEach((f, i) => {
        assert.equal(f.type, 'image/jpeg');
        assert.ok(f.size < size(phone[i]) / 3, `photo ${i + 1}: ${f.size} B sent of ${size(phone[i])} B`);
      });
      const preparing = shrunk.log.findIndex((t) => /^Preparing photos \d\/3/.test(t));
      const uploading = shrunk.log.findIndex((t) => /^Uploading/.test(t));
      assert.ok(preparing >= 0 && uploading > preparing, `preparing, then uploading: ${shrunk.log.join(' | ')}`);
      const turnedShrunk = await sendPhotos(page, 'SHRUNK-TURNED', turned);
      turnedShrunk.sent.forEach((f, i) => assert.notEqual(f.size, size(turned[i]), `turned-${i + 1} was shrunk`));
      // The same through createImageBitmap, as in browsers without WebCodecs' ImageDecoder.
      const bitmapPage = await (await b.newContext({ viewport: { width: 390, height: 844 } })).newPage();
      await recordUploads(bitmapPage);
      await bitmapPage.goto(`${base}?shrink=bitmap`, { waitUntil: 'load' });
      await bitmapPage.waitForSelector('html[data-ready]', { state: 'attached' });
      const turnedBitmap = await sendPhotos(bitmapPage, 'SHRUNK-BITMAP', turned);
      turnedBitmap.sent.forEach((f, i) => assert.notEqual(f.size, size(turned[i]), `turned-${i + 1} was shrunk`));
      await bitmapPage.close();
      // AVIF, which the box does not read, arrives as JPEG; a HEIF this browser cannot decode
      // goes as it is, and the box says why it cannot take it.
      const avif = await sendPhotos(page, 'SHRUNK-AVIF', [photo('pillow_exif.avif')]);
      assert.equal(avif.sent[0].type, 'image/jpeg');
      assert.equal(avif.sent[0].name, 'pillow_exif.jpg');
      await page.fill('#patientId', 'SHRUNK-HEIF');
      await page.setInputFiles('#album', [photo('pillow_hopper.heif')]);
      await page.click('#send');
      await page.waitForFunction(() => document.getElementById('status').className === 'error', null, { timeout: 30000 });
      assert.match(await page.textContent('#status'), /HEI[CF]/);
      assert.equal((await page.evaluate(() => window.sentFiles[window.sentFiles.length - 1]))[0].size, readFileSync(photo('pillow_hopper.heif')).length);
      await page.locator('#thumbs button').first().click();

      // The admin wants originals on the wire.
      await openAdmin(page, 'settings');
      await page.click('details:has(#flagShrinkOnPhone) > summary'); // the advanced settings
      assert.equal(await page.isChecked('#flagShrinkOnPhone'), true, 'on by default');
      await page.locator('#flagShrinkOnPhone').uncheck();
      await page.click('#save');
      await page.waitForFunction(() => document.getElementById('save-result').className === 'ok');
      assert.equal((await settingsOf(page)).flagShrinkOnPhone, false);
      await page.click('#tab-home');

      const originals = await sendPhotos(page, 'ORIGINAL-PHONE', phone);
      assert.deepEqual(originals.sent.map((f) => f.size), phone.map(size));
      assert.ok(!originals.log.some((t) => /^Preparing/.test(t)), originals.log.join(' | '));
      const turnedOriginals = await sendPhotos(page, 'ORIGINAL-TURNED', turned);
      assert.deepEqual(turnedOriginals.sent.map((f) => f.size), turned.map(size));

      // Nothing of the photos or the patients is left in the browser.
      const found = await storedValues(page, ['SHRUNK-PHONE', 'SHRUNK-TURNED', 'ORIGINAL-PHONE', 'ORIGINAL-TURNED']);
      assert.deepEqual(found.hits, []);
      assert.ok(found.cached.every((p) => !/\.(jpe?g|heic)$/i.test(p) && !p.startsWith('/api/')), found.cached.join(' '));
    } finally {
      await b.close();
    }
  },

  // The box keeps originals (LOCAL_RESIZE_MAX=0): the photo goes as it was picked, and a
  // HEIF this browser cannot decode still gets the box's own answer.
  async originals(base) {
    const photo = join(process.env.PHONE_PHOTOS, 'phone-1.jpg');
    const b = await browser();
    try {
      const { page } = await openPage(b, base, { setup: recordUploads });
      const info = await page.evaluate(() => fetch('api/settings/info').then((r) => r.json()));
      assert.equal(info.phoneLongEdge, 0);
      const sent = await sendPhotos(page, 'ORIGINAL-SIZE', [photo]);
      assert.deepEqual(sent.sent.map((f) => f.size), [readFileSync(photo).length]);
      assert.ok(!sent.log.some((t) => /^Preparing/.test(t)), sent.log.join(' | '));
    } finally {
      await b.close();
    }
  },

  // The gateway unreachable: the cached shell says so instead of a browser error page.
  async offline(base) {
    const b = await browser();
    try {
      const { context, page } = await openPage(b, base);
      await page.evaluate(() => navigator.serviceWorker.ready);
      await page.reload({ waitUntil: 'load' });
      assert.equal(await page.isVisible('#offline'), false);
      await context.setOffline(true);
      await page.reload({ waitUntil: 'load' });
      await page.waitForSelector('#offline', { state: 'visible', timeout: 10000 });
      assert.match(await page.textContent('#offline h2'), /cannot be reached/);
      // Back online: the page notices by itself (or the user taps "Try again").
      await context.setOffline(false);
      if (await page.isVisible('#retry')) await page.click('#retry').catch(() => {});
      await page.waitForSelector('#offline', { state: 'hidden', timeout: 10000 });
    } finally {
      await b.close();
    }
  },

  // Accessibility basics at 360 px: every input has a label, touch targets are 44 px.
  async layout(base) {
    const b = await browser();
    try {
      const { page } = await openPage(b, base, { viewport: { width: 360, height: 740 } });
      await page.setInputFiles('#album', PHOTOS.slice(0, 1));
      // The photo's body site with its side buttons (a paired region).
      await page.locator('#thumbs select').selectOption('forearm');
      await page.waitForSelector('#thumbs .site-side', { state: 'visible' });
      if (await page.isVisible('#worklist')) {
        // With today's list: its entries, a picked patient's link and Edit button.
        await page.waitForSelector('#worklist-list .wl-entry');
        await page.locator('#worklist-list .wl-entry').first().click();
        await page.waitForSelector('#patient-link', { state: 'visible' });
      }
      for (const view of ['home', 'settings']) {
        await page.click(`#tab-${view}`);
        await page.evaluate(() => { for (const d of document.querySelectorAll('details')) d.open = true; });
        const problems = await page.evaluate(() => {
          const out = [];
          const visible = (el) => !el.closest('[hidden]') && el.getClientRects().length > 0;
          for (const el of document.querySelectorAll('input, select')) {
            if (!visible(el) && !el.classList.contains('visually-hidden')) continue;
            const labelled = el.labels && el.labels.length > 0;
            if (!labelled) out.push(`no label: ${el.id || el.name}`);
          }
          for (const el of document.querySelectorAll('button, .button, input:not(.visually-hidden), select, summary')) {
            if (!visible(el) || el.type === 'radio' || el.type === 'checkbox') continue;
            const r = el.getBoundingClientRect();
            if (r.height < 44 || r.width < 44) out.push(`small target: ${el.id || el.className || el.tagName} ${r.width}x${r.height}`);
          }
          if (document.documentElement.scrollWidth > window.innerWidth) out.push(`horizontal scroll: ${document.documentElement.scrollWidth}`);
          return out;
        });
        assert.deepEqual(problems, [], view);
      }
      // The admin's status, backup and update views (the secrets' fields shown).
      await page.click('#tab-settings');
      for (const sub of ['status', 'backup', 'update']) {
        await page.click(`#sub-${sub}`);
        if (sub === 'status') await page.waitForFunction(() => document.getElementById('status-note').textContent !== '');
        if (sub === 'backup') await page.waitForSelector('#admin-backup[data-ready="1"]');
        if (sub === 'update') await page.waitForSelector('#admin-update[data-ready="1"]');
        if (sub === 'backup' && await page.isEnabled('#backup-secrets')) await page.check('#backup-secrets');
        const problems = await page.evaluate(() => {
          const out = [];
          const visible = (el) => !el.closest('[hidden]') && el.getClientRects().length > 0;
          for (const el of document.querySelectorAll('#admin input, #admin select')) {
            if (!visible(el) && !el.classList.contains('visually-hidden')) continue;
            if (!(el.labels && el.labels.length > 0)) out.push(`no label: ${el.id || el.name}`);
          }
          for (const el of document.querySelectorAll('#admin button, #admin .button')) {
            if (!visible(el)) continue;
            const r = el.getBoundingClientRect();
            if (r.height < 44 || r.width < 44) out.push(`small target: ${el.id || el.className || el.tagName} ${r.width}x${r.height}`);
          }
          if (document.documentElement.scrollWidth > window.innerWidth) out.push(`horizontal scroll: ${document.documentElement.scrollWidth}`);
          return out;
        });
        assert.deepEqual(problems, [], sub);
        // The four views are tabs: one selected, its panel shown.
        const tabs = await page.$$eval('#admin [role="tab"]', (els) => els.map((e) => [e.id, e.getAttribute('aria-selected'),
          !document.getElementById(e.getAttribute('aria-controls')).hidden]));
        assert.deepEqual(tabs, ['settings', 'status', 'backup', 'update'].map((x) => [`sub-${x}`, String(x === sub), x === sub]));
      }
      // Radio buttons and checkboxes: their whole label row is the target.
      const rows = await page.$$eval('.radio, .check', (els) => els.filter((e) => e.getClientRects().length && e.getBoundingClientRect().height < 44).length);
      assert.equal(rows, 0);
    } finally {
      await b.close();
    }
  },

  // The PACS is down: the page says the photos are saved on the box, clears the form, and
  // follows the study in its list until it is in the PACS (the test starts the PACS once
  // the study is queued).
  async queued(base) {
    const b = await browser();
    try {
      const { page } = await openPage(b, base);
      await fillPatient(page);
      await page.setInputFiles('#album', PHOTOS.slice(0, 2));
      await page.click('#send');
      await page.waitForFunction(() => document.getElementById('status').className === 'queued', null, { timeout: 30000 });
      assert.match(await page.textContent('#status'), /[Ss]aved on the box/);
      assert.equal(await page.inputValue('#patientId'), '', 'the photos are safe: the form is cleared');
      assert.equal(await page.locator('#thumbs li').count(), 0);
      const item = page.locator('#sends li').first();
      assert.equal(await item.getAttribute('class'), 'queued');
      assert.match(await item.textContent(), /2 image\(s\): saved on the box, will be sent automatically/);
      // Nothing of the patient in the list.
      assert.ok(!(await page.textContent('#sends-box')).includes(PATIENT.id));
      await page.waitForFunction(() => document.querySelector('#sends li')?.className === 'stored', null, { timeout: 60000 });
      assert.match(await item.textContent(), /in the PACS/);
    } finally {
      await b.close();
    }
  },

  // The connection drops after the photos went up, before the answer came back (the test
  // runs a proxy that cuts it once): the page sends again with the same key, and says sent.
  async dropped(base) {
    const b = await browser();
    try {
      const { page } = await openPage(b, base, { setup: recordUploads });
      const seen = [];
      await page.exposeFunction('statusSeen', (text) => seen.push(text));
      await page.evaluate(() => {
        const s = document.getElementById('status');
        new MutationObserver(() => window.statusSeen(s.textContent)).observe(s, { childList: true, characterData: true, subtree: true });
      });
      await fillPatient(page);
      await page.setInputFiles('#album', PHOTOS.slice(0, 2));
      await page.click('#send');
      await page.waitForFunction(() => document.getElementById('status').className === 'ok', null, { timeout: 60000 });
      assert.match(await page.textContent('#status'), /Sent 2 image/);
      assert.ok(seen.some((t) => /Connection lost, sending again/.test(t)), `the page retried: ${seen.join(' | ')}`);
      assert.equal(await page.locator('#sends li').count(), 1, 'one study in the list');
      // The phone's time of the first press went with both tries, to the second with its offset.
      const sent = await page.evaluate(() => window.sentForms);
      assert.equal(sent.length, 2, 'sent twice');
      assert.match(sent[0].clientTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/);
      assert.equal(sent[1].clientTime, sent[0].clientTime, 'the same time in the resend');
    } finally {
      await b.close();
    }
  },

  // The admin's outbox card: a study the PACS did not take (the test queued one) is listed
  // with its Patient ID masked; Send again queues it, Delete (confirmed) removes it.
  async outbox(base) {
    const b = await browser();
    try {
      const { page } = await openPage(b, base);
      page.on('dialog', (d) => d.accept());
      await page.click('#tab-settings');
      const item = page.locator('#outbox-list li').first();
      await item.waitFor({ state: 'visible', timeout: 15000 });
      const text = await item.textContent();
      assert.match(text, /patient CAN\*\*\*/);
      assert.ok(!text.includes(PATIENT.id), text);
      assert.match(text, /2 image\(s\)/);
      assert.match(await page.textContent('#outbox-summary'), /1 waiting to be sent/);
      await item.locator('button.retry').click();
      await page.waitForFunction(() => /attempt/.test(document.querySelector('#outbox-list li .detail')?.textContent || ''));
      // Refresh until the retry's attempt is over (Delete is off while it is being sent).
      for (let i = 0; i < 50 && await page.locator('#outbox-list li button.delete').first().isDisabled(); i++) {
        await page.click('#outbox-refresh');
        await page.waitForTimeout(200);
      }
      await page.locator('#outbox-list li button.delete').first().click();
      await page.waitForFunction(() => document.querySelectorAll('#outbox-list li').length === 0, null, { timeout: 15000 });
      assert.match(await page.textContent('#outbox-summary'), /No study is waiting/);
    } finally {
      await b.close();
    }
  },

  // A keyboard-wedge scanner types the wristband's code fast and presses Enter: the ID is
  // taken out of the code, looked up, and nothing is sent. A code without an ID leaves the
  // field alone; an ID typed by hand and Enter is looked up as it is ("not found" warns only).
  async wedge(base) {
    const b = await browser();
    try {
      const { page } = await openPage(b, base);
      const uploads = [];
      page.on('request', (r) => { if (r.url().includes('/api/studies')) uploads.push(`${r.method()} ${r.url()}`); });
      // The two small rules underneath: names as people read them, IDs out of codes.
      const rules = await page.evaluate(() => import('./patient.js').then((m) => ({
        names: ['WANG^DA MING', '王^大明', 'Wang^Daming=王^大明', 'DEMO^ALICE^^DR', ''].map(m.formatName),
        ids: [['PID:X1;V1', '^PID:([^;]+)'], ['X1', '^PID:([^;]+)'], [' A-7 ', ''], ['MRN 0042/H', 'MRN (\\d+)']].map(([c, p]) => m.extractId(c, p)),
      })));
      assert.deepEqual(rules.names, ['WANG, DA MING', '王大明', 'Wang, Daming (王大明)', 'DEMO, DR ALICE', '']);
      assert.deepEqual(rules.ids, ['X1', null, 'A-7', '0042']);
      // With a photo attached the send button is live: an Enter that submitted would send.
      await page.setInputFiles('#album', PHOTOS.slice(0, 1));
      await page.click('#patientId');
      await page.keyboard.type('PID:DEMO001;V1'); // no pause between keys, as a scanner
      await page.keyboard.press('Enter');
      assert.equal(await page.inputValue('#patientId'), 'DEMO001');
      await page.waitForSelector('#lookup.found', { timeout: 15000 });
      assert.match(await page.textContent('#lookup'), /ALICE/);
      assert.match(await page.textContent('#send-who'), /DEMO001/);

      // A code that holds no patient ID: said, and the field keeps DEMO001.
      await page.keyboard.type('https://example.org/menu');
      await page.keyboard.press('Enter');
      assert.equal(await page.inputValue('#patientId'), 'DEMO001');
      assert.match(await page.textContent('#scan-note'), /does not contain a patient ID/);

      // A scanner set to end with Tab: the same, and the focus moves on.
      await page.fill('#patientId', '');
      await page.keyboard.type('PID:DEMO003;V1');
      await page.keyboard.press('Tab');
      assert.equal(await page.inputValue('#patientId'), 'DEMO003');
      assert.notEqual(await page.evaluate(() => document.activeElement.id), 'patientId');
      await page.waitForFunction(() => /CAROL/.test(document.getElementById('lookup').textContent), null, { timeout: 15000 });

      // Typed by hand, then Enter: the ID as typed, looked up, not found is a warning only.
      await page.fill('#patientId', '');
      await page.locator('#patientId').pressSequentially('NEW-77', { delay: 120 });
      await page.keyboard.press('Enter');
      assert.equal(await page.inputValue('#patientId'), 'NEW-77');
      await page.waitForSelector('#lookup.missing', { timeout: 15000 });
      assert.match(await page.textContent('#lookup'), /Not found in the PACS/);
      assert.equal(await page.isDisabled('#send'), false, 'not found never blocks sending');

      await page.waitForTimeout(500);
      assert.deepEqual(uploads, [], 'Enter in the ID field sent nothing');
      assert.equal(await page.textContent('#status'), '');
      assert.equal(await page.locator('#thumbs li').count(), 1);
    } finally {
      await b.close();
    }
  },

  // The camera button on plain HTTP (forced here with ?scan=photo: 127.0.0.1 is a secure
  // context) opens a still-photo picker; a Code 128 and a QR wristband, generated here, are
  // decoded by the vendored ZXing WebAssembly decoder (forced with ?decoder=zxing, though
  // headless Chromium on Linux has no BarcodeDetector anyway), which is fetched only after
  // the first press.
  async scan(base) {
    const b = await browser();
    try {
      const requests = [];
      const { page } = await openPage(b, `${base}?scan=photo&decoder=zxing`, { requests });
      await page.waitForTimeout(1000);
      const decoder = (list) => list.filter((r) => /\/scan\.js$|\/vendor\//.test(r));
      assert.deepEqual(decoder(requests), [], 'the decoder is not loaded with the page');
      console.log(`BarcodeDetector in headless Chromium: ${await page.evaluate(() => typeof window.BarcodeDetector)}`);

      const pick = async (png, name) => {
        const [chooser] = await Promise.all([page.waitForEvent('filechooser'), page.click('#scan')]);
        assert.equal(chooser.isMultiple(), false);
        await chooser.setFiles({ name, mimeType: 'image/png', buffer: png });
      };
      await pick(await wristband('code128', 'PID:DEMO002;V1'), 'band-128.png');
      await page.waitForFunction(() => document.getElementById('patientId').value === 'DEMO002', null, { timeout: 30000 });
      const loaded = decoder(requests);
      for (const file of ['/scan.js', '/vendor/zxing-wasm/es/reader/index.js', '/vendor/zxing-wasm/reader/zxing_reader.wasm']) {
        assert.ok(loaded.includes(`GET ${file}`), `${file} after pressing scan: ${loaded.join(', ')}`);
      }
      await page.waitForSelector('#lookup.found', { timeout: 15000 });

      await pick(await wristband('qrcode', 'PID:DEMO003;NAME:DEMO^CAROL;DOB:19700101'), 'band-qr.png');
      await page.waitForFunction(() => document.getElementById('patientId').value === 'DEMO003', null, { timeout: 30000 });
      await page.waitForFunction(() => /CAROL/.test(document.getElementById('lookup').textContent), null, { timeout: 15000 });

      // A code without a patient ID: said, the field keeps what it had.
      await pick(await wristband('qrcode', 'https://example.org/menu'), 'menu.png');
      await page.waitForSelector('#scan-note:not([hidden])', { timeout: 30000 });
      assert.match(await page.textContent('#scan-note'), /does not contain a patient ID/);
      assert.equal(await page.inputValue('#patientId'), 'DEMO003');
      assert.equal(decoder(requests).filter((r) => r.endsWith('.wasm')).length, 1, 'the decoder is loaded once');
    } finally {
      await b.close();
    }
  },

  // Live scanning where the page is a secure context (127.0.0.1 is one): Chromium's fake
  // camera plays in the scan dialog (its picture holds no barcode), the decoder loads, the
  // Content-Security-Policy lets the video and the WebAssembly through, and Cancel stops
  // the camera and leaves the field alone.
  async livescan(base) {
    const b = await browser(['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream']);
    try {
      const requests = [];
      const { context, page } = await openPage(b, `${base}?decoder=zxing`, { requests });
      await context.grantPermissions(['camera']);
      await page.evaluate(() => {
        window.violations = [];
        document.addEventListener('securitypolicyviolation', (e) => window.violations.push(`${e.violatedDirective} ${e.blockedURI}`));
      });
      assert.equal(await page.evaluate(() => window.isSecureContext), true);
      await page.fill('#patientId', 'KEEP-1');
      await page.click('#scan');
      await page.waitForSelector('#scan-dialog[open]', { timeout: 15000 });
      await page.waitForFunction(() => {
        const v = document.getElementById('scan-video');
        return v.readyState >= 2 && v.videoWidth > 0 && !v.paused;
      }, null, { timeout: 15000 });
      await page.waitForFunction(() => performance.getEntriesByName('photo-pacs-decoder-ready').length > 0, null, { timeout: 30000 });
      assert.ok(requests.includes('GET /vendor/zxing-wasm/reader/zxing_reader.wasm'), requests.join(', '));
      await page.waitForTimeout(500); // a few frames through the decoder
      await page.click('#scan-cancel');
      await page.waitForSelector('#scan-dialog', { state: 'hidden' });
      assert.equal(await page.evaluate(() => document.getElementById('scan-video').srcObject), null, 'the camera is stopped');
      assert.equal(await page.inputValue('#patientId'), 'KEEP-1');
      assert.equal(await page.isVisible('#scan-note'), false);
      assert.deepEqual(await page.evaluate(() => window.violations), []);
    } finally {
      await b.close();
    }
  },

  // Today's list: demo entries, searchable in memory; picking one fills and locks the patient
  // (linked to its accession number), Edit unlocks; the refresh button and a pull at the
  // top of the list fetch it again.
  async worklist(base) {
    const b = await browser();
    try {
      const requests = [];
      const { page } = await openPage(b, base, { requests, hasTouch: true });
      await page.waitForSelector('#worklist', { state: 'visible' });
      const entries = page.locator('#worklist-list .wl-entry');
      await page.waitForFunction(() => document.querySelectorAll('#worklist-list .wl-entry').length === 3);
      assert.match(await page.textContent('#worklist-note'), /Demo entries/);
      const all = await worklistEntries(page);
      assert.deepEqual(all.map((e) => e.patientId).sort(), ['DEMO001', 'DEMO002', 'DEMO003']);

      await page.fill('#worklist-search', 'carol');
      assert.equal(await entries.count(), 1);
      assert.match(await entries.first().textContent(), /DEMO, CAROL/);
      await page.fill('#worklist-search', '小明');
      assert.equal(await entries.count(), 1);
      assert.match(await entries.first().textContent(), /測試小明/);
      await page.fill('#worklist-search', 'nobody-here');
      assert.equal(await entries.count(), 0);
      assert.match(await page.textContent('#worklist-empty'), /No entry matches/);
      await page.fill('#worklist-search', '');
      assert.equal(await entries.count(), 3);
      const alice = all.find((e) => e.patientId === 'DEMO001');
      if (alice.accessionNumber) {
        await page.fill('#worklist-search', alice.accessionNumber);
        assert.equal(await entries.count(), 1);
      }
      await page.fill('#worklist-search', 'DEMO001');
      await entries.first().click();

      assert.equal(await page.inputValue('#patientId'), 'DEMO001');
      assert.equal(await page.inputValue('#patientName'), alice.patientName);
      assert.equal(await page.inputValue('#birthDate'), alice.birthDate);
      assert.equal(await page.inputValue('#examDescription'), alice.requestedProcedureDescription || alice.stepDescription);
      for (const id of ['patientId', 'patientName', 'birthDate', 'examDescription']) {
        assert.equal(await page.getAttribute(`#${id}`, 'readonly'), '', `${id} is locked`);
      }
      assert.equal(await page.isDisabled('#sex'), true);
      assert.equal(await page.isVisible('#patient-link'), true);
      if (alice.accessionNumber) assert.ok((await page.textContent('#patient-link')).includes(alice.accessionNumber));
      assert.equal(await page.isVisible('#lookup'), false, 'no lookup for a worklist patient');
      assert.equal(await entries.first().getAttribute('aria-pressed'), 'true');
      const who = await page.textContent('#send-who');
      assert.ok(who.includes('DEMO001') && who.includes('DEMO, ALICE'), who);
      // Typing into a locked field changes nothing.
      await page.click('#patientName');
      await page.keyboard.type('X');
      assert.equal(await page.inputValue('#patientName'), alice.patientName);
      // A wristband scanned now checks the pick and changes nothing.
      await page.click('#patientId');
      await page.keyboard.type('PID:DEMO003;V1');
      await page.keyboard.press('Enter');
      assert.match(await page.textContent('#scan-note'), /says DEMO003, not DEMO001/);
      assert.equal(await page.inputValue('#patientId'), 'DEMO001');
      await page.keyboard.type('PID:DEMO001;V1');
      await page.keyboard.press('Enter');
      assert.match(await page.textContent('#scan-note'), /matches: ID DEMO001/);
      assert.equal(await page.inputValue('#patientId'), 'DEMO001');

      await page.click('#unlink');
      assert.equal(await page.isVisible('#patient-link'), false);
      for (const id of ['patientId', 'patientName', 'birthDate', 'examDescription']) {
        assert.equal(await page.getAttribute(`#${id}`, 'readonly'), null, `${id} is unlocked`);
      }
      assert.equal(await page.isDisabled('#sex'), false);
      assert.equal(await page.inputValue('#patientId'), 'DEMO001', 'the values stay, as an ordinary study');
      await page.fill('#patientName', 'DEMO^ALICIA');
      assert.equal(await page.inputValue('#patientName'), 'DEMO^ALICIA');
      assert.equal(await entries.first().getAttribute('aria-pressed'), 'false');

      const fetches = () => requests.filter((r) => r === 'GET /api/worklist').length;
      const before = fetches();
      await page.click('#worklist-refresh');
      await page.waitForFunction(() => document.getElementById('worklist').getAttribute('aria-busy') === 'false');
      assert.equal(fetches(), before + 1, 'the refresh button fetches the list again');
      // A downward pull from the top of the list.
      await page.evaluate(async () => {
        const list = document.getElementById('worklist-list');
        const r = list.getBoundingClientRect();
        const at = (y) => [new Touch({ identifier: 1, target: list, clientX: r.left + 20, clientY: y })];
        const fire = (type, y) => list.dispatchEvent(new TouchEvent(type, {
          bubbles: true, cancelable: true, touches: type === 'touchend' ? [] : at(y), changedTouches: at(y),
        }));
        fire('touchstart', r.top + 5);
        for (let dy = 10; dy <= 120; dy += 10) fire('touchmove', r.top + 5 + dy);
        fire('touchend', r.top + 125);
      });
      for (let i = 0; i < 50 && fetches() < before + 2; i++) await page.waitForTimeout(100);
      await page.waitForFunction(() => document.getElementById('worklist').getAttribute('aria-busy') === 'false');
      assert.equal(fetches(), before + 2, 'a pull at the top of the list fetches it again');
      // The PACS's sentence when the worklist query fails (a 504 made here: the demo never fails).
      await page.route('**/api/worklist?fresh=1', (route) => route.fulfill({
        status: 504, json: { code: 'PACS_TIMEOUT', message: 'The worklist server WLM did not answer within 10 s' },
      }));
      await page.click('#worklist-refresh');
      await page.waitForFunction(() => /did not answer within 10 s/.test(document.getElementById('worklist-note').textContent));
      assert.match(await page.getAttribute('#worklist-note', 'class'), /error/);
      await page.unroute('**/api/worklist?fresh=1');
      await page.click('#worklist-refresh');
      await page.waitForFunction(() => document.getElementById('worklist-note').className === 'hint');
      assert.doesNotMatch(await page.textContent('#worklist-note'), /did not answer/);
      // Back on the home view: fetched again.
      await page.click('#tab-settings');
      await page.click('#tab-home');
      await page.waitForFunction(() => document.getElementById('worklist').getAttribute('aria-busy') === 'false');
      assert.equal(fetches(), before + 5, 'opening the home view fetches the list again');
    } finally {
      await b.close();
    }
  },

  // Behind an upload PIN: the list asks for it, and comes once it is typed.
  async worklistpin(base) {
    const b = await browser();
    try {
      const { page } = await openPage(b, base);
      await page.waitForSelector('#worklist', { state: 'visible' });
      await page.waitForFunction(() => /upload PIN/.test(document.getElementById('worklist-note').textContent));
      assert.equal(await page.isVisible('#pin-box'), true);
      assert.equal(await page.locator('#worklist-list .wl-entry').count(), 0);
      await page.fill('#upload-pin', 'pin-2468');
      await page.press('#upload-pin', 'Tab');
      await page.waitForFunction(() => document.querySelectorAll('#worklist-list .wl-entry').length === 3);
      assert.doesNotMatch(await page.textContent('#worklist-note'), /PIN/);
    } finally {
      await b.close();
    }
  },

  // Picked from the list and sent: the upload carries the entry, the result repeats the two
  // identifiers, the link goes with the form, and no patient value is kept by the browser.
  async worklistsend(base) {
    const b = await browser();
    try {
      const { page } = await openPage(b, base);
      // The upload's form as the page hands it to XMLHttpRequest (the browser does not show
      // a multipart body with files to the test): kept in page memory for the check below.
      await page.addInitScript(() => {
        const send = XMLHttpRequest.prototype.send;
        XMLHttpRequest.prototype.send = function (body) {
          if (body instanceof FormData) window.sentForms = [...(window.sentForms || []), Object.fromEntries([...body].filter(([, v]) => typeof v === 'string'))];
          return send.call(this, body);
        };
      });
      await page.evaluate(() => navigator.serviceWorker.ready);
      await page.reload({ waitUntil: 'load' }); // now under the service worker
      await page.waitForSelector('html[data-ready]', { state: 'attached' });
      await page.waitForFunction(() => document.querySelectorAll('#worklist-list .wl-entry').length === 3);
      const all = await worklistEntries(page);
      const xm = all.find((e) => e.patientId === 'DEMO002');
      await page.fill('#worklist-search', '小明');
      await page.locator('#worklist-list .wl-entry').first().click();
      await page.setInputFiles('#album', PHOTOS.slice(0, 1));
      assert.match(await page.textContent('#send-who'), /DEMO002/);
      assert.match(await page.textContent('#send-who'), /測試小明/);
      await page.click('#send');
      await page.waitForFunction(() => document.getElementById('status').className === 'ok', null, { timeout: 30000 });
      const sent = await page.evaluate(() => window.sentForms);
      assert.equal(sent.length, 1);
      assert.equal(sent[0].worklistEntry, xm.entry, 'the entry went verbatim with the upload');
      assert.equal(sent[0].patientId, 'DEMO002');
      assert.equal(sent[0].patientName, xm.patientName);
      const result = await page.textContent('#result-who');
      assert.ok(result.includes('DEMO002') && result.includes('測試小明'), result);
      assert.equal(await page.inputValue('#patientId'), '');
      assert.equal(await page.isVisible('#patient-link'), false);
      assert.equal(await page.getAttribute('#patientId', 'readonly'), null);
      assert.equal(await page.isDisabled('#sex'), false);
      // The next patient by hand is an ordinary study.
      await page.fill('#patientId', 'P-NEXT');
      assert.equal(await page.isVisible('#result-who'), false);

      // Looked up too (DEMO001 by hand), then: nothing of either patient in the browser.
      await page.fill('#patientId', 'DEMO001');
      await page.keyboard.press('Enter');
      await page.waitForSelector('#lookup.found', { timeout: 15000 });
      const alice = all.find((e) => e.patientId === 'DEMO001');
      const values = [xm.patientId, xm.patientName, '小明', xm.entry, xm.accessionNumber, xm.birthDate,
        alice.patientId, 'ALICE', alice.birthDate, alice.entry, 'DEMO00'];
      const found = await storedValues(page, values.filter(Boolean));
      assert.deepEqual(found.hits, []);
      assert.ok(found.cached.length > 0, 'the service worker cached the shell');
      assert.ok(found.cached.every((p) => !p.startsWith('/api/') && !p.includes('vendor') && p !== '/scan.js'), found.cached.join(' '));
    } finally {
      await b.close();
    }
  },

  // Each photo's body site (sites.js), in Chinese and then in English: a region from the
  // box's list, a side only for a paired region, a note; a new photo takes the region and
  // side of the photo before it (not the note), and changing one photo leaves the others as
  // they are. The upload carries bodySite[], laterality[], bodySiteNote[] one per photo in
  // image order; the test reads the two studies back from the DICOM objects storescp got.
  async sites(base) {
    const b = await browser();
    try {
      const { page } = await openPage(b, base, { locale: 'zh-TW' });
      // The upload's text fields as the page hands them to XMLHttpRequest, in order.
      await page.evaluate(() => {
        const send = XMLHttpRequest.prototype.send;
        XMLHttpRequest.prototype.send = function (body) {
          if (body instanceof FormData) window.sentForms = [...(window.sentForms || []), [...body].filter(([, v]) => typeof v === 'string')];
          return send.call(this, body);
        };
      });
      const photo = (n) => page.locator('#thumbs li').nth(n);
      const site = (n) => page.evaluate((i) => {
        const li = document.querySelectorAll('#thumbs li')[i];
        const tag = li.querySelector('.site-tag');
        return {
          key: li.querySelector('select').value,
          side: [...li.querySelectorAll('.site-side button[aria-pressed="true"]')].map((x) => x.dataset.side).join(''),
          sideShown: li.querySelector('.site-side').getClientRects().length > 0,
          note: li.querySelector('input.site-note').value,
          tag: tag.hidden ? '' : tag.textContent,
        };
      }, n);
      const pick = (n, label) => photo(n).locator('select').selectOption({ label });
      const side = (n, name) => photo(n).getByRole('button', { name, exact: true }).click();
      const sent = async () => {
        const fields = (await page.evaluate(() => window.sentForms)).at(-1);
        const all = (name) => fields.filter(([k]) => k === name).map(([, v]) => v);
        return { site: all('bodySite[]'), side: all('laterality[]'), note: all('bodySiteNote[]') };
      };
      const sendAndWait = async () => {
        await page.click('#send');
        await page.waitForFunction(() => document.getElementById('status').className === 'ok', null, { timeout: 30000 });
        assert.equal(await page.locator('#thumbs li').count(), 0);
      };

      // In Chinese: 左前臂 with a note, then a second photo of the same wound.
      await page.fill('#patientId', 'SITE-ZH');
      await page.setInputFiles('#album', PHOTOS.slice(0, 1));
      assert.deepEqual(await site(0), { key: '', side: '', sideShown: false, note: '', tag: '' });
      await pick(0, '鼻子');
      assert.equal((await site(0)).sideShown, false, 'no side for the nose');
      await pick(0, '頭部');
      assert.equal((await site(0)).sideShown, false, 'no side for the head');
      assert.equal((await site(0)).tag, '頭部');
      await pick(0, '前臂');
      assert.equal((await site(0)).sideShown, true, 'a side for the forearm');
      assert.deepEqual(await photo(0).locator('.site-side button').allTextContents(), ['左', '右', '雙側']);
      await side(0, '左');
      await photo(0).locator('input.site-note').fill('傷口甲');
      assert.deepEqual(await site(0), { key: 'forearm', side: 'L', sideShown: true, note: '傷口甲', tag: '左前臂' });
      await page.setInputFiles('#album', PHOTOS.slice(1, 2));
      assert.deepEqual(await site(1), { key: 'forearm', side: 'L', sideShown: true, note: '', tag: '左前臂' },
        'same as previous: region and side, not the note');
      // The second photo changed: the first stays as it was.
      await pick(1, '手部');
      assert.equal((await site(1)).side, 'L', 'another paired region keeps the side');
      await side(1, '右');
      assert.deepEqual(await site(1), { key: 'hand', side: 'R', sideShown: true, note: '', tag: '右手部' });
      assert.deepEqual(await site(0), { key: 'forearm', side: 'L', sideShown: true, note: '傷口甲', tag: '左前臂' });
      // A second tap on the chosen side takes it back.
      await side(1, '右');
      assert.equal((await site(1)).side, '');
      await side(1, '右');
      // The third follows the second; moved to the head, it has no side.
      await page.setInputFiles('#album', PHOTOS.slice(2, 3));
      assert.deepEqual(await site(2), { key: 'hand', side: 'R', sideShown: true, note: '', tag: '右手部' });
      await pick(2, '頭部');
      assert.deepEqual(await site(2), { key: 'head', side: '', sideShown: false, note: '', tag: '頭部' });
      assert.equal((await site(1)).tag, '右手部');
      await sendAndWait();
      assert.deepEqual(await sent(), { site: ['forearm', 'hand', 'head'], side: ['L', 'R', ''], note: ['傷口甲', '', ''] });
      // A sent study's sites are forgotten: the next patient's first photo has none.
      await page.setInputFiles('#album', PHOTOS.slice(0, 1));
      assert.deepEqual(await site(0), { key: '', side: '', sideShown: false, note: '', tag: '' });
      await photo(0).locator('button.remove').click();

      // In English: both knees, a photo taken again after a removal keeps them, the chest
      // has no side, and a photo with no site at all.
      await page.click('#lang');
      await page.fill('#patientId', 'SITE-EN');
      await page.setInputFiles('#album', PHOTOS.slice(0, 1));
      await pick(0, 'Nose');
      assert.equal((await site(0)).sideShown, false, 'no side for the nose');
      await pick(0, 'Knee');
      assert.deepEqual(await photo(0).locator('.site-side button').allTextContents(), ['Left', 'Right', 'Both']);
      await side(0, 'Both');
      await photo(0).locator('input.site-note').fill('medial side');
      assert.deepEqual(await site(0), { key: 'knee', side: 'B', sideShown: true, note: 'medial side', tag: 'Knee (both)' });
      await page.setInputFiles('#album', PHOTOS.slice(1, 2));
      assert.deepEqual(await site(1), { key: 'knee', side: 'B', sideShown: true, note: '', tag: 'Knee (both)' });
      await photo(1).locator('button.remove').click();
      await page.setInputFiles('#album', PHOTOS.slice(1, 2));
      assert.deepEqual(await site(1), { key: 'knee', side: 'B', sideShown: true, note: '', tag: 'Knee (both)' },
        'a photo taken again after a removal keeps the site');
      await pick(1, 'Chest');
      assert.deepEqual(await site(1), { key: 'chest', side: '', sideShown: false, note: '', tag: 'Chest' });
      assert.equal((await site(0)).tag, 'Knee (both)');
      await page.setInputFiles('#album', PHOTOS.slice(2, 3));
      assert.equal((await site(2)).key, 'chest');
      await pick(2, 'Body site: none');
      assert.deepEqual(await site(2), { key: '', side: '', sideShown: false, note: '', tag: '' });
      // Enter in a note never sends.
      await photo(2).locator('input.site-note').press('Enter');
      assert.equal(await page.locator('#thumbs li').count(), 3);
      await sendAndWait();
      assert.deepEqual(await sent(), { site: ['knee', 'chest', ''], side: ['B', '', ''], note: ['medial side', '', ''] });
      assert.equal((await page.evaluate(() => window.sentForms)).length, 2, 'two uploads');
    } finally {
      await b.close();
    }
  },

  // The admin's status view on a box whose clock is 3 days behind (tests/browser.rs runs
  // the gateway under libfaketime): the clock warning first, as an alert; the box's facts as
  // GET api/status gives them; a refresh every 15 s only while the view is on screen (the
  // page's clock is Playwright's, so the test moves it on); then the same in Chinese.
  async status(base) {
    const b = await browser();
    try {
      const requests = [];
      const { page } = await openPage(b, base, { requests, setup: (p) => p.clock.install() });
      await openAdmin(page, 'status');
      const s = await page.evaluate(() => fetch('api/status', { cache: 'no-store' }).then((r) => r.json()));
      const pageNow = await page.evaluate(() => Date.now());
      const behind = pageNow - Date.parse(s.clock.now);
      assert.ok(Math.abs(behind - 3 * 86400e3) < 600e3, `the box is 3 days behind: ${s.clock.now}`);

      const clock = page.locator('#status-clock');
      await clock.waitFor({ state: 'visible' });
      assert.equal(await clock.getAttribute('role'), 'alert');
      assert.match(await clock.textContent(), /The box's clock is 3 d 0 h behind this phone's\./);
      // It comes first: above readiness, warnings and facts.
      const order = await page.$$eval('#admin-status > *', (els) => els.filter((e) => !e.hidden).map((e) => e.id).filter(Boolean));
      assert.equal(order[0], 'status-clock', order.join(' '));

      const box = await facts(page, 'status-box-card');
      assert.ok(box.Version.startsWith(s.version), box.Version);
      if (s.build.commit) assert.ok(box.Version.includes(s.build.commit), box.Version);
      assert.equal(box['Host name'], s.hostname);
      assert.equal(box.Addresses, s.addresses.join(', ') || 'none');
      assert.match(box.Up, /^\d+ (s|min|h \d+ min|d \d+ h) \(since /);
      assert.equal(box['Sends by'], 'demo mode (mock)');
      const data = await facts(page, 'status-data-card');
      const percent = Math.round((s.data.freeBytes / s.data.totalBytes) * 100);
      assert.match(data['Free space'], new RegExp(`^[\\d.,]+ (kB|MB|GB|TB) of [\\d.,]+ (kB|MB|GB|TB) \\(${percent}% free\\)$`));
      assert.equal(data['Data folder'], s.data.path);
      const outbox = await facts(page, 'status-outbox-card');
      assert.equal(outbox.Waiting, `${s.outbox.depth} study(ies)`);
      const clockCard = await facts(page, 'status-clock-card');
      assert.ok(clockCard['Box time'].startsWith(`${s.clock.now.slice(0, 10)} `), clockCard['Box time']);
      assert.match(clockCard['Against this phone'], /^3 d 0 h behind$/);
      assert.equal(clockCard['Synchronised (NTP)'], { yes: 'yes', no: 'no' }[s.clock.synchronized] || 'unknown');
      const pacs = await facts(page, 'status-pacs-card');
      assert.ok(pacs.Connection, 'the PACS row');
      const tunnel = await facts(page, 'status-tunnel-card');
      assert.equal(tunnel.State, s.tunnel.configured ? tunnel.State : 'not set up');
      assert.match(await page.textContent('#status-ready'), s.ready.ready ? /^Ready/ : /^Not ready/);
      assert.match(await page.textContent('#status-note'), /Updated .*; refreshed every 15 s/);

      // Every 15 s while on screen, not once another view is shown; at once when back.
      const calls = () => requests.filter((r) => r === 'GET /api/status').length;
      let seen = calls();
      await page.clock.fastForward(15500);
      await until(() => calls() === seen + 1, 'the refresh after 15 s');
      await page.click('#sub-settings');
      seen = calls();
      await page.clock.fastForward(31000);
      await page.waitForTimeout(500);
      assert.equal(calls(), seen, 'no refresh while another view is shown');
      await page.click('#sub-status');
      await until(() => calls() === seen + 1, 'a refresh when the view opens again');

      // In Chinese: the same facts and the warning in Chinese.
      await page.click('#lang');
      assert.match(await clock.textContent(), /閘道器的時鐘比這支手機慢了 3 天 0 小時。/);
      assert.equal(await page.textContent('#sub-status'), '狀態');
      assert.equal(await page.textContent('#status-clock-card h2'), '時鐘');
      const zhBox = await facts(page, 'status-box-card');
      assert.equal(zhBox['主機名稱'], s.hostname);
      assert.ok(zhBox['版本'].startsWith(s.version));
      const zhData = await facts(page, 'status-data-card');
      assert.match(zhData['可用空間'], new RegExp(`，共 [\\d.,]+ (kB|MB|GB|TB)（剩 ${percent}%）$`));
      const zhClock = await facts(page, 'status-clock-card');
      assert.equal(zhClock['與這支手機相比'], '慢了 3 天 0 小時');
      assert.match(await page.textContent('#status-note'), /更新，每 15 秒自動更新/);
      // Nothing but the language and the theme in the browser's storage.
      const kept = await page.evaluate(() => Object.keys(localStorage).concat(Object.keys(sessionStorage)).sort());
      assert.deepEqual(kept, ['photo-pacs.lang']);
    } finally {
      await b.close();
    }
  },

  // Recent events after a login, a settings change and an upload with a distinctive
  // patient: the list, newest first, says who did what and which field changed, and holds
  // no patient value; nor does the diagnostics tarball the page downloads. In both languages.
  async events(base) {
    const b = await browser();
    try {
      const { page } = await openPage(b, base);
      await openAdmin(page, 'settings');
      await page.fill('#pacsCalledAET', 'EVENTS_AET');
      await page.click('#save');
      await page.waitForFunction(() => document.getElementById('save-result').className === 'ok');
      await page.click('#tab-home');
      await fillPatient(page);
      await page.setInputFiles('#album', PHOTOS.slice(0, 1));
      await page.click('#send');
      await page.waitForFunction(() => document.getElementById('status').className === 'ok', null, { timeout: 30000 });

      await openAdmin(page, 'status');
      const kinds = () => page.$$eval('#events .ev-kind', (els) => els.map((e) => e.textContent));
      await until(async () => (await kinds()).includes('Delivery'), 'the delivery in the list', 15000);
      const list = await kinds();
      for (const kind of ['Login', 'Settings', 'Delivery']) assert.ok(list.includes(kind), `${kind} in ${list.join(', ')}`);
      assert.ok(list.indexOf('Delivery') < list.indexOf('Settings') && list.indexOf('Settings') < list.indexOf('Login'),
        `newest first: ${list.join(', ')}`);
      const settingsEvent = page.locator('#events li', { has: page.locator('.ev-kind', { hasText: /^Settings$/ }) }).first();
      assert.match(await settingsEvent.textContent(), /fields: .*pacsCalledAET/);
      assert.match(await settingsEvent.textContent(), /by admin from 127\.0\.0\.1/);
      const times = await page.$$eval('#events time', (els) => els.map((e) => Date.parse(e.dateTime)));
      assert.deepEqual(times, [...times].sort((x, y) => y - x), 'newest first');
      const canaries = [PATIENT.id, PATIENT.name, PATIENT.description, '1990-01-15', '19900115', 'CANARY', '王大明'];
      const shown = await page.textContent('#admin-status');
      for (const v of canaries) assert.ok(!shown.includes(v), `${v} in the status view`);

      const diag = await downloaded(page, () => page.click('#diagnostics'));
      assert.match(diag.name, /^photo-pacs-diagnostics-.+-\d{8}-\d{4}\.tar\.gz$/);
      assert.match(await page.textContent('#diagnostics-result'), new RegExp(`Downloaded ${diag.name.replace(/[.]/g, '\\.')}`));
      const tar = gunzipSync(diag.bytes);
      const names = tarNames(tar).map((n) => n.split('/').pop());
      for (const f of ['status.json', 'events.json', 'settings.json', 'version.txt', 'units.txt']) {
        assert.ok(names.includes(f), `${f} in ${names.join(', ')}`);
      }
      for (const v of canaries) assert.ok(!tar.includes(Buffer.from(v)), `${v} in the diagnostics`);
      assert.ok(tar.includes(Buffer.from('EVENTS_AET')), 'the settings are in the diagnostics');
      assert.ok(!tar.includes(Buffer.from(ADMIN_PASSWORD)), 'no password in the diagnostics');

      await page.click('#lang');
      const zhKinds = await kinds();
      for (const kind of ['登入', '設定變更', '送達']) assert.ok(zhKinds.includes(kind), `${kind} in ${zhKinds.join(', ')}`);
      const zhSettingsEvent = page.locator('#events li', { has: page.locator('.ev-kind', { hasText: /^設定變更$/ }) }).first();
      assert.match(await zhSettingsEvent.textContent(), /欄位：.*pacsCalledAET/);
      assert.equal(await page.textContent('#events-title'), '最近事件');
      const zhShown = await page.textContent('#admin-status');
      for (const v of canaries) assert.ok(!zhShown.includes(v), `${v} in the Chinese status view`);
      // (The app's own scripts name 王大明 as an example: the cached shell is not a hit.)
      const found = await storedValues(page, [PATIENT.id, PATIENT.name, PATIENT.description, 'CANARY']);
      assert.deepEqual(found.hits, []);
    } finally {
      await b.close();
    }
  },

  // Backup on one box, restore on fresh ones (tests/browser.rs passes their addresses in
  // RESTORE_BASES). In English: a backup without secrets, restored on the second box after
  // its preview; every setting equal, the secrets absent. In Chinese: a backup with the
  // secrets (the admin password asked again, a passphrase twice), refused with a wrong
  // passphrase and when altered (nothing changes), then restored with the right one.
  async backup(base) {
    const [second, third] = (process.env.RESTORE_BASES || '').split(' ').filter(Boolean).map((u) => (u.endsWith('/') ? u : `${u}/`));
    assert.ok(second && third, 'RESTORE_BASES names two fresh gateways');
    const pin = '2468-1357';
    const b = await browser();
    try {
      // The first box: settings changed on the page, then a backup without secrets.
      const a = (await openPage(b, base)).page;
      await openAdmin(a, 'settings');
      await a.fill('#pacsCalledAET', 'BACKUP_AET');
      await a.fill('#pacsHost', '10.1.2.3');
      await a.fill('#pacsPort', '11112');
      await a.fill('#timeZone', 'Asia/Taipei');
      await a.fill('#ntpServers', 'ntp1.example ntp2.example');
      await a.fill('#uploadPin', pin);
      await a.click('summary');
      await a.fill('#localModality', 'XC');
      await a.click('#save');
      await a.waitForFunction(() => document.getElementById('save-result').className === 'ok');
      const original = await settingsOf(a);
      assert.equal(original.uploadPinSet, true);
      await a.click('#sub-backup');
      await a.waitForSelector('#admin-backup[data-ready="1"]');
      assert.equal(await a.isVisible('#backup-passphrase'), false, 'no passphrase without secrets');
      const plain = await downloaded(a, () => a.click('#backup-download'));
      assert.match(plain.name, /\.backup\.json$/);
      assert.match(await a.textContent('#backup-result'), /without secrets/);
      assert.ok(!plain.bytes.includes(Buffer.from(pin)), 'no PIN in a backup without secrets');
      JSON.parse(plain.bytes.toString('utf8'));

      // The second box, fresh: the file chosen, the preview, then applied.
      const bp = (await openPage(b, second)).page;
      await openAdmin(bp, 'backup');
      // This box has no admin password: it offers no secrets, and says why.
      assert.equal(await bp.isDisabled('#backup-secrets'), true);
      assert.match(await bp.textContent('#backup-secrets-off'), /only on a box with an admin password/);
      const before = await settingsOf(bp);
      await bp.setInputFiles('#restore-file', { name: plain.name, mimeType: 'application/json', buffer: plain.bytes });
      await bp.waitForSelector('#restore-plan', { state: 'visible' });
      assert.equal(await bp.isVisible('#restore-pass-box'), false, 'no passphrase for a plain backup');
      assert.equal(await bp.evaluate(() => document.activeElement.id), 'restore-plan-title');
      const change = bp.locator('#restore-changes li[data-field="pacsCalledAET"]');
      assert.match(await change.textContent(), /^PACS AE title pacsCalledAET/);
      assert.match(await change.locator('.change-values').textContent(), new RegExp(`^was ${before.pacsCalledAET}.*becomes BACKUP_AET$`));
      for (const field of ['pacsHost', 'pacsPort', 'timeZone', 'ntpServers']) {
        assert.equal(await bp.locator(`#restore-changes li[data-field="${field}"]`).count(), 1, `${field} changes`);
      }
      assert.equal(await bp.locator('#restore-changes li[data-field="uploadPin"]').count(), 0, 'no secret in a plain backup');
      assert.deepEqual(await settingsOf(bp), before, 'a preview changes nothing');
      const changes = await bp.locator('#restore-changes li').count();
      assert.equal(await bp.textContent('#restore-apply'), `Apply ${changes} change(s)`);
      await bp.click('#restore-apply');
      await bp.waitForFunction(() => document.getElementById('restore-result').className === 'ok', null, { timeout: 15000 });
      assert.match(await bp.textContent('#restore-result'), new RegExp(`^Restored: ${changes} setting\\(s\\) changed\\.`));
      assert.equal(await bp.isVisible('#restore-plan'), false);
      const restored = await settingsOf(bp);
      const bare = (doc) => Object.fromEntries(Object.entries(doc).filter(([k]) => !k.endsWith('Set')));
      assert.deepEqual(bare(restored), bare(original), 'every setting equal');
      assert.equal(restored.uploadPinSet, false, 'the secrets are not in a plain backup');
      // The settings view shows them.
      await bp.click('#sub-settings');
      await bp.waitForFunction(() => document.getElementById('pacsCalledAET').value === 'BACKUP_AET');
      assert.equal(await bp.inputValue('#timeZone'), 'Asia/Taipei');

      // In Chinese, on the first box: a backup with the secrets.
      await a.click('#lang');
      await a.check('#backup-secrets');
      await a.waitForSelector('#backup-passphrase', { state: 'visible' });
      assert.equal(await a.isVisible('#backup-password'), true, 'the admin password is asked again');
      const phrase = 'correct horse battery staple';
      await a.fill('#backup-password', ADMIN_PASSWORD);
      await a.fill('#backup-passphrase', phrase);
      await a.fill('#backup-passphrase2', 'something else');
      await a.click('#backup-download');
      assert.equal(await a.textContent('.field-error[data-error-for="passphrase2"]'), '兩次輸入的加密密碼不同。');
      await a.fill('#backup-passphrase2', phrase);
      await a.fill('#backup-password', 'not-the-password');
      await a.click('#backup-download');
      await a.locator('.field-error[data-error-for="password"]').waitFor({ state: 'visible' });
      assert.equal(await a.textContent('.field-error[data-error-for="password"]'), '密碼不正確。');
      await a.fill('#backup-password', ADMIN_PASSWORD);
      const sealed = await downloaded(a, () => a.click('#backup-download'));
      assert.match(sealed.name, /\.backup\.age$/);
      assert.match(await a.textContent('#backup-result'), /已加密，含機密/);
      assert.ok(sealed.bytes.toString('latin1').startsWith('-----BEGIN AGE ENCRYPTED FILE-----'), 'an armored age file');
      assert.ok(!sealed.bytes.includes(Buffer.from(pin)));
      assert.equal(await a.inputValue('#backup-passphrase'), '', 'the passphrase is forgotten');

      // The third box, fresh, in Chinese: wrong passphrase, an altered file, then the right one.
      const c = (await openPage(b, third, { locale: 'zh-TW' })).page;
      await openAdmin(c, 'backup');
      const fresh = await settingsOf(c);
      await c.setInputFiles('#restore-file', { name: sealed.name, mimeType: 'application/octet-stream', buffer: sealed.bytes });
      await c.waitForSelector('#restore-pass-box', { state: 'visible' });
      assert.equal(await c.evaluate(() => document.activeElement.id), 'restore-passphrase');
      assert.match(await c.textContent('#restore-file-name'), /（已加密）/);
      await c.fill('#restore-passphrase', 'wrong passphrase');
      await c.click('#restore-preview');
      await c.waitForFunction(() => document.getElementById('restore-result').className === 'error');
      assert.equal(await c.textContent('#restore-result'), '加密密碼不正確。 沒有變更任何設定。');
      assert.equal(await c.textContent('#restore-pass-error'), '加密密碼不正確。');
      assert.equal(await c.getAttribute('#restore-passphrase', 'aria-invalid'), 'true');
      assert.equal(await c.isVisible('#restore-plan'), false);
      assert.deepEqual(await settingsOf(c), fresh, 'a wrong passphrase changes nothing');
      // An altered file: one character in the middle of the armored body (the encrypted
      // settings, past the header) changed.
      const text = sealed.bytes.toString('latin1');
      let at = Math.floor(text.length / 2);
      while (!/[A-Za-z0-9]/.test(text[at])) at += 1;
      const altered = Buffer.from(text.slice(0, at) + (text[at] === 'A' ? 'B' : 'A') + text.slice(at + 1), 'latin1');
      await c.setInputFiles('#restore-file', { name: 'altered.backup.age', mimeType: 'application/octet-stream', buffer: altered });
      await c.fill('#restore-passphrase', phrase);
      await c.click('#restore-preview');
      await c.waitForFunction(() => document.getElementById('restore-result').className === 'error');
      assert.match(await c.textContent('#restore-result'), /^這不是 Photo PACS 的備份檔，或檔案已被修改。.*沒有變更任何設定。$/);
      assert.deepEqual(await settingsOf(c), fresh, 'an altered file changes nothing');
      // Not a backup at all.
      await c.setInputFiles('#restore-file', { name: 'notes.json', mimeType: 'application/json', buffer: Buffer.from('{"hello": "world"}') });
      await c.waitForFunction(() => document.getElementById('restore-result').className === 'error');
      assert.match(await c.textContent('#restore-result'), /^這不是 Photo PACS 的備份檔，或檔案已被修改。.*沒有變更任何設定。$/);
      // The right passphrase: the preview shows the PIN as set, never its value.
      await c.setInputFiles('#restore-file', { name: sealed.name, mimeType: 'application/octet-stream', buffer: sealed.bytes });
      await c.fill('#restore-passphrase', phrase);
      await c.press('#restore-passphrase', 'Enter');
      await c.waitForSelector('#restore-plan', { state: 'visible' });
      const pinChange = c.locator('#restore-changes li[data-field="uploadPin"]');
      assert.match(await pinChange.textContent(), /^上傳 PIN 碼 uploadPin/);
      assert.equal(await pinChange.locator('.change-values').textContent(), '原本 未設定 → , 改為 已設定');
      assert.ok(!(await c.textContent('body')).includes(pin), 'the PIN is never shown');
      assert.match(await c.textContent('#restore-apply'), /^套用 \d+ 項變更$/);
      await c.click('#restore-apply');
      await c.waitForFunction(() => document.getElementById('restore-result').className === 'ok', null, { timeout: 15000 });
      assert.match(await c.textContent('#restore-result'), /^已還原：變更了 \d+ 項設定。/);
      const withSecrets = await settingsOf(c);
      assert.deepEqual(withSecrets, original, 'every setting equal, the PIN set');
      const found = await storedValues(c, [pin, phrase, 'BACKUP_AET']);
      assert.deepEqual(found.hits, []);
    } finally {
      await b.close();
    }
  },

  // The exam time comes from the phone (tests/browser.rs runs the gateway 3 days behind
  // under libfaketime and gives the phone's instant in PHONE_TIME; the phone is in Taipei):
  // in automatic mode the upload carries clientTime, the phone's time to the second with its
  // offset; in manual mode examDateTime and clientTime. The test reads the DICOM objects.
  // Then the status view warns about the box's clock.
  async clienttime(base) {
    const phone = Date.parse(process.env.PHONE_TIME || '');
    assert.ok(!Number.isNaN(phone), 'PHONE_TIME is an instant');
    const b = await browser();
    try {
      const { page } = await openPage(b, base, {
        timezoneId: 'Asia/Taipei',
        setup: async (p) => {
          await p.clock.setFixedTime(phone);
          await recordUploads(p);
        },
      });
      const at = wallClockAt(phone, 480);
      const expected = `${at.date}T${at.time}+08:00`;
      await page.fill('#patientId', 'CLOCK-AUTO');
      await page.setInputFiles('#album', PHOTOS.slice(0, 1));
      await page.click('#send');
      await page.waitForFunction(() => document.getElementById('status').className === 'ok', null, { timeout: 30000 });
      // Manual: two hours before the phone's time, typed as the phone shows it.
      await page.fill('#patientId', 'CLOCK-MANUAL');
      await page.check('input[name="examMode"][value="manual"]');
      assert.equal(await page.inputValue('#examDateTime'), `${at.date}T${at.time.slice(0, 5)}`, 'prefilled with the phone\'s time');
      const manual = wallClockAt(phone - 2 * 3600e3, 480);
      await page.fill('#examDateTime', `${manual.date}T${manual.time.slice(0, 5)}`);
      await page.setInputFiles('#album', PHOTOS.slice(1, 2));
      await page.click('#send');
      await page.waitForFunction(() => document.getElementById('status').className === 'ok', null, { timeout: 30000 });
      const sent = await page.evaluate(() => window.sentForms);
      assert.equal(sent.length, 2);
      assert.equal(sent[0].clientTime, expected);
      assert.equal(sent[0].examDateTime, undefined, 'automatic: no exam time of its own');
      assert.equal(sent[1].clientTime, expected);
      assert.equal(sent[1].examDateTime, `${manual.date}T${manual.time.slice(0, 5)}:00+08:00`);

      await openAdmin(page, 'status');
      await page.waitForSelector('#status-clock', { state: 'visible' });
      assert.match(await page.textContent('#status-clock'), /behind this phone's/);
      const clock = await facts(page, 'status-clock-card');
      assert.match(clock['Last phone that sent'], /^(2 d 2\d h|3 d 0 h) behind · /);
      console.log(`clientTime ${expected}`);
    } finally {
      await b.close();
    }
  },

  // Phone-sized screenshots of the admin's status view (on a box 3 days behind, as
  // tests/browser.rs runs it: the clock warning shows) and of a restore's preview, in both
  // languages: status-en.png, status-zh-TW.png, backup-en.png, backup-zh-TW.png.
  async adminshots(base, out) {
    assert.ok(out, 'an output directory is needed');
    mkdirSync(out, { recursive: true });
    const b = await browser();
    const settle = (page) => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const setSettings = async (page, values) => {
      await openAdmin(page, 'settings');
      for (const [id, value] of Object.entries(values)) await page.fill(`#${id}`, value);
      await page.click('#save');
      await page.waitForFunction(() => document.getElementById('save-result').className === 'ok');
    };
    try {
      for (const [locale, tag] of [['en-US', 'en'], ['zh-TW', 'zh-TW']]) {
        const { page } = await openPage(b, base, { locale, timezoneId: 'Asia/Taipei' });
        // A photo sent, so that the box has a delivery, a last stored time and a phone's time.
        await page.fill('#patientId', 'A123456');
        await page.setInputFiles('#album', PHOTOS.slice(0, 1));
        await page.click('#send');
        await page.waitForFunction(() => document.getElementById('status').className === 'ok', null, { timeout: 30000 });
        const clinic = { pacsCalledAET: 'HOSP_PACS', pacsHost: '10.20.30.40', pacsPort: '11112', timeZone: 'Asia/Taipei', ntpServers: 'time.stdtime.gov.tw' };
        await setSettings(page, clinic);
        await page.click('#sub-status');
        await page.waitForSelector('#status-clock', { state: 'visible' });
        await page.evaluate(() => window.scrollTo({ top: 0, behavior: 'instant' }));
        await settle(page);
        await page.screenshot({ path: join(out, `status-${tag}.png`), fullPage: false });

        // The clinic's settings backed up, the box reset, then the backup's preview.
        await page.click('#sub-backup');
        await page.waitForSelector('#admin-backup[data-ready="1"]');
        const file = await downloaded(page, () => page.click('#backup-download'));
        await setSettings(page, { pacsCalledAET: 'PACS', pacsHost: '127.0.0.1', pacsPort: '104', timeZone: '', ntpServers: '' });
        await page.click('#sub-backup');
        await page.setInputFiles('#restore-file', { name: file.name, mimeType: 'application/json', buffer: file.bytes });
        await page.waitForSelector('#restore-plan', { state: 'visible' });
        // The file's name, then the preview down to Apply.
        await page.evaluate(() => {
          const from = document.getElementById('restore-file-name');
          const top = from.getBoundingClientRect().top + window.scrollY - document.querySelector('.bar').offsetHeight - 8;
          window.scrollTo({ top, behavior: 'instant' });
        });
        await settle(page);
        await page.screenshot({ path: join(out, `backup-${tag}.png`), fullPage: false });
        await page.click('#restore-cancel');
      }
    } finally {
      await b.close();
    }
  },

  // The update view on a machine without the SD-card image (the mock box): it says updates
  // are not available here, shows no upload, and the page has no script error.
  async update(base) {
    const b = await browser();
    try {
      for (const [locale, words] of [['en-US', 'not available on this machine'], ['zh-TW', '無法更新']]) {
        const { page } = await openPage(b, base, { locale });
        await openAdmin(page, 'update');
        const text = await page.textContent('#update-unavailable');
        assert.ok(await page.isVisible('#update-unavailable'), 'the reason is shown');
        assert.ok(text.includes(words), text);
        assert.ok(!(await page.isVisible('#update-main')), 'no upload on a box that cannot update');
        // Away and back: the view is filled again, not duplicated.
        await page.click('#sub-status');
        await page.click('#sub-update');
        await page.waitForSelector('#update-unavailable', { state: 'visible' });
        await page.context().close();
      }
    } finally {
      await b.close();
    }
  },

  // The update view on a box with RAUC (tests/browser.rs makes it): a reboot awaited from
  // an earlier install is planned for a time, cancelled, then asked for now; a signed
  // bundle is uploaded, its version and signer shown, installed, and RAUC's outcome shown
  // (EXPECT=installed, or failed where the kernel has no device-mapper).
  async updatelab(base) {
    const bundle = process.env.BUNDLE;
    const version = process.env.VERSION;
    const expect = process.env.EXPECT;
    assert.ok(bundle && version && expect, 'BUNDLE, VERSION and EXPECT are needed');
    const b = await browser();
    try {
      const { page } = await openPage(b, base, { locale: 'en-US' });
      await openAdmin(page, 'update');
      assert.ok(await page.isVisible('#update-main'));
      assert.ok((await page.textContent('#update-running')).includes('(slot A)'));
      assert.equal(await page.locator('#update-slots li').count(), 2);
      // The reboot an earlier install waits for: at a time, cancelled, then now.
      await page.waitForSelector('#update-reboot-box', { state: 'visible' });
      await page.fill('#update-reboot-time', '23:59');
      await page.click('#update-reboot-later');
      await page.waitForFunction(() => document.getElementById('update-reboot-plan').textContent.includes('reboots'));
      assert.ok(await page.isVisible('#update-reboot-cancel'));
      await page.click('#update-reboot-cancel');
      await page.waitForFunction(() => document.getElementById('update-result').textContent === 'Reboot cancelled.');
      await page.waitForSelector('#update-reboot-cancel', { state: 'hidden' });
      // The bundle: checked by the box, then its facts before Install.
      await page.setInputFiles('#update-file', bundle);
      await page.waitForSelector('#update-pending', { state: 'visible', timeout: 30000 });
      const shown = await page.$$eval('#update-pending-facts dt', (dts) => Object.fromEntries(dts.map((dt) => [dt.textContent, dt.nextElementSibling.textContent])));
      assert.equal(shown.Version, version);
      assert.ok(shown['Signed by'].includes('CN = Photo PACS Test Release Signing'), JSON.stringify(shown));
      assert.equal(shown.For, 'photo-pacs-rpi-arm64');
      await page.click('#update-install');
      if (expect === 'installed') {
        await page.waitForFunction(() => document.getElementById('update-reboot-plan').textContent.includes('other slot'), null, { timeout: 120000 });
      } else {
        await page.waitForSelector('#update-error', { state: 'visible', timeout: 120000 });
        assert.ok((await page.textContent('#update-error')).includes('The install failed'));
        await page.waitForSelector('#update-last', { state: 'visible' });
        assert.ok((await page.textContent('#update-last')).includes(`installing ${version} failed`));
        // Still pending: it can be tried again.
        assert.ok(await page.isVisible('#update-pending'));
      }
      await page.click('#update-reboot-now');
      await page.waitForFunction(() => document.getElementById('update-result').textContent === 'Reboot planned.');
      if (process.env.SHOT) await page.screenshot({ path: process.env.SHOT, fullPage: true });
      // The status view's card: both slots, the booted one, the last result.
      await page.click('#sub-status');
      await page.waitForSelector('#status-update-card');
      const system = await facts(page, 'status-update-card');
      assert.ok(system['Slot A:'].includes('running'), JSON.stringify(system));
      assert.ok('Slot B:' in system, JSON.stringify(system));
      // (A success is judged only after the reboot; a failure at once.)
      if (expect === 'failed') assert.ok(system['Last update'].includes(version), JSON.stringify(system));
    } finally {
      await b.close();
    }
  },

  // Phone-sized screenshots of home, the photos with their body sites, settings and a
  // success, in both languages.
  async screenshots(base, out) {
    assert.ok(out, 'an output directory is needed');
    mkdirSync(out, { recursive: true });
    const b = await browser();
    try {
      for (const [locale, tag] of [['en-US', 'en'], ['zh-TW', 'zh-TW']]) {
        const { page } = await openPage(b, base, { locale });
        // With the worklist on (the demo's three patients), the list and a picked entry.
        if (await page.locator('#worklist').isVisible()) {
          await page.waitForSelector('#worklist-list button.wl-entry');
          await page.screenshot({ path: join(out, `today-${tag}.png`), fullPage: false });
          await page.locator('#worklist-list button.wl-entry').nth(1).click();
          await page.setInputFiles('#album', PHOTOS.slice(0, 1));
          // The locked patient and the send bar's two identifiers, scrolled without animation.
          await page.evaluate(() => document.getElementById('patientId').closest('fieldset')
            .scrollIntoView({ block: 'start', behavior: 'instant' }));
          await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
          await page.screenshot({ path: join(out, `picked-${tag}.png`), fullPage: false });
          await page.goto(base);
          await page.waitForSelector('#worklist-list button.wl-entry');
        }
        await page.fill('#patientId', 'A123456');
        await page.fill('#patientName', tag === 'en' ? 'Wang^Daming' : '王大明');
        await page.fill('#examDescription', tag === 'en' ? 'Wound, left forearm' : '左前臂傷口');
        await page.setInputFiles('#album', PHOTOS.slice(0, 1));
        await page.screenshot({ path: join(out, `home-${tag}.png`), fullPage: false });
        // The first photo's site, side and note; the second takes the site and side.
        const first = page.locator('#thumbs li').first();
        await first.locator('select').selectOption('forearm');
        await first.locator('.site-side button[data-side="L"]').click();
        await first.locator('input.site-note').fill(tag === 'en' ? 'before suturing' : '縫合前');
        await page.setInputFiles('#album', PHOTOS.slice(1, 2));
        const scrolled = await page.evaluate(() => {
          const before = window.scrollY;
          const images = document.getElementById('thumbs').closest('fieldset');
          const top = images.getBoundingClientRect().top + window.scrollY - document.querySelector('.bar').offsetHeight - 8;
          window.scrollTo({ top, behavior: 'instant' });
          return before;
        });
        await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
        await page.screenshot({ path: join(out, `sites-${tag}.png`), fullPage: false });
        await page.evaluate((y) => window.scrollTo({ top: y, behavior: 'instant' }), scrolled);
        await page.click('#send');
        await page.waitForFunction(() => document.getElementById('status').className === 'ok', null, { timeout: 30000 });
        await page.screenshot({ path: join(out, `sent-${tag}.png`), fullPage: false });
        await page.click('#tab-settings');
        await page.waitForFunction(() => document.getElementById('pacsCalledAET').value !== '');
        // From the top: the admin's three views, then the settings.
        await page.evaluate(() => window.scrollTo({ top: 0, behavior: 'instant' }));
        await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
        await page.screenshot({ path: join(out, `settings-${tag}.png`), fullPage: false });
      }
    } finally {
      await b.close();
    }
  },
};

const [name, base, out] = process.argv.slice(2);
if (!scenarios[name] || !base) {
  console.error(`usage: scenarios.mjs {${Object.keys(scenarios).join('|')}} BASE_URL [OUT_DIR]`);
  process.exit(2);
}
// One chain with a final .catch: a failure anywhere, the page-error check included, ends
// the run with exit code 1, whatever Node's unhandled-rejection mode is (NODE_OPTIONS may set
// --unhandled-rejections=warn, under which a rejection left unhandled exits 0).
scenarios[name](base.endsWith('/') ? base : `${base}/`, out)
  .then(() => {
    assert.deepEqual(pageErrors, [], 'script errors in the page');
    console.log(`${name}: ok`);
  })
  .catch((e) => {
    console.error(`${name}: FAILED\n${e.stack || e}`);
    process.exit(1);
  });
