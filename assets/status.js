// The admin's status view: what the box says about itself (GET api/status) and its recent
// events (GET api/events), fetched when the view opens and every 15 s while it is on
// screen, and the diagnostics download. The box's answers hold no patient data and this
// view shows nothing else; they live in this module's memory only, never in storage.
//
// The clock check does not rely on the box alone: a box with no battery clock and no time
// server may be days off without knowing it, so the page compares the box's "now" with this
// phone's clock (which keeps network time) on every refresh.

const REFRESH_MS = 15000;
// The box warns when a phone's clock and its own differ by more than this; so does the page.
const SKEW_WARN_S = 120;
const EVENTS_PAGE = 50;
const KINDS = ['start', 'delivery', 'retry', 'error', 'login', 'settings', 'backup', 'restore', 'clock', 'pacs', 'outbox', 'update'];
const REASONS = ['DATA_READ_ONLY', 'DATA_LOW_SPACE', 'SETTINGS_LOCKED', 'OUTBOX_STUCK'];

const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);

export function initStatus(ctx) {
  const { $, t } = ctx;
  let status = null; // the last api/status answer
  let events = []; // the last api/events answer's list, newest first
  let shown = EVENTS_PAGE;
  let pageSkew = null; // the box's clock minus this phone's, in seconds, at the last fetch
  let fetchedAt = null;
  let error = null;
  let timer = null;
  let busy = false;

  // ---- formatting -------------------------------------------------------------------------
  function duration(total) {
    let s = Math.max(0, Math.round(total));
    // Past an hour, to the nearest minute: 259199 s is "3 d 0 h", not "2 d 23 h".
    if (s >= 3600) s = Math.round(s / 60) * 60;
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d > 0) return t('durDays', { d, h });
    if (h > 0) return t('durHours', { h, m });
    if (m > 0) return t('durMinutes', { m });
    return t('durSeconds', { s });
  }

  function bytes(n) {
    const units = ['B', 'kB', 'MB', 'GB', 'TB'];
    let v = Number(n) || 0;
    let i = 0;
    while (v >= 1000 && i < units.length - 1) {
      v /= 1000;
      i += 1;
    }
    const digits = i > 0 && v < 100 ? 1 : 0;
    return `${v.toLocaleString(ctx.lang(), { maximumFractionDigits: digits })} ${units[i]}`;
  }

  /// A moment the box reported, in this phone's time zone and language.
  function when(iso) {
    const d = new Date(iso);
    if (!iso || Number.isNaN(d.getTime())) return '—';
    const opts = { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' };
    if (d.getFullYear() !== new Date().getFullYear()) opts.year = 'numeric';
    return d.toLocaleString(ctx.lang(), opts);
  }

  /// The box's own wall clock as it reads it: "2026-11-27 18:53:06 (UTC+08:00)".
  function wallClock(iso) {
    const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$/.exec(iso || '');
    if (!m) return iso || '—';
    return `${m[1]} ${m[2]} (UTC${m[3] === 'Z' ? '' : m[3]})`;
  }

  /// "3 d 0 h behind" / "2 min ahead" for a difference in seconds (box minus phone).
  function skewText(seconds) {
    const diff = duration(Math.abs(seconds));
    return seconds < 0 ? t('skewBehind', { diff }) : t('skewAhead', { diff });
  }

  // ---- the box's answers ------------------------------------------------------------------
  async function body(r) {
    try { return await r.json(); } catch (_) { return {}; }
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    $('admin-status').setAttribute('aria-busy', 'true');
    const sent = Date.now();
    let rs;
    let re;
    try {
      [rs, re] = await Promise.all([
        fetch('api/status', { cache: 'no-store' }),
        fetch('api/events', { cache: 'no-store' }),
      ]);
    } catch (_) {
      rs = null;
    }
    const received = Date.now();
    busy = false;
    $('admin-status').setAttribute('aria-busy', 'false');
    if (!rs) {
      error = t('errNetwork');
    } else if (rs.status === 401 || re.status === 401) {
      stop();
      ctx.needLogin();
      return;
    } else if (!rs.ok) {
      error = (await body(rs)).message || t('statusFailed');
    } else {
      status = await body(rs);
      if (re.ok) events = (await body(re)).events || [];
      error = null;
      fetchedAt = new Date(received);
      // The box says its time to the second; the round trip's midpoint is when it did.
      const boxNow = Date.parse(status.clock && status.clock.now);
      pageSkew = Number.isNaN(boxNow) ? null : Math.round((boxNow - (sent + received) / 2) / 1000);
    }
    render();
  }

  // ---- rendering ----------------------------------------------------------------------------
  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text; // a live region speaks changes only
  }

  function renderClock() {
    const box = $('status-clock');
    const clock = (status && status.clock) || {};
    const lines = [];
    if (pageSkew !== null && Math.abs(pageSkew) > SKEW_WARN_S) {
      lines.push(t('clockPhoneSkew', { skew: skewText(pageSkew) }));
    } else if (typeof clock.phoneSkewSeconds === 'number' && Math.abs(clock.phoneSkewSeconds) > SKEW_WARN_S) {
      lines.push(t('clockLastPhoneSkew', { skew: skewText(clock.phoneSkewSeconds), when: when(clock.phoneSeenAt) }));
    }
    if (clock.synchronized === 'no') lines.push(t('clockNotSynced'));
    const text = lines.join(' ');
    const detail = lines.length && clock.warning ? clock.warning : '';
    box.hidden = !text;
    const shownText = `${text}\n${detail}`;
    if (box.dataset.text === shownText) return;
    box.dataset.text = shownText;
    box.replaceChildren();
    if (!text) return;
    const strong = document.createElement('strong');
    strong.textContent = text;
    const advice = document.createElement('span');
    advice.className = 'advice';
    advice.textContent = t('clockAdvice');
    box.append(strong, ' ', advice);
    if (detail) {
      const p = document.createElement('span');
      p.className = 'detail';
      p.textContent = detail;
      box.append(p);
    }
  }

  function renderReady() {
    const el = $('status-ready');
    el.replaceChildren();
    if (!status || !status.ready) return;
    const head = document.createElement('strong');
    el.className = `ready ${status.ready.ready ? 'ok' : 'error'}`;
    head.textContent = status.ready.ready ? t('readyYes') : t('readyNo');
    el.append(head);
    const reasons = status.ready.reasons || [];
    if (reasons.length) {
      const ul = document.createElement('ul');
      for (const reason of reasons) {
        const li = document.createElement('li');
        const known = REASONS.includes(reason.code);
        li.textContent = known ? t(`reason_${reason.code}`) : reason.message || reason.code;
        if (known && reason.message) {
          const detail = document.createElement('span');
          detail.className = 'detail';
          detail.textContent = reason.message;
          li.append(detail);
        }
        ul.append(li);
      }
      el.append(ul);
    }
  }

  function renderWarnings() {
    const box = $('status-warnings');
    const list = (status && status.warnings) || [];
    box.replaceChildren();
    box.hidden = list.length === 0;
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

  /// One card: a heading and its facts as a description list. A row is
  /// [label key, text, class] ('ok', 'error', 'warn' or none); a null row is left out.
  function card(id, titleKey, rows) {
    const section = document.createElement('section');
    section.className = 'card';
    section.id = id;
    const h = document.createElement('h2');
    h.id = `${id}-title`;
    h.textContent = t(titleKey);
    section.setAttribute('aria-labelledby', h.id);
    const dl = document.createElement('dl');
    for (const row of rows) {
      if (!row) continue;
      // A fourth element is a label already in words (a slot's name).
      const [label, value, cls, words] = row;
      const dt = document.createElement('dt');
      dt.textContent = words ?? t(label);
      const dd = document.createElement('dd');
      dd.textContent = value;
      if (cls) dd.className = cls;
      dl.append(dt, dd);
    }
    section.append(h, dl);
    return section;
  }

  function backendName(b) {
    return { mock: t('backendNameMock'), dimse: 'DICOM C-STORE', cstore: 'DICOM C-STORE', dicomweb: 'DICOMweb STOW-RS' }[b] || b || '—';
  }

  function renderFacts() {
    const box = $('status-facts');
    box.replaceChildren();
    if (!status) return;
    const s = status;
    const build = s.build || {};
    const data = s.data || {};
    const outbox = s.outbox || {};
    const pacs = s.pacs || {};
    const clock = s.clock || {};
    const tunnel = s.tunnel || {};
    const buildText = [build.commit, build.target, build.profile].filter(Boolean).join(', ');
    const boxRows = [
      ['factVersion', buildText ? `${s.version} (${buildText})` : String(s.version || '—')],
      ['factUptime', t('uptimeSince', { uptime: duration(s.uptimeSeconds || 0), when: when(s.startedAt) })],
      ['factHostname', s.hostname || '—'],
      ['factAddresses', (s.addresses || []).join(', ') || t('none')],
      ['factBackend', backendName(s.backend)],
      ['factSettingsLocked', s.settingsLocked ? t('yes') : t('no'), s.settingsLocked ? 'error' : ''],
    ];
    const total = Number(data.totalBytes) || 0;
    const percent = total ? Math.round((Number(data.freeBytes) / total) * 100) : null;
    const dataRows = [
      ['factFree', percent === null ? bytes(data.freeBytes)
        : t('freeOf', { free: bytes(data.freeBytes), total: bytes(total), percent }), data.lowSpace ? 'error' : ''],
      data.readOnly ? ['factReadOnly', t('yes'), 'error'] : null,
      ['factDataPath', data.path || '—'],
    ];
    const lastError = outbox.lastError;
    const outboxRows = [
      ['factDepth', t('depthValue', { n: outbox.depth || 0 }), outbox.stuck ? 'error' : (outbox.depth ? 'warn' : '')],
      ['factOldest', outbox.oldest ? when(outbox.oldest) : t('none')],
      outbox.stuck ? ['factStuck', t('yes'), 'error'] : null,
      ['factLastStored', outbox.lastStored ? when(outbox.lastStored) : t('never')],
      ['factLastError', lastError
        ? `${when(lastError.at)} · ${lastError.message}${lastError.code ? ` (${lastError.code})` : ''}` : t('none'),
      lastError ? 'warn' : ''],
    ];
    let reach;
    if (pacs.reachable === true) reach = [t('pacsAnswers', { ms: pacs.elapsedMs ?? '?' }), 'ok'];
    else if (pacs.reachable === false) reach = [t('pacsSilent'), 'error'];
    else reach = [t('pacsUnchecked'), ''];
    const pacsRows = [
      ['factReachable', reach[0], reach[1]],
      pacs.message ? ['factPacsMessage', pacs.message] : null,
      ['factCheckedAt', pacs.checkedAt ? when(pacs.checkedAt) : t('never')],
    ];
    const synced = { yes: t('yes'), no: t('no'), unknown: t('unknown') }[clock.synchronized] || t('unknown');
    const clockRows = [
      ['factBoxTime', wallClock(clock.now)],
      ['factThisPhone', pageSkew === null ? '—'
        : Math.abs(pageSkew) <= SKEW_WARN_S ? t('inStep') : skewText(pageSkew),
      pageSkew !== null && Math.abs(pageSkew) > SKEW_WARN_S ? 'error' : 'ok'],
      ['factSynced', synced, clock.synchronized === 'no' ? 'error' : ''],
      ['factTimeZone', clock.timeZone || t('systemOwn')],
      ['factNtp', (clock.ntpServers || []).join(' ') || t('systemOwn')],
      ['factLastPhone', typeof clock.phoneSkewSeconds === 'number'
        ? `${Math.abs(clock.phoneSkewSeconds) <= SKEW_WARN_S ? t('inStep') : skewText(clock.phoneSkewSeconds)} · ${when(clock.phoneSeenAt)}`
        : t('never'),
      typeof clock.phoneSkewSeconds === 'number' && Math.abs(clock.phoneSkewSeconds) > SKEW_WARN_S ? 'error' : ''],
    ];
    let tunnelText;
    let tunnelClass = '';
    if (!tunnel.configured) tunnelText = t('tunnelNone');
    else if (tunnel.running === true) [tunnelText, tunnelClass] = [t('tunnelRunning'), 'ok'];
    else if (tunnel.running === false) [tunnelText, tunnelClass] = [t('tunnelStopped'), 'error'];
    else tunnelText = t('unknown');
    // The root slots (A/B) when the box runs the SD-card image; the Update view does the rest.
    const update = s.update || {};
    const slotRows = (update.slots || []).map((sl) => {
      const tags = [sl.version || t('updVersionUnknown')];
      if (sl.bootname === update.bootedSlot || sl.state === 'booted') tags.push(t('updBooted'));
      if (sl.bootStatus) tags.push(sl.bootStatus === 'good' ? t('updGood') : t('updBad'));
      return [`slot-${sl.bootname}`, tags.join(' · '), sl.bootStatus === 'bad' ? 'warn' : '', t('updSlot', { name: sl.bootname })];
    });
    const last = update.lastResult;
    if (last) {
      const key = { installed: 'updLastInstalled', rolledBack: 'updLastRolledBack', failed: 'updLastFailed' }[last.kind] || 'updLastFailed';
      slotRows.push(['factLastUpdate', t(key, { version: last.version, slot: last.slot || '—', when: when(last.at) }), last.kind === 'installed' ? 'ok' : 'warn']);
    }
    box.append(
      card('status-clock-card', 'cardClock', clockRows),
      card('status-outbox-card', 'cardOutbox', outboxRows),
      card('status-pacs-card', 'cardPacs', pacsRows),
      card('status-data-card', 'cardData', dataRows),
      card('status-box-card', 'cardBox', boxRows),
      card('status-tunnel-card', 'cardTunnel', [['factTunnel', tunnelText, tunnelClass]]),
    );
    if (update.available) box.append(card('status-update-card', 'cardSystem', slotRows));
  }

  function renderEvents() {
    const ol = $('events');
    ol.replaceChildren();
    for (const ev of events.slice(0, shown)) {
      const li = document.createElement('li');
      li.className = `ev ${ev.level || 'info'}`;
      const head = document.createElement('p');
      head.className = 'ev-head';
      const time = document.createElement('time');
      time.dateTime = ev.at;
      time.textContent = when(ev.at);
      const kind = document.createElement('span');
      kind.className = 'ev-kind';
      kind.textContent = KINDS.includes(ev.kind) ? t(`kind${cap(ev.kind)}`) : ev.kind;
      head.append(time, kind);
      if (ev.level === 'warn' || ev.level === 'error') {
        const level = document.createElement('span');
        level.className = 'ev-level';
        level.textContent = t(`level${cap(ev.level)}`);
        head.append(level);
      }
      const msg = document.createElement('p');
      msg.className = 'ev-msg';
      msg.textContent = ev.message;
      li.append(head, msg);
      const parts = [];
      if (ev.who) parts.push(t('evWho', { who: ev.who }));
      if (ev.fields && ev.fields.length) parts.push(t('evFields', { fields: ev.fields.join(', ') }));
      if (ev.study) parts.push(t('evStudy', { id: ev.study }));
      if (parts.length) {
        const detail = document.createElement('p');
        detail.className = 'detail';
        detail.textContent = parts.join(' · ');
        li.append(detail);
      }
      ol.append(li);
    }
    $('events-empty').hidden = !status || events.length > 0;
    const more = $('events-more');
    more.hidden = events.length <= shown;
    more.textContent = t('eventsMore', { n: events.length - shown });
  }

  function render() {
    renderClock();
    renderReady();
    renderWarnings();
    renderFacts();
    renderEvents();
    const note = $('status-note');
    note.className = error ? 'error' : 'hint';
    setText(note, error || (fetchedAt ? t('statusUpdated', { time: fetchedAt.toLocaleTimeString(ctx.lang()) }) : t('loading')));
  }

  // ---- diagnostics ----------------------------------------------------------------------------
  async function diagnostics() {
    const button = $('diagnostics');
    const out = $('diagnostics-result');
    button.disabled = true;
    out.className = '';
    out.textContent = t('diagnosticsPreparing');
    try {
      const r = await fetch('api/diagnostics', { cache: 'no-store' });
      if (r.status === 401) {
        out.textContent = '';
        ctx.needLogin();
        return;
      }
      if (!r.ok) {
        out.textContent = (await body(r)).message || t('errUnknown');
        out.className = 'error';
        return;
      }
      const name = await ctx.saveAnswer(r, 'photo-pacs-diagnostics.tar.gz');
      out.textContent = t('diagnosticsSaved', { name });
      out.className = 'ok';
    } catch (_) {
      out.textContent = t('errNetwork');
      out.className = 'error';
    } finally {
      button.disabled = false;
    }
  }

  // ---- on screen or not -------------------------------------------------------------------------
  function stop() {
    clearInterval(timer);
    timer = null;
  }

  function tick() {
    if (!ctx.visible('status')) {
      stop(); // off screen: no polling; opening the view again starts it
      return;
    }
    refresh();
  }

  function show() {
    refresh();
    if (!timer) timer = setInterval(tick, REFRESH_MS);
  }

  $('status-refresh').addEventListener('click', refresh);
  $('diagnostics').addEventListener('click', diagnostics);
  $('events-more').addEventListener('click', () => {
    shown += EVENTS_PAGE;
    renderEvents();
  });
  // Back to the page (the phone unlocked): fresh facts at once, then every 15 s again.
  document.addEventListener('visibilitychange', () => {
    if (ctx.visible('status')) show();
  });
  ctx.onLanguage(() => {
    $('status-clock').dataset.text = '';
    render();
  });
  render();

  return { show };
}
