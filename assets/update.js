// The admin's update view: the box's two root slots, a signed update bundle uploaded (or
// fetched by the box from an https:// address), its version and signer shown before
// Install, the install's progress, then the reboot (now, at a time, or cancelled) and how
// the last update ended (installed / rolled back / failed). Everything comes from
// GET api/update, fetched when the view opens and every 2 s while an install or a reboot
// plan is in progress (15 s otherwise), only while the view is on screen.

const FAST_MS = 2000;
const SLOW_MS = 15000;

export function initUpdate(ctx) {
  const { $, t } = ctx;
  const area = $('admin-update');
  let state = null; // the last api/update answer
  let error = null;
  let timer = null;
  let busy = false;

  async function body(r) {
    try { return await r.json(); } catch (_) { return {}; }
  }

  function when(iso) {
    const d = new Date(iso);
    if (!iso || Number.isNaN(d.getTime())) return '—';
    return d.toLocaleString(ctx.lang(), { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  }

  function size(n) {
    let v = Math.max(0, Number(n) || 0);
    const units = ['B', 'kB', 'MB', 'GB'];
    let i = 0;
    while (v >= 1000 && i < units.length - 1) {
      v /= 1000;
      i += 1;
    }
    return `${v.toLocaleString(ctx.lang(), { maximumFractionDigits: i > 0 && v < 100 ? 1 : 0 })} ${units[i]}`;
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function say(text, cls = '') {
    const out = $('update-result');
    out.textContent = text;
    out.className = cls;
  }

  // ---- the box's answers ------------------------------------------------------------------
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const r = await fetch('api/update', { cache: 'no-store' });
      if (r.status === 401) {
        ctx.needLogin();
        return;
      }
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      state = await r.json();
      error = null;
    } catch (e) {
      error = e.message || String(e);
    } finally {
      busy = false;
    }
    render();
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    if (!ctx.visible('update')) return;
    const active = state && (state.operation !== 'idle' || state.reboot);
    timer = setTimeout(refresh, active ? FAST_MS : SLOW_MS);
  }

  // ---- rendering ----------------------------------------------------------------------------
  function renderSlots() {
    const list = $('update-slots');
    list.replaceChildren();
    for (const s of state.slots || []) {
      const li = el('li');
      const booted = s.bootname === state.bootedSlot || s.state === 'booted';
      li.append(el('strong', t('updSlot', { name: s.bootname })));
      li.append(el('span', ` ${s.version || t('updVersionUnknown')}`));
      const tags = [];
      if (booted) tags.push(t('updBooted'));
      if (s.bootStatus === 'good') tags.push(t('updGood'));
      if (s.bootStatus === 'bad') tags.push(t('updBad'));
      if (tags.length) li.append(el('span', ` · ${tags.join(' · ')}`, s.bootStatus === 'bad' && !booted ? 'warn' : ''));
      if (s.installedAt) li.append(el('span', ` · ${t('updInstalledAt', { when: when(s.installedAt) })}`, 'hint'));
      list.append(li);
    }
  }

  function renderPending() {
    const p = state.pending;
    const box = $('update-pending');
    box.hidden = !p;
    if (!p) return;
    const dl = $('update-pending-facts');
    dl.replaceChildren();
    for (const [k, v] of [
      ['updVersion', p.version],
      ['updSigner', p.signer],
      ['updCompatible', p.compatible],
      ['updSize', size(p.size)],
      ['updUploaded', when(p.uploadedAt)],
    ]) {
      dl.append(el('dt', t(k)), el('dd', v || '—'));
    }
    const installing = state.operation !== 'idle';
    $('update-install').disabled = installing;
    $('update-discard').disabled = installing;
  }

  function renderProgress() {
    const installing = state.operation === 'installing';
    $('update-progress-box').hidden = !installing;
    if (installing) {
      const pct = Math.max(0, Math.min(100, Number(state.progress?.percent) || 0));
      $('update-progress').value = pct;
      $('update-progress-text').textContent = `${pct}% ${state.progress?.message || ''}`;
    }
    const err = $('update-error');
    err.hidden = !state.lastError;
    err.textContent = state.lastError ? t('updFailed', { why: state.lastError }) : '';
  }

  function renderReboot() {
    $('update-reboot-box').hidden = !state.awaitingReboot && !state.reboot;
    const plan = state.reboot;
    $('update-reboot-cancel').hidden = !plan;
    const text = $('update-reboot-plan');
    if (!plan) {
      text.textContent = state.awaitingReboot ? t('updAwaitingReboot') : '';
    } else if (plan.waitingForOutbox) {
      text.textContent = t('updRebootWaiting');
    } else {
      text.textContent = t('updRebootAt', { when: plan.requested === 'now' ? t('updNow') : when(plan.scheduledAt) });
    }
  }

  function renderLast() {
    const r = state.lastResult;
    const p = $('update-last');
    p.hidden = !r;
    if (!r) return;
    const key = { installed: 'updLastInstalled', rolledBack: 'updLastRolledBack', failed: 'updLastFailed' }[r.kind] || 'updLastFailed';
    p.textContent = t(key, { version: r.version, slot: r.slot || '—', when: when(r.at) });
    p.className = r.kind === 'installed' ? 'ok' : 'warn';
  }

  function render() {
    const unavailable = $('update-unavailable');
    const main = $('update-main');
    if (error && !state) {
      unavailable.hidden = false;
      unavailable.textContent = t('updLoadFailed', { why: error });
      main.hidden = true;
      return;
    }
    if (!state) return;
    if (!state.available) {
      unavailable.hidden = false;
      unavailable.textContent = t('updUnavailable');
      main.hidden = true;
    } else {
      unavailable.hidden = true;
      main.hidden = false;
      $('update-running').textContent = t('updRunning', { version: state.version || '—', slot: state.bootedSlot || '—' });
      renderSlots();
      renderPending();
      renderProgress();
      renderReboot();
      renderLast();
    }
    area.dataset.ready = '1';
  }

  // ---- actions --------------------------------------------------------------------------------
  async function answer(r, okText) {
    if (r.status === 401) {
      ctx.needLogin();
      return false;
    }
    if (r.status === 429) {
      ctx.tooMany(r);
      return false;
    }
    const b = await body(r);
    if (!r.ok) {
      say(b.message || `HTTP ${r.status}`, 'error');
      return false;
    }
    if (okText) say(okText, 'ok');
    return true;
  }

  async function send(what, init, okText) {
    say(t('updWorking'));
    try {
      const ok = await answer(await fetch(what, { cache: 'no-store', ...init }), okText);
      await refresh();
      return ok;
    } catch (e) {
      say(e.message || String(e), 'error');
      return false;
    }
  }

  async function uploadFile() {
    const file = $('update-file').files[0];
    if (!file) return;
    if (state && file.size > state.maxBytes) {
      say(t('updTooLarge', { mb: Math.round(state.maxBytes / 1048576) }), 'error');
      return;
    }
    const form = new FormData();
    form.append('file', file, file.name);
    $('update-file').value = '';
    say(t('updChecking'));
    await send('api/update/bundle', { method: 'POST', body: form }, t('updChecked'));
  }

  async function fetchUrl(e) {
    e.preventDefault();
    const url = $('update-url').value.trim();
    if (!url.startsWith('https://')) {
      say(t('updUrlHttps'), 'error');
      return;
    }
    say(t('updDownloading'));
    const ok = await send('api/update/bundle', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ url }),
    }, t('updChecked'));
    if (ok) $('update-url').value = '';
  }

  function json(method, path, payload, okText) {
    return send(path, {
      method,
      headers: { 'Content-Type': 'application/json' },
      body: payload === undefined ? undefined : JSON.stringify(payload),
    }, okText);
  }

  $('update-file').addEventListener('change', uploadFile);
  $('update-url-form').addEventListener('submit', fetchUrl);
  $('update-install').addEventListener('click', () => json('POST', 'api/update/install', {}, t('updStarted')));
  $('update-discard').addEventListener('click', () => json('DELETE', 'api/update/bundle', undefined, ''));
  $('update-reboot-now').addEventListener('click', () => json('POST', 'api/update/reboot', { at: 'now' }, t('updRebootAsked')));
  $('update-reboot-later').addEventListener('click', () => {
    const at = $('update-reboot-time').value;
    if (!/^\d\d:\d\d$/.test(at)) {
      say(t('updRebootTime'), 'error');
      return;
    }
    json('POST', 'api/update/reboot', { at }, t('updRebootAsked'));
  });
  $('update-reboot-cancel').addEventListener('click', () => json('DELETE', 'api/update/reboot', undefined, t('updRebootCancelled')));
  ctx.onLanguage(() => render());
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && ctx.visible('update')) refresh();
  });

  return {
    show() {
      refresh();
    },
  };
}
