// Today's list: the Modality Worklist entries the box fetches from the hospital, shown on
// the home view when the box has a worklist. Searched in memory, refreshed when the home view
// opens, by the refresh button, and by a downward pull at the top of the list. Picking an
// entry hands it to the patient part (patient.js), which fills and locks the fields.
// The entries live in this page's memory only.

import { formatName } from './patient.js';

const PULL_TO_REFRESH_PX = 70;

export function initWorklist(ctx, { onPick, linked }) {
  const { $, t } = ctx;
  const section = $('worklist');
  const list = $('worklist-list');
  const search = $('worklist-search');
  let doc = null; // the last answer: { demo, truncated, provider, entries }
  let error = null; // a sentence to show instead of the list
  let loading = false;
  let fetchedAt = null;
  let abort = null;

  function enabled() {
    return Boolean(ctx.info().worklist);
  }

  /// `fresh`: past the box's short cache (the refresh button, a pull); opening the home view
  /// takes the box's copy, so that phones opening it together make one query to the PACS.
  async function refresh({ fresh = false } = {}) {
    section.hidden = !enabled();
    if (!enabled()) return;
    if (abort) abort.abort();
    const mine = new AbortController();
    abort = mine;
    loading = true;
    render();
    let r;
    try {
      r = await ctx.api(fresh ? 'api/worklist?fresh=1' : 'api/worklist', { signal: mine.signal });
    } catch (_) {
      if (mine.signal.aborted) return;
      r = null;
    }
    if (abort !== mine) return;
    abort = null;
    loading = false;
    if (!r) {
      error = t('errNetwork');
    } else if (r.status === 401 || r.status === 429) {
      ctx.pinProblem(r);
      error = t('worklistNeedsPin');
    } else if (!r.ok) {
      // The box's sentence says what went wrong with the PACS; ours only when it has none.
      error = r.body.message || (r.body.code === 'PACS_TIMEOUT' ? t('worklistTimeout') : t('worklistFailed'));
    } else if (r.body.enabled === false) {
      error = null;
      doc = null;
      section.hidden = true;
      return;
    } else {
      error = null;
      doc = r.body;
      fetchedAt = new Date();
    }
    render();
  }

  function haystack(e) {
    return [e.patientName, formatName(e.patientName), e.patientId, e.accessionNumber,
      e.requestedProcedureDescription, e.stepDescription].join(' ').toLowerCase();
  }

  function render() {
    const note = $('worklist-note');
    const notes = [];
    if (loading) notes.push(t('worklistLoading'));
    if (error) notes.push(error);
    if (doc && !error) {
      if (doc.demo) notes.push(t('worklistDemo'));
      if (doc.truncated) notes.push(t('worklistTruncated'));
      if (fetchedAt) {
        const time = fetchedAt.toLocaleTimeString(ctx.lang(), { hour: '2-digit', minute: '2-digit' });
        notes.push(doc.provider && !doc.demo ? t('worklistFrom', { provider: doc.provider, time }) : t('worklistAt', { time }));
      }
    }
    note.textContent = notes.join(' · ');
    note.className = error ? 'hint error' : 'hint';
    $('worklist-refresh').disabled = loading;
    $('worklist').setAttribute('aria-busy', String(loading));

    const query = search.value.trim().toLowerCase();
    const entries = (doc && doc.entries) || [];
    const shown = query ? entries.filter((e) => haystack(e).includes(query)) : entries;
    const current = linked();
    list.replaceChildren();
    for (const e of shown) {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'wl-entry';
      b.dataset.patientId = e.patientId || '';
      const picked = Boolean(current && current.entry === e.entry);
      b.setAttribute('aria-pressed', String(picked));
      const name = document.createElement('span');
      name.className = 'wl-name';
      name.textContent = formatName(e.patientName) || t('lookupNoName');
      const ids = document.createElement('span');
      ids.className = 'wl-ids';
      const idParts = [t('wlId', { id: e.patientId || '-' })];
      if (e.birthDate) idParts.push(t('lookupBorn', { date: e.birthDate }));
      if (e.sex) idParts.push(t(`sex${e.sex}`));
      ids.textContent = idParts.join(' · ');
      const what = document.createElement('span');
      what.className = 'wl-what';
      const whatParts = [];
      if (e.stepStart) whatParts.push(ctx.formatWhen(e.stepStart));
      const desc = e.requestedProcedureDescription || e.stepDescription;
      if (desc) whatParts.push(desc);
      if (e.accessionNumber) whatParts.push(t('linkAccession', { acc: e.accessionNumber }));
      what.textContent = whatParts.join(' · ');
      b.append(name, ids, what);
      b.addEventListener('click', () => {
        onPick(e);
        render();
      });
      li.append(b);
      list.append(li);
    }
    const empty = $('worklist-empty');
    empty.hidden = loading || Boolean(error) || !doc || shown.length > 0;
    empty.textContent = entries.length ? t('worklistNoMatch') : t('worklistEmpty');
  }

  search.addEventListener('input', render);
  // Enter in the search box picks the only entry left, and never sends the form.
  search.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter') return;
    e.preventDefault();
    const buttons = list.querySelectorAll('button.wl-entry');
    if (buttons.length === 1) buttons[0].click();
  });
  $('worklist-refresh').addEventListener('click', () => refresh({ fresh: true }));

  // Pull to refresh: a downward pull that starts with the list scrolled to its top. The
  // list keeps the pull to itself (overscroll-behavior: contain), so the browser does not
  // reload the whole page instead.
  const pull = $('worklist-pull');
  let startY = null;
  let pulled = 0;
  list.addEventListener('touchstart', (e) => {
    startY = list.scrollTop <= 0 && e.touches.length === 1 ? e.touches[0].clientY : null;
    pulled = 0;
  }, { passive: true });
  list.addEventListener('touchmove', (e) => {
    if (startY === null) return;
    pulled = Math.max(0, e.touches[0].clientY - startY);
    pull.hidden = pulled < 10;
    pull.textContent = pulled >= PULL_TO_REFRESH_PX ? t('worklistRelease') : t('worklistPull');
  }, { passive: true });
  const endPull = () => {
    if (startY !== null && pulled >= PULL_TO_REFRESH_PX) refresh({ fresh: true });
    startY = null;
    pulled = 0;
    pull.hidden = true;
  };
  list.addEventListener('touchend', endPull);
  list.addEventListener('touchcancel', () => { startY = null; pull.hidden = true; });

  ctx.onLanguage(render);

  return { refresh, render };
}
