// Photo PACS capture page and settings. Patient data (form values and photos) lives only
// in this page's memory: nothing of it goes to localStorage, sessionStorage, IndexedDB or
// the cache. Only the language and the theme, which are not patient data, are remembered.
// The list of this page's sends (time, number of images, state) lives in memory too.
// The home view's patient part (patient.js: ID field, scanning, lookup, worklist link) and
// today's list (worklist.js) are ES modules this script imports, and so is each photo's body
// site picker (sites.js); so is the barcode decoder (scan.js), but only when "Scan wristband"
// is pressed. The admin's status and backup views (status.js, backup.js) load when opened.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const PREFS = { lang: 'photo-pacs.lang', theme: 'photo-pacs.theme' };

  // ---- language -------------------------------------------------------------------------
  let lang = 'en';

  function pickLanguage() {
    const saved = readPref(PREFS.lang);
    if (saved && window.I18N[saved]) return saved;
    const wanted = navigator.languages || [navigator.language || 'en'];
    return wanted.some((l) => String(l).toLowerCase().startsWith('zh')) ? 'zh-TW' : 'en';
  }

  function t(key, vars) {
    const dict = window.I18N[lang] || window.I18N.en;
    let text = dict[key] !== undefined ? dict[key] : window.I18N.en[key] || key;
    for (const [k, v] of Object.entries(vars || {})) text = text.replace(`{${k}}`, v);
    return text;
  }

  function applyLanguage() {
    document.documentElement.lang = lang;
    for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll('[data-i18n-aria-label]')) {
      el.setAttribute('aria-label', t(el.dataset.i18nAriaLabel));
    }
    renderThumbs();
    renderSecrets();
    renderWho();
    if (!$('card-time').hidden) fillTimeZones();
    for (const hook of languageHooks) hook();
  }

  const languageHooks = [];

  function readPref(key) {
    try { return localStorage.getItem(key); } catch (_) { return null; }
  }

  function writePref(key, value) {
    try { localStorage.setItem(key, value); } catch (_) { /* private mode: not remembered */ }
  }

  // ---- theme ----------------------------------------------------------------------------
  function applyTheme(dark) {
    document.documentElement.dataset.theme = dark ? 'dark' : 'light';
    $('theme-dark').checked = dark;
  }

  // ---- session: admin login and upload PIN ----------------------------------------------
  let session = { adminPasswordSet: false, authenticated: true, uploadPinRequired: false };

  async function loadSession() {
    try {
      const r = await fetch('api/session', { cache: 'no-store' });
      if (r.ok) session = await r.json();
    } catch (_) { /* unreachable: the offline screen says so */ }
    $('pin-box').hidden = !session.uploadPinRequired;
    $('password-current-box').hidden = !session.adminPasswordSet;
    $('logout').hidden = !(session.adminPasswordSet && session.authenticated);
    // Shown before sign-in too: why the settings look reset, or why nobody can sign in.
    const notice = $('settings-notice');
    notice.hidden = !session.notice;
    notice.textContent = session.notice ? t(session.settingsLocked ? 'noticeLocked' : 'noticeSetAside') : '';
  }

  function showLogin(show) {
    $('login').hidden = !show;
    $('admin').hidden = show;
    if (show) $('login-password').focus();
  }

  function tooMany(r) {
    return t('tooMany', { s: r.headers.get('Retry-After') || '60' });
  }

  async function login(event) {
    event.preventDefault();
    const error = $('login-error');
    error.hidden = true;
    const r = await fetch('api/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ password: $('login-password').value }),
    }).catch(() => null);
    $('login-password').value = '';
    if (r && r.ok) {
      await loadSession();
      showLogin(false);
      adminShown();
      return;
    }
    error.textContent = !r ? t('errNetwork') : r.status === 429 ? tooMany(r) : t('loginWrong');
    error.hidden = false;
  }

  async function changePassword() {
    const form = $('settings');
    clearErrors(form);
    const out = $('password-result');
    out.textContent = '';
    const r = await fetch('api/admin/password', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ current: $('password-current').value, new: $('password-new').value }),
    }).catch(() => null);
    $('password-current').value = '';
    $('password-new').value = '';
    if (r && r.ok) {
      out.textContent = t('passwordChanged');
      out.className = 'ok';
      await loadSession();
      loadSettings();
      return;
    }
    if (!r) {
      out.textContent = t('errNetwork');
    } else if (r.status === 429) {
      out.textContent = tooMany(r);
    } else {
      const doc = await r.json().catch(() => ({}));
      if (doc.field) showFieldError(form, doc.field, r.status === 401 ? t('loginWrong') : doc.message);
      out.textContent = doc.message || t('errUnknown');
    }
    out.className = 'error';
  }

  async function logout() {
    await fetch('api/logout', { method: 'POST' }).catch(() => null);
    await loadSession();
    showLogin(session.adminPasswordSet);
  }

  // ---- tabs -----------------------------------------------------------------------------
  async function showTab(name) {
    for (const tab of ['home', 'settings']) {
      const selected = tab === name;
      $(`tab-${tab}`).setAttribute('aria-selected', String(selected));
      $(`view-${tab}`).hidden = !selected;
    }
    if (name === 'home' && worklist) worklist.refresh();
    if (name === 'settings') {
      await loadSession();
      const needLogin = session.adminPasswordSet && !session.authenticated;
      showLogin(needLogin);
      if (!needLogin) adminShown();
    }
  }

  // ---- the admin's views: settings, status, backup ----------------------------------------
  // Three views behind the one login, as tabs inside the settings tab: the header has no
  // room for a third tab on a 360 px phone, and staff taking photos never need these.
  const SUBVIEWS = { settings: 'settings', status: 'admin-status', backup: 'admin-backup', update: 'admin-update' };
  let subview = 'settings';
  const adminModules = {}; // 'status' | 'backup' | 'update' -> the module's handle, once loaded

  /// Whether the admin view `name` is on screen now (its tab open, logged in, page visible).
  function adminVisible(name) {
    return subview === name && !$('view-settings').hidden && !$('admin').hidden && !document.hidden;
  }

  function showSub(name) {
    subview = name;
    for (const [sub, panel] of Object.entries(SUBVIEWS)) {
      const selected = sub === name;
      $(`sub-${sub}`).setAttribute('aria-selected', String(selected));
      $(panel).hidden = !selected;
    }
    adminShown();
  }

  /// The admin area came on screen (the tab opened, a login, another view picked): fill the
  /// view shown. The status view's refresh stops by itself once it is off screen.
  async function adminShown() {
    if (subview === 'settings') {
      loadSettings();
      return;
    }
    const mod = await adminModule(subview);
    if (mod && adminVisible(subview)) mod.show();
  }

  async function adminModule(name) {
    if (adminModules[name]) return adminModules[name];
    try {
      if (name === 'status') adminModules.status = (await import('./status.js')).initStatus(adminCtx);
      if (name === 'backup') adminModules.backup = (await import('./backup.js')).initBackup(adminCtx);
      if (name === 'update') adminModules.update = (await import('./update.js')).initUpdate(adminCtx);
    } catch (_) {
      checkGateway(); // offline, and the module was never fetched
      return null;
    }
    return adminModules[name];
  }

  /// The file name a download answer gives in its Content-Disposition, or `fallback`.
  function attachmentName(r, fallback) {
    const cd = r.headers.get('Content-Disposition') || '';
    const m = /filename\*=UTF-8''([^;]+)/i.exec(cd) || /filename="?([^";]+)"?/i.exec(cd);
    if (!m) return fallback;
    try { return decodeURIComponent(m[1].trim()); } catch (_) { return m[1].trim(); }
  }

  /// Hands an answer's body to the browser as a download: a blob in page memory, never in a
  /// cache or storage, released once the browser has it.
  async function saveAnswer(r, fallback) {
    const name = attachmentName(r, fallback);
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    return name;
  }

  // What status.js and backup.js may use of this page.
  const adminCtx = {
    $,
    t: (key, vars) => t(key, vars),
    lang: () => lang,
    session: () => session,
    visible: (name) => adminVisible(name),
    onLanguage: (hook) => languageHooks.push(hook),
    // A 401 on an admin call: the session is over, the login form comes back.
    needLogin: () => showLogin(true),
    tooMany: (r) => tooMany(r),
    clearErrors: (el) => clearErrors(el),
    showFieldError: (el, field, message) => showFieldError(el, field, message),
    saveAnswer,
    // The settings form again, after a restore changed them.
    reloadSettings: () => loadSettings(),
    // A setting's value as its field shows it: a checkbox's yes / no, a list's choice.
    fieldValue(key, value) {
      const input = $('settings').elements[key];
      if (input instanceof HTMLInputElement && input.type === 'checkbox') {
        if (value === true || value === 'true') return t('yes');
        if (value === false || value === 'false') return t('no');
      }
      if (input instanceof HTMLSelectElement) {
        const option = [...input.options].find((o) => o.value === String(value));
        if (option) return option.textContent;
      }
      return String(value);
    },
    // What the settings form calls a field ("pacsHost" -> "PACS host (IP or name)").
    fieldLabel(key) {
      const input = $('settings').elements[key];
      const el = input && !(input instanceof RadioNodeList) ? input : null;
      const label = el && el.labels && el.labels[0];
      // Without the hint in brackets: "Time zone (empty: the system's own)" -> "Time zone".
      return label ? label.textContent.trim().replace(/\s*[（(][^（(]*[)）]$/, '') : '';
    },
  };

  // ---- reachability ---------------------------------------------------------------------
  async function checkGateway() {
    try {
      const r = await fetch('healthz', { cache: 'no-store' });
      $('offline').hidden = r.ok;
    } catch (_) {
      $('offline').hidden = false;
    }
  }

  // ---- field errors ---------------------------------------------------------------------
  function clearErrors(form) {
    for (const el of form.querySelectorAll('.field-error')) {
      el.hidden = true;
      el.textContent = '';
    }
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  }

  function showFieldError(form, field, message) {
    const slot = form.querySelector(`.field-error[data-error-for="${CSS.escape(field)}"]`);
    if (!slot) return false;
    slot.textContent = message;
    slot.hidden = false;
    const input = form.querySelector(`[name="${CSS.escape(field)}"]`);
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      slot.id = slot.id || `err-${field.replace(/\W/g, '')}`;
      input.setAttribute('aria-describedby', slot.id);
    }
    return true;
  }

  // ---- images ---------------------------------------------------------------------------
  // Each photo with its body site (region key, side, note), in memory only.
  const images = []; // { file, url, site: { key, side, note } }
  let sites = null; // sites.js, once loaded

  function addFiles(list) {
    for (const file of list) {
      // "Same as previous": the region and side of the photo before it.
      const site = sites ? sites.carried() : { key: '', side: '', note: '' };
      const img = { file, url: URL.createObjectURL(file), site };
      images.push(img);
      prepare(img);
    }
    submission = null;
    renderThumbs();
  }

  function renderThumbs() {
    const ul = $('thumbs');
    ul.replaceChildren();
    const withSites = Boolean(sites && sites.enabled());
    ul.classList.toggle('with-sites', withSites);
    images.forEach((img, i) => {
      const li = document.createElement('li');
      const frame = document.createElement('div');
      frame.className = 'thumb';
      const pic = document.createElement('img');
      pic.src = img.url;
      pic.alt = t('imageAlt', { n: i + 1 });
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'remove';
      remove.textContent = '×';
      remove.setAttribute('aria-label', t('removeImage', { n: i + 1 }));
      remove.addEventListener('click', () => {
        URL.revokeObjectURL(img.url);
        images.splice(i, 1);
        submission = null;
        if (sites) sites.follow(images);
        renderThumbs();
      });
      // What will be sent as this photo's site, on the photo itself.
      const tag = document.createElement('span');
      tag.className = 'site-tag';
      const showTag = (text) => {
        tag.textContent = text;
        tag.hidden = !text;
      };
      showTag(withSites ? sites.label(img.site) : '');
      frame.append(pic, remove, tag);
      li.append(frame);
      if (withSites) {
        li.append(sites.editor(img, i, (text) => {
          showTag(text);
          sites.follow(images);
          ctx.changed();
        }));
      }
      ul.append(li);
    });
    $('no-images').hidden = images.length > 0;
    $('site-hint').hidden = !withSites || images.length === 0;
    refreshSend();
  }

  // ---- sending --------------------------------------------------------------------------
  let sending = false;
  // The submission being sent: its Idempotency-Key is reused when the same form is sent
  // again (a lost answer, a retry), so the box makes one study of it, never two.
  let submission = null;
  // Pauses before resending after a dropped connection.
  const RESEND_AFTER_MS = [1000, 3000, 6000];

  // A random UUID (v4). crypto.randomUUID needs HTTPS; the box is often reached over HTTP.
  function newKey() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function refreshSend() {
    const hasId = $('patientId').value.trim() !== '';
    $('send').disabled = sending || !hasId || images.length === 0;
    renderWho();
  }

  function setStatus(text, kind) {
    const s = $('status');
    s.textContent = text;
    s.className = kind || '';
  }

  const pad2 = (n) => String(Math.floor(Math.abs(n))).padStart(2, '0');

  /// This phone's UTC offset at `d` ("+08:00").
  function offsetAt(d) {
    const off = -d.getTimezoneOffset();
    return `${off >= 0 ? '+' : '-'}${pad2(off / 60)}:${pad2(off % 60)}`;
  }

  // ISO 8601 with this phone's offset, so the box knows which wall clock was meant.
  function withOffset(localValue) {
    if (!localValue) return '';
    const d = new Date(localValue);
    if (Number.isNaN(d.getTime())) return localValue;
    const seconds = localValue.length === 16 ? ':00' : '';
    return `${localValue}${seconds}${offsetAt(d)}`;
  }

  /// This phone's clock now, to the second, with its offset ("2026-11-30T14:05:09+08:00").
  /// Phones keep network time; the box may have no battery clock and no NTP, so the page
  /// tells it when the photos were sent (the exam time in automatic mode).
  function phoneTime(d = new Date()) {
    const local = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`
      + `T${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
    return `${local}${offsetAt(d)}`;
  }

  function errorText(body) {
    const base = {
      VALIDATION_ERROR: t('errValidation'),
      INSUFFICIENT_STORAGE: t('errFull'),
      PAYLOAD_TOO_LARGE: t('errTooLarge'),
      PACS_TIMEOUT: t('errTimeout'),
      PACS_REJECTED: t('errRejected'),
    }[body.code] || t('errUnknown');
    return body.message ? `${base}: ${body.message}` : base;
  }

  function showResults(body) {
    const ul = $('results');
    ul.replaceChildren();
    for (const inst of body.instances || []) {
      const li = document.createElement('li');
      li.className = inst.status;
      const status = t(`status${inst.status.charAt(0).toUpperCase()}${inst.status.slice(1)}`);
      li.textContent = t('imageStatus', { n: inst.index, status }) + (inst.reason ? ` (${inst.reason})` : '');
      ul.append(li);
    }
  }

  function clearForm() {
    for (const img of images) URL.revokeObjectURL(img.url);
    images.length = 0;
    submission = null;
    $('study').reset();
    $('examDateTime').disabled = true;
    if (sites) sites.reset();
    if (patient) patient.reset();
    if (worklist) worklist.render();
    renderThumbs();
  }

  // ---- the two identifiers ---------------------------------------------------------------
  // The send bar shows whom the photos are for, large enough to read at arm's length: the
  // Patient ID and the name (or the birth date when there is no name). The result repeats them.
  let formatName = (pn) => String(pn || '').replace(/\^/g, ' ').trim(); // patient.js's, once loaded

  function identifiers() {
    const f = $('study').elements;
    const id = f.patientId.value.trim();
    const name = formatName(f.patientName.value.trim());
    const born = f.birthDate.value;
    return { id, second: name || (born ? t('whoBorn', { date: born }) : '') };
  }

  function fillWho(el, who) {
    el.replaceChildren();
    el.hidden = !who || !who.id;
    if (el.hidden) return;
    const label = document.createElement('span');
    label.className = 'who-label';
    label.textContent = t('whoId');
    const id = document.createElement('span');
    id.className = 'who-id';
    id.textContent = who.id;
    el.append(label, id);
    if (who.second) {
      const second = document.createElement('span');
      second.className = 'who-second';
      second.textContent = who.second;
      el.append(second);
    }
  }

  function renderWho() {
    fillWho($('send-who'), identifiers());
  }

  function showResultWho(who) {
    fillWho($('result-who'), who);
  }

  // ---- the home view's modules -------------------------------------------------------------
  let patient = null;
  let worklist = null;

  // What patient.js and worklist.js may use of this page.
  const ctx = {
    $,
    t: (key, vars) => t(key, vars),
    lang: () => lang,
    info: () => info,
    // A form value changed from code: another submission, another send bar.
    changed() {
      if (!sending) submission = null;
      $('result-who').hidden = true;
      refreshSend();
    },
    onLanguage: (hook) => languageHooks.push(hook),
    onUnlink: () => { if (worklist) worklist.render(); },
    // An API call with the upload PIN (kept in this page only), never cached.
    async api(url, { method = 'GET', json, signal } = {}) {
      const headers = {};
      const pin = $('upload-pin').value;
      if (pin) headers['X-Upload-Pin'] = pin;
      if (json !== undefined) headers['Content-Type'] = 'application/json';
      const r = await fetch(url, {
        method,
        headers,
        body: json === undefined ? undefined : JSON.stringify(json),
        cache: 'no-store',
        signal,
      });
      let body = {};
      try { body = await r.json(); } catch (_) { /* not JSON */ }
      return { status: r.status, ok: r.ok, body, headers: r.headers };
    },
    // A 401/429 on a PIN-guarded call: the PIN box says what to do.
    pinProblem(r) {
      session.uploadPinRequired = true;
      $('pin-box').hidden = false;
      const error = $('pin-error');
      error.textContent = r.status === 429 ? t('tooMany', { s: r.headers.get('Retry-After') || '60' })
        : $('upload-pin').value ? t('pinWrong') : t('pinRequired');
      error.hidden = false;
    },
    // "2025-03-04T09:30" as this phone says it: the time alone when it is today.
    formatWhen(value) {
      const d = new Date(value);
      if (Number.isNaN(d.getTime())) return value;
      const today = new Date().toDateString() === d.toDateString();
      const opts = today ? { hour: '2-digit', minute: '2-digit' }
        : { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' };
      return d.toLocaleString(lang, opts);
    },
  };

  async function loadModules(infoLoaded) {
    let p;
    let w;
    let s;
    let sh;
    try {
      // A browser that cannot load the shrinker sends originals.
      [p, w, s, sh] = await Promise.all([import('./patient.js'), import('./worklist.js'), import('./sites.js'),
        import('./shrink.js').catch(() => null)]);
    } catch (_) {
      return; // offline with no copy of them: the plain form still works
    }
    await infoLoaded;
    formatName = p.formatName;
    // The regions come with the box's info: photos added before now get their pickers.
    sites = s.initSites(ctx);
    renderThumbs();
    // ?shrink=bitmap: decode as browsers without WebCodecs' ImageDecoder do (tests).
    const bitmapOnly = new URLSearchParams(window.location.search).get('shrink') === 'bitmap';
    if (sh) shrinker = sh.createShrinker({ useDecoder: !bitmapOnly });
    if (phoneTarget()) shrinker.warm();
    // Photos picked before now are shrunk from here on.
    for (const img of images) prepare(img);
    patient = p.initPatient(ctx);
    worklist = w.initWorklist(ctx, {
      onPick: (entry) => patient.pick(entry),
      linked: () => patient.linked(),
    });
    renderWho();
    if (!$('view-home').hidden) worklist.refresh();
    document.documentElement.dataset.ready = 'true';
    performance.mark('photo-pacs-ready'); // bench/first_load.mjs measures up to here
  }

  // ---- shrinking on the phone ------------------------------------------------------------
  // When the box will shrink photos anyway (info.phoneLongEdge), each one is shrunk here as
  // soon as it is picked, so most of the work is done by the time send is tapped. The
  // shrunk copy lives only in the photo's entry, and goes when the photo does.
  let shrinker = null; // shrink.js's, once loaded

  /// The box's limit and the most a phone draws, or null to send originals.
  function phoneTarget() {
    const cap = shrinker ? Number(info.phoneLongEdge) || 0 : 0;
    const limit = Number(info.resizeMax) || 0;
    return cap && limit ? { limit, cap, key: `${limit}/${cap}` } : null;
  }

  /// The photo's shrunk copy in the making (a promise of a Blob, or of null for the
  /// original), started again only when the box's sizes changed since.
  function prepare(img) {
    const target = phoneTarget();
    if (!target) return null;
    if (!img.prep || img.prep.key !== target.key) {
      img.prep = { key: target.key, done: shrinker.prepare(img.file, target) };
    }
    return img.prep.done;
  }

  /// What goes on the wire for each photo: its shrunk copy, or the file itself.
  async function filesToSend(picked) {
    const out = [];
    const shrinking = Boolean(phoneTarget());
    for (const [i, img] of picked.entries()) {
      if (shrinking) setStatus(t('preparing', { i: i + 1, n: picked.length }));
      const blob = shrinking ? await prepare(img) : null;
      out.push(blob ? { blob, name: `${img.file.name.replace(/\.[^.]*$/, '') || 'photo'}.jpg` } : { blob: img.file, name: img.file.name });
    }
    return out;
  }

  async function submitStudy(event) {
    event.preventDefault();
    if (sending || $('send').disabled) return; // a double tap sends once
    const form = $('study');
    clearErrors(form);
    const pin = $('upload-pin').value;
    $('pin-error').hidden = true;
    if (session.uploadPinRequired && !pin) {
      $('pin-error').textContent = t('pinRequired');
      $('pin-error').hidden = false;
      $('upload-pin').focus();
      return;
    }
    $('results').replaceChildren();
    sending = true;
    refreshSend();
    $('send').textContent = t('sending');
    const picked = images.slice();
    const progress = $('progress');
    progress.hidden = false;
    progress.removeAttribute('value'); // indeterminate while the photos are prepared
    const files = await filesToSend(picked);

    const data = new FormData();
    for (const name of ['patientId', 'patientName', 'birthDate', 'sex', 'examDescription']) {
      const value = form.elements[name].value.trim();
      if (value) data.append(name, value);
    }
    // Picked from today's list: the box takes the patient and the order from the entry.
    const entry = patient && patient.entry();
    if (entry) data.append('worklistEntry', entry);
    if (form.elements.examMode.value === 'manual') {
      const when = withOffset(form.elements.examDateTime.value);
      if (when) data.append('examDateTime', when);
    }
    // The phone's time when send was first pressed for this submission: the same in every
    // resend (automatic, or a second press after a lost answer), as its Idempotency-Key is.
    if (!submission) submission = { key: newKey(), clientTime: phoneTime() };
    data.append('clientTime', submission.clientTime);
    for (const f of files) data.append('images[]', f.blob, f.name);
    // Each photo's body site, side and note, in image order ('' where none).
    if (sites && sites.enabled()) sites.append(data, picked);

    upload(data, submission.key, pin, 0, identifiers());
  }

  // One try of the upload; a connection dropped before the answer is tried again with the
  // same key, so a study the box already saved is answered instead of made twice.
  function upload(data, key, pin, attempt, who) {
    const form = $('study');
    const xhr = new XMLHttpRequest();
    xhr.open('POST', 'api/studies');
    xhr.setRequestHeader('Idempotency-Key', key);
    // The PIN stays in this page's memory (the input above the form), never in storage.
    if (pin) xhr.setRequestHeader('X-Upload-Pin', pin);
    const progress = $('progress');
    progress.hidden = false;
    progress.value = 0;
    if (attempt === 0) setStatus(t('uploading', { p: 0 }));
    xhr.upload.addEventListener('progress', (e) => {
      if (!e.lengthComputable) return;
      const p = Math.round((e.loaded / e.total) * 100);
      progress.value = p;
      setStatus(t('uploading', { p }));
    });
    xhr.upload.addEventListener('load', () => {
      progress.removeAttribute('value'); // indeterminate while the box converts and sends
      setStatus(t('converting'));
    });
    xhr.addEventListener('loadend', () => {
      if (xhr.status === 0 && attempt < RESEND_AFTER_MS.length && submission && submission.key === key) {
        setStatus(t('retrying', { n: attempt + 1 }), 'error');
        setTimeout(() => upload(data, key, pin, attempt + 1, who), RESEND_AFTER_MS[attempt]);
        return;
      }
      sending = false;
      progress.hidden = true;
      $('send').textContent = t('send');
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (body.id && body.instances) addSend(body, xhr.status);
      if (xhr.status === 200 && body.status === 'success') {
        setStatus(t('sentAll', { n: (body.instances || []).length }), 'ok');
        clearForm();
        showResultWho(who);
        $('patientId').focus();
      } else if (xhr.status === 202) {
        // Safe on the box: the form is done with, the list below follows the study.
        setStatus(t('queuedSaved', { n: (body.instances || []).length }), 'queued');
        clearForm();
        showResultWho(who);
        $('patientId').focus();
      } else if (xhr.status === 200) {
        const failed = body.instances.filter((i) => i.status === 'failed').length;
        setStatus(t('sentPartial', { ok: body.instances.length - failed, failed }), 'error');
        showResults(body);
      } else if (xhr.status === 0) {
        setStatus(t('errNetwork'), 'error');
        checkGateway();
      } else if (body.code === 'PIN_REQUIRED' || body.code === 'TOO_MANY_ATTEMPTS') {
        const text = body.code === 'PIN_REQUIRED' ? t('pinWrong') : t('tooMany', { s: xhr.getResponseHeader('Retry-After') || '60' });
        setStatus(text, 'error');
        $('pin-error').textContent = text;
        $('pin-error').hidden = false;
        session.uploadPinRequired = true;
        $('pin-box').hidden = false;
        $('upload-pin').value = '';
        $('upload-pin').focus();
      } else {
        setStatus(errorText(body), 'error');
        if (body.field) showFieldError(form, body.field, body.message || t('errValidation'));
        if (body.instances) showResults(body);
      }
      refreshSend();
    });
    xhr.send(data);
  }

  // ---- this page's sends ------------------------------------------------------------------
  // Time, number of images and state of each study sent from this page; no patient data.
  const sends = [];
  let pollTimer = null;

  function addSend(body, httpStatus) {
    const state = httpStatus === 202 ? 'queued'
      : body.status === 'success' ? 'stored'
        : body.status === 'partial' ? 'partial' : 'failed';
    const existing = sends.find((x) => x.id === body.id);
    if (existing) existing.state = state;
    else sends.unshift({ id: body.id, time: new Date(), n: (body.instances || []).length, state });
    renderSends();
    schedulePoll();
  }

  function renderSends() {
    const ul = $('sends');
    ul.replaceChildren();
    for (const send of sends) {
      const li = document.createElement('li');
      li.className = send.state;
      li.dataset.id = send.id;
      const time = send.time.toLocaleTimeString(lang, { hour: '2-digit', minute: '2-digit' });
      const stateKey = `state${send.state.charAt(0).toUpperCase()}${send.state.slice(1)}`;
      li.textContent = `${t('sendTime', { time, n: send.n })}: ${t(stateKey)}`;
      ul.append(li);
    }
    $('sends-box').hidden = sends.length === 0;
  }

  function schedulePoll() {
    if (pollTimer || !sends.some((x) => x.state === 'queued' || x.state === 'sending')) return;
    pollTimer = setTimeout(pollSends, 4000);
  }

  async function pollSends() {
    pollTimer = null;
    const pin = $('upload-pin').value;
    for (const send of sends.filter((x) => x.state === 'queued' || x.state === 'sending')) {
      try {
        const r = await fetch(`api/studies/${encodeURIComponent(send.id)}`, {
          cache: 'no-store',
          headers: pin ? { 'X-Upload-Pin': pin } : {},
        });
        if (r.status === 404) send.state = 'stored'; // delivered long ago and forgotten
        else if (r.ok) send.state = (await r.json()).state;
      } catch (_) { /* the box is unreachable for now: try again later */ }
    }
    renderSends();
    schedulePoll();
  }

  // ---- settings -------------------------------------------------------------------------
  let backend = 'mock';
  let secretsSet = {};
  // What the box tells every page: its backend, whether it has a worklist and a patient
  // lookup, how to find the Patient ID in a scanned code.
  let info = { pacsBackend: 'mock', worklist: false, patientLookup: false, patientIdPattern: '', barcodeFormats: [] };

  async function loadInfo() {
    try {
      info = { ...info, ...(await (await fetch('api/settings/info', { cache: 'no-store' })).json()) };
      backend = info.pacsBackend;
    } catch (_) { return; }
    $('demo').hidden = backend !== 'mock';
    $('mock-note').hidden = backend !== 'mock';
    // Only the card of the backend in use; the demo edits the C-STORE values it reports.
    $('card-cstore').hidden = backend === 'dicomweb';
    $('card-dicomweb').hidden = backend !== 'dicomweb';
  }

  function renderSecrets() {
    for (const input of document.querySelectorAll('[data-secret]')) {
      input.placeholder = secretsSet[input.dataset.secret] ? t('secretSet') : t('secretUnset');
    }
  }

  function showWarnings(list) {
    const box = $('warnings');
    box.replaceChildren();
    box.hidden = !list || list.length === 0;
    if (box.hidden) return;
    const title = document.createElement('strong');
    title.textContent = t('warnings');
    const ul = document.createElement('ul');
    for (const w of list) {
      const li = document.createElement('li');
      li.textContent = w;
      ul.append(li);
    }
    box.append(title, ul);
  }

  function fillSettings(doc) {
    const s = doc.settings || {};
    const form = $('settings');
    for (const [key, value] of Object.entries(s)) {
      const input = form.elements[key];
      if (!input || input.dataset.secret) continue;
      if (input.type === 'checkbox') input.checked = Boolean(value);
      else input.value = String(value);
    }
    secretsSet = {
      dicomwebPasswordSet: s.dicomwebPasswordSet,
      dicomwebTokenSet: s.dicomwebTokenSet,
      uploadPinSet: s.uploadPinSet,
    };
    for (const input of form.querySelectorAll('[data-secret]')) input.value = '';
    renderSecrets();
    $('tls-status').textContent = s.pacsTls ? t('tlsOn') : t('tlsOff');
    // A box without the worklist settings (an older one) does not show their card, nor
    // send its fields back.
    $('card-worklist').hidden = !('worklistEnabled' in s);
    $('card-time').hidden = !('timeZone' in s);
    if (!$('card-time').hidden) fillTimeZones();
    showWarnings(doc.warnings);
  }

  /// The time zone field's suggestions (the browser's IANA list) and "use this phone's".
  let zonesFilled = false;
  function phoneZone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ''; } catch (_) { return ''; }
  }

  function fillTimeZones() {
    const zone = phoneZone();
    $('time-zone-phone').hidden = !zone;
    $('time-zone-phone').textContent = t('timeZonePhone', { zone });
    if (zonesFilled) return;
    zonesFilled = true;
    let zones = [];
    try { zones = Intl.supportedValuesOf('timeZone'); } catch (_) { /* an older browser: type it */ }
    $('time-zones').replaceChildren(...zones.map((z) => {
      const option = document.createElement('option');
      option.value = z;
      return option;
    }));
  }

  async function loadSettings() {
    clearErrors($('settings'));
    $('save-result').textContent = '';
    try {
      const r = await fetch('api/settings', { cache: 'no-store' });
      if (r.status === 401) {
        showLogin(true);
        return;
      }
      if (r.ok) {
        fillSettings(await r.json());
        loadOutbox();
      }
    } catch (_) {
      checkGateway();
    }
  }

  // ---- outbox (admin) -------------------------------------------------------------------
  async function loadOutbox() {
    const list = $('outbox-list');
    let doc;
    try {
      const r = await fetch('api/outbox', { cache: 'no-store' });
      if (!r.ok) return;
      doc = await r.json();
    } catch (_) { return; }
    const shown = doc.studies.filter((x) => x.state !== 'stored');
    $('outbox-summary').textContent = shown.length === 0 ? t('outboxEmpty')
      : t('outboxSummary', { queued: doc.queued, failed: doc.needsAdmin });
    list.replaceChildren();
    for (const study of shown) {
      const li = document.createElement('li');
      li.className = study.state;
      li.dataset.id = study.id;
      const time = new Date(study.created).toLocaleString(lang);
      const stateKey = `state${study.state.charAt(0).toUpperCase()}${study.state.slice(1)}`;
      const line = document.createElement('p');
      line.textContent = t('outboxLine', { time, patient: study.patientId || '-', n: study.instanceCount, state: t(stateKey) });
      li.append(line);
      const detail = document.createElement('p');
      detail.className = 'detail';
      const parts = [t('outboxAttempts', { n: study.attempts })];
      if (study.lastError) parts.push(study.lastError.message);
      if (!study.toCurrentPacs) parts.push(t('outboxElsewhere'));
      detail.textContent = parts.join(' · ');
      li.append(detail);
      const actions = document.createElement('div');
      actions.className = 'actions';
      const retry = document.createElement('button');
      retry.type = 'button';
      retry.className = 'retry';
      retry.textContent = t('outboxRetry');
      retry.disabled = study.state === 'sending';
      retry.addEventListener('click', () => outboxAction('POST', `api/outbox/${encodeURIComponent(study.id)}/retry`));
      const del = document.createElement('button');
      del.type = 'button';
      del.className = 'delete';
      del.textContent = t('outboxDelete');
      del.disabled = study.state === 'sending';
      del.addEventListener('click', () => {
        if (window.confirm(t('outboxConfirmDelete'))) outboxAction('DELETE', `api/outbox/${encodeURIComponent(study.id)}`);
      });
      actions.append(retry, del);
      li.append(actions);
      list.append(li);
    }
  }

  async function outboxAction(method, url) {
    try {
      const r = await fetch(url, { method });
      if (r.status === 401) { showLogin(true); return; }
      if (!r.ok) {
        const doc = await r.json().catch(() => ({}));
        $('outbox-summary').textContent = doc.message || t('errUnknown');
        return;
      }
    } catch (_) {
      $('outbox-summary').textContent = t('errNetwork');
      return;
    }
    loadOutbox();
  }

  // The fields of the visible cards and the advanced section, as the API names them.
  function settingsBody() {
    const form = $('settings');
    const body = {};
    for (const input of form.querySelectorAll('input[name], select[name]')) {
      if (input.closest('[hidden]')) continue;
      if (input.dataset.secret) {
        if (input.value !== '') body[input.name] = input.value; // empty: keep as it is
      } else if (input.type === 'checkbox') {
        body[input.name] = input.checked;
      } else {
        body[input.name] = input.value.trim();
      }
    }
    return body;
  }

  async function saveSettings(event) {
    event.preventDefault();
    const form = $('settings');
    clearErrors(form);
    const result = $('save-result');
    const button = $('save');
    button.disabled = true;
    button.textContent = t('saving');
    try {
      const r = await fetch('api/settings', {
        method: 'PUT',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(settingsBody()),
      });
      if (r.status === 401) {
        showLogin(true);
        return;
      }
      const doc = await r.json();
      if (r.ok) {
        fillSettings(doc);
        result.textContent = t('saved');
        result.className = 'ok';
        // The home view follows: today's list on or off, the wristband pattern.
        await loadInfo();
        if (worklist) worklist.refresh();
      } else {
        const errors = doc.errors && doc.errors.length ? doc.errors : [{ field: doc.field, message: doc.message }];
        let placed = false;
        for (const e of errors) {
          if (e.field && showFieldError(form, e.field, e.message)) {
            placed = true;
            const details = form.querySelector(`[name="${CSS.escape(e.field)}"]`)?.closest('details');
            if (details) details.open = true;
          }
        }
        result.textContent = placed ? t('saveFailed') : doc.message || t('saveFailed');
        result.className = 'error';
      }
    } catch (_) {
      result.textContent = t('errNetwork');
      result.className = 'error';
    } finally {
      button.disabled = false;
      button.textContent = t('save');
    }
  }

  async function testConnection(button, out, body) {
    button.disabled = true;
    out.textContent = t('testing');
    out.className = '';
    try {
      const r = await fetch('api/pacs/echo', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
      const doc = await r.json();
      if (r.ok) {
        out.textContent = t('echoOk', { ms: doc.elapsedMs });
        out.className = 'ok';
      } else {
        out.textContent = t('echoFailed', { message: doc.message || r.status });
        out.className = 'error';
        if (doc.field) {
          const map = { calledAET: 'pacsCalledAET', host: 'pacsHost', port: 'pacsPort' };
          showFieldError($('settings'), map[doc.field] || doc.field, doc.message);
        }
      }
    } catch (_) {
      out.textContent = t('errNetwork');
      out.className = 'error';
    } finally {
      button.disabled = false;
    }
  }

  // ---- wiring ---------------------------------------------------------------------------
  function start() {
    lang = pickLanguage();
    const savedTheme = readPref(PREFS.theme);
    applyTheme(savedTheme ? savedTheme === 'dark' : true);
    applyLanguage();

    $('lang').addEventListener('click', () => {
      lang = lang === 'zh-TW' ? 'en' : 'zh-TW';
      writePref(PREFS.lang, lang);
      applyLanguage();
      if (!$('view-settings').hidden && !$('admin').hidden && subview === 'settings') loadSettings();
    });
    $('theme-dark').addEventListener('change', (e) => {
      applyTheme(e.target.checked);
      writePref(PREFS.theme, e.target.checked ? 'dark' : 'light');
    });
    $('tab-home').addEventListener('click', () => showTab('home'));
    $('tab-settings').addEventListener('click', () => showTab('settings'));
    $('retry').addEventListener('click', checkGateway);

    const study = $('study');
    study.addEventListener('input', () => {
      // A changed form is another submission: it gets a key of its own.
      if (!sending) submission = null;
      $('result-who').hidden = true;
      refreshSend();
    });
    study.addEventListener('change', renderWho); // the sex select, a picked date
    // Enter in the Patient ID field (a scanner's last key) never sends; patient.js commits it.
    $('patientId').addEventListener('keydown', (e) => { if (e.key === 'Enter') e.preventDefault(); });
    // The PIN typed: what was refused for want of it is asked again.
    $('upload-pin').addEventListener('change', () => {
      if (worklist) worklist.refresh();
      if (patient) patient.retry();
    });
    study.addEventListener('submit', submitStudy);
    for (const radio of study.querySelectorAll('input[name="examMode"]')) {
      radio.addEventListener('change', () => {
        const manual = study.elements.examMode.value === 'manual';
        $('examDateTime').disabled = !manual;
        if (manual && !$('examDateTime').value) {
          const now = new Date(Date.now() - new Date().getTimezoneOffset() * 60000);
          $('examDateTime').value = now.toISOString().slice(0, 16);
        }
      });
    }
    const today = new Date(Date.now() - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 10);
    $('birthDate').max = today;
    for (const id of ['camera', 'album']) {
      const input = $(id);
      input.addEventListener('change', () => {
        addFiles(input.files);
        input.value = '';
      });
    }

    $('settings').addEventListener('submit', saveSettings);
    $('login').addEventListener('submit', login);
    $('password-change').addEventListener('click', changePassword);
    $('logout').addEventListener('click', logout);
    $('echo').addEventListener('click', () => {
      const f = $('settings').elements;
      testConnection($('echo'), $('echo-result'), {
        calledAET: f.pacsCalledAET.value.trim(),
        host: f.pacsHost.value.trim(),
        port: f.pacsPort.value.trim(),
      });
    });
    $('test-web').addEventListener('click', () => testConnection($('test-web'), $('web-result'), {}));
    $('outbox-refresh').addEventListener('click', loadOutbox);
    for (const sub of Object.keys(SUBVIEWS)) $(`sub-${sub}`).addEventListener('click', () => showSub(sub));
    $('time-zone-phone').addEventListener('click', () => {
      $('timeZone').value = phoneZone();
      $('timeZone').focus();
    });

    // Back to the app (the phone unlocked, another app left): today's list may have changed.
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && !$('view-home').hidden && worklist) worklist.refresh();
    });
    window.addEventListener('online', checkGateway);
    window.addEventListener('offline', () => { $('offline').hidden = false; });

    loadModules(loadInfo());
    loadSession();
    checkGateway();
    if ('serviceWorker' in navigator) {
      navigator.serviceWorker.register('sw.js').catch(() => { /* http on a LAN address: no SW */ });
    }
  }

  document.addEventListener('DOMContentLoaded', start);
})();
