// The patient part of the home view: the Patient ID field (typed, scanned by a keyboard-wedge
// scanner or by the camera), the PACS lookup that says who that ID is, the link to a worklist
// entry that locks the patient's fields, and the two identifiers the send bar shows.
// Everything here lives in this page's memory only: no storage, no cache.

// Fields a worklist entry fills and locks.
const LOCKED = ['patientId', 'patientName', 'birthDate', 'sex', 'examDescription'];
// Keys of a keyboard-wedge scanner come faster than this (ms between two keys)...
const SCANNER_KEY_GAP_MS = 50;
// ...and a pause longer than this starts a new burst.
const BURST_GAP_MS = 150;
const LOOKUP_DEBOUNCE_MS = 300;

/// A DICOM Person Name ("WANG^DA MING", "王^大明", "Wang^Daming=王^大明") as people read it:
/// "WANG, DA MING", "王大明", "Wang, Daming (王大明)".
export function formatName(pn) {
  if (!pn) return '';
  const group = (g) => {
    const [family = '', given = '', middle = '', prefix = '', suffix = ''] = g.split('^').map((s) => s.trim());
    if (/[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]/.test(g)) {
      return [prefix, `${family}${given}${middle}`, suffix].filter(Boolean).join(' ');
    }
    const rest = [prefix, given, middle].filter(Boolean).join(' ');
    let out = family && rest ? `${family}, ${rest}` : family || rest;
    if (suffix) out += `, ${suffix}`;
    return out;
  };
  const shown = String(pn).split('=').map(group).filter(Boolean);
  return shown.length > 1 ? `${shown[0]} (${shown.slice(1).join(', ')})` : shown[0] || '';
}

/// The Patient ID in a scanned code: the first capture group of `pattern` (a JS regular
/// expression; "" takes the whole code), or null when the code does not contain one.
export function extractId(code, pattern) {
  const text = String(code).trim();
  if (!pattern) return text || null;
  let re;
  try {
    re = new RegExp(pattern, 'u');
  } catch (_) {
    try { re = new RegExp(pattern); } catch (__) { return text || null; }
  }
  const m = re.exec(text);
  if (!m) return null;
  const id = (m.length > 1 ? m[1] : m[0]) || '';
  return id.trim() || null;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export function initPatient(ctx) {
  const { $, t } = ctx;
  const form = $('study');
  const field = $('patientId');
  const params = new URLSearchParams(window.location.search);
  // ?scan=photo: decode a still photo even where live video would work (tests, old phones).
  const forceStill = params.get('scan') === 'photo';

  let link = null; // the worklist entry the patient fields come from
  let lookupTimer = null;
  let lookupAbort = null;
  let lookedUp = null; // { id, body } of the lookup on show
  // The keys typed in a quick run: a scanner's code, or the start of a human's typing.
  let burst = { last: 0, gaps: [], before: '', text: '' };

  // ---- worklist link ------------------------------------------------------------------
  function lock(on) {
    for (const name of LOCKED) {
      const el = form.elements[name];
      if (el.tagName === 'SELECT') el.disabled = on;
      else el.readOnly = on;
      el.classList.toggle('locked', on);
    }
  }

  function pick(entry) {
    link = entry;
    field.value = entry.patientId || '';
    form.elements.patientName.value = entry.patientName || '';
    form.elements.birthDate.value = entry.birthDate || '';
    form.elements.sex.value = ['M', 'F', 'O'].includes(entry.sex) ? entry.sex : '';
    form.elements.examDescription.value = entry.requestedProcedureDescription || entry.stepDescription || '';
    lock(true);
    hideLookup();
    hideNote();
    renderLink();
    ctx.changed();
    $('patient-fieldset').scrollIntoView({ block: 'start', behavior: 'smooth' });
  }

  function unlink() {
    if (!link) return;
    link = null;
    lock(false);
    renderLink();
    ctx.changed();
    ctx.onUnlink();
    field.focus();
    scheduleLookup(true);
  }

  function renderLink() {
    const box = $('patient-link');
    box.hidden = !link;
    if (!link) return;
    const parts = [];
    if (link.accessionNumber) parts.push(t('linkAccession', { acc: link.accessionNumber }));
    const what = link.requestedProcedureDescription || link.stepDescription;
    if (what) parts.push(what);
    if (link.stepStart) parts.push(ctx.formatWhen(link.stepStart));
    $('patient-link-detail').textContent = parts.join(' · ');
  }

  // ---- lookup -------------------------------------------------------------------------
  function hideLookup() {
    clearTimeout(lookupTimer);
    if (lookupAbort) lookupAbort.abort();
    lookupAbort = null;
    lookedUp = null;
    $('lookup').hidden = true;
  }

  function scheduleLookup(now) {
    clearTimeout(lookupTimer);
    const id = field.value.trim();
    if (link || !ctx.info().patientLookup || !id) {
      hideLookup();
      return;
    }
    if (lookedUp && lookedUp.id === id) return; // already on show
    lookupTimer = setTimeout(() => runLookup(id), now ? 0 : LOOKUP_DEBOUNCE_MS);
  }

  async function runLookup(id) {
    if (lookupAbort) lookupAbort.abort();
    const abort = new AbortController();
    lookupAbort = abort;
    lookedUp = { id, body: null };
    renderLookup('checking');
    let r;
    try {
      r = await ctx.api('api/patients/lookup', { method: 'POST', json: { patientId: id }, signal: abort.signal });
    } catch (e) {
      if (abort.signal.aborted) return;
      r = null;
    }
    // A newer ID, or a pick from the worklist, made this answer stale.
    if (abort.signal.aborted || lookupAbort !== abort || field.value.trim() !== id || link) return;
    lookupAbort = null;
    if (!r) {
      renderLookup('error', t('errNetwork'));
    } else if (r.body.enabled === false) {
      hideLookup();
    } else if (r.status === 401 || r.status === 429) {
      ctx.pinProblem(r);
      renderLookup('error', t('lookupNeedsPin'));
      lookedUp = null; // ask again once the PIN is there
    } else if (!r.ok) {
      renderLookup('error', t('lookupFailed', { message: r.body.message || r.status }));
      lookedUp = null;
    } else {
      lookedUp.body = r.body;
      renderLookup(r.body.found ? 'found' : 'missing');
    }
  }

  function renderLookup(state, message) {
    const box = $('lookup');
    const title = $('lookup-title');
    const detail = $('lookup-detail');
    const use = $('lookup-use');
    box.hidden = false;
    box.className = `lookup ${state}`;
    use.hidden = true;
    detail.replaceChildren();
    if (state === 'checking') {
      title.textContent = t('lookupChecking');
      return;
    }
    if (state === 'error') {
      title.textContent = message;
      return;
    }
    if (state === 'missing') {
      title.textContent = t('lookupNotFound');
      detail.append(line(t('lookupNotFoundHint')));
      return;
    }
    const p = lookedUp.body.patient || {};
    title.textContent = t('lookupFound');
    detail.append(line(formatName(p.patientName) || t('lookupNoName'), 'big'));
    const facts = [];
    if (p.birthDate) facts.push(t('lookupBorn', { date: p.birthDate }));
    if (p.sex) facts.push(t(`sex${p.sex}`));
    if (typeof lookedUp.body.studies === 'number') facts.push(t('lookupStudies', { n: lookedUp.body.studies }));
    if (facts.length) detail.append(line(facts.join(' · ')));
    // What the nurse typed and the PACS disagree on: said, never overwritten.
    const typed = { name: form.elements.patientName.value.trim(), birth: form.elements.birthDate.value, sex: form.elements.sex.value };
    const differs = [];
    if (typed.name && p.patientName && norm(typed.name) !== norm(p.patientName)) differs.push(t('patientName'));
    if (typed.birth && p.birthDate && typed.birth !== p.birthDate) differs.push(t('birthDate'));
    if (typed.sex && p.sex && typed.sex !== p.sex) differs.push(t('sex'));
    if (differs.length) detail.append(line(t('lookupDiffers', { fields: differs.join(', ') }), 'warn'));
    const fills = (!typed.name && p.patientName) || (!typed.birth && p.birthDate) || (!typed.sex && ['M', 'F', 'O'].includes(p.sex));
    use.hidden = !fills;
  }

  function norm(name) {
    return String(name).replace(/[\^=,\s]+/g, ' ').trim().toUpperCase();
  }

  function line(text, cls) {
    const p = document.createElement('p');
    p.textContent = text;
    if (cls) p.className = cls;
    return p;
  }

  function useLookup() {
    const p = (lookedUp && lookedUp.body && lookedUp.body.patient) || {};
    const f = form.elements;
    if (!f.patientName.value.trim() && p.patientName) f.patientName.value = p.patientName;
    if (!f.birthDate.value && p.birthDate) f.birthDate.value = p.birthDate;
    if (!f.sex.value && ['M', 'F', 'O'].includes(p.sex)) f.sex.value = p.sex;
    ctx.changed();
    renderLookup('found');
  }

  // ---- scanned codes --------------------------------------------------------------------
  function showNote(text, kind) {
    const note = $('scan-note');
    note.textContent = text;
    note.className = kind === 'ok' ? 'scan-ok' : 'field-error';
    note.hidden = false;
  }

  function hideNote() {
    $('scan-note').hidden = true;
    $('scan-note').textContent = '';
  }

  /// A code from a scanner or the camera: its Patient ID goes into the field and is looked
  /// up; a code without one leaves the field as it was (`previous`) and says so.
  function applyCode(code, previous) {
    const id = extractId(code, ctx.info().patientIdPattern || '');
    if (link) {
      // Picked from the list: the wristband checks the pick, it changes nothing.
      field.value = link.patientId || '';
      if (id === null) showNote(t('scanNoId'));
      else if (id === link.patientId) showNote(t('scanMatches', { id }), 'ok');
      else showNote(t('scanMismatch', { id, picked: link.patientId }));
      return id !== null && id === link.patientId;
    }
    if (id === null) {
      field.value = previous;
      showNote(t('scanNoId'));
      ctx.changed();
      return false;
    }
    hideNote();
    field.value = id;
    ctx.changed();
    scheduleLookup(true);
    return true;
  }

  // Keyboard-wedge scanners type the code very fast and press Enter (some Tab): Enter here
  // never sends the form, it commits the field, and so does a scanner's Tab.
  function commit(fromScanner) {
    const value = field.value;
    let code = fromScanner && value.startsWith(burst.before) ? value.slice(burst.before.length) : value;
    if (link) code = fromScanner ? burst.text : ''; // a locked field took no keys
    const before = fromScanner ? burst.before : value;
    burst = { last: 0, gaps: [], before: '', text: '' };
    if (!code.trim()) return;
    const id = extractId(code, ctx.info().patientIdPattern || '');
    if (id === null && !fromScanner) {
      // Typed by hand and not in the scanner's format: an ID as it is.
      hideNote();
      scheduleLookup(true);
      return;
    }
    applyCode(code, before);
  }

  field.addEventListener('keydown', (e) => {
    const now = performance.now();
    const fromScanner = burst.gaps.length >= 3 && median(burst.gaps) < SCANNER_KEY_GAP_MS && now - burst.last < 300;
    if (e.key === 'Enter') {
      e.preventDefault();
      if (!e.isComposing) commit(fromScanner);
      return;
    }
    if (e.key === 'Tab' && fromScanner) {
      commit(true); // the focus moves on as the scanner meant
      return;
    }
    if (e.key.length === 1 && !e.ctrlKey && !e.metaKey) {
      if (now - burst.last > BURST_GAP_MS) burst = { last: now, gaps: [], before: field.value, text: '' };
      else burst.gaps.push(now - burst.last);
      burst.last = now;
      burst.text += e.key;
    }
  });

  field.addEventListener('input', () => {
    hideNote();
    // The lookup on show is for another ID now.
    if (lookedUp && lookedUp.id !== field.value.trim()) hideLookup();
  });
  field.addEventListener('change', () => scheduleLookup(false));
  for (const name of ['patientName', 'birthDate', 'sex']) {
    for (const type of ['input', 'change']) {
      form.elements[name].addEventListener(type, () => {
        if (lookedUp && lookedUp.body && lookedUp.body.found) renderLookup('found');
      });
    }
  }
  $('lookup-use').addEventListener('click', useLookup);
  $('unlink').addEventListener('click', unlink);

  // Camera scan. The decoder (scan.js, and the WebAssembly one behind it when the browser
  // has no BarcodeDetector) is loaded only now, never with the page.
  const still = $('scan-photo');
  let scanner = null;
  let liveFailed = false;
  function loadScanner() {
    if (!scanner) scanner = import('./scan.js').catch((e) => { scanner = null; throw e; });
    return scanner;
  }

  async function decodeAndApply(task) {
    const previous = field.value;
    $('scan').setAttribute('aria-busy', 'true');
    try {
      const code = await task();
      if (code === null) return; // cancelled
      if (code === '') {
        showNote(t('scanNothing'));
        return;
      }
      applyCode(code, previous);
    } catch (e) {
      showNote(t('scanFailed', { message: e && e.message ? e.message : String(e) }));
    } finally {
      $('scan').removeAttribute('aria-busy');
    }
  }

  $('scan').addEventListener('click', () => {
    hideNote();
    const formats = ctx.info().barcodeFormats;
    const live = !forceStill && !liveFailed && window.isSecureContext && navigator.mediaDevices && navigator.mediaDevices.getUserMedia;
    if (!live) {
      // Plain HTTP on the clinic LAN: no live camera. The picker opens at once, inside the
      // tap (browsers want that), and the decoder loads while the photo is being taken.
      still.click();
      loadScanner().then((m) => m.prepare(formats)).catch(() => { /* said when decoding */ });
      return;
    }
    decodeAndApply(async () => {
      const m = await loadScanner();
      const code = await m.scanLive(formats, {
        dialog: $('scan-dialog'),
        video: $('scan-video'),
        cancel: $('scan-cancel'),
      });
      if (code !== undefined) return code;
      // No camera, or it was refused: the next tap takes a still photo instead (the tap
      // that opens a file picker must be the user's own, so not from here).
      liveFailed = true;
      showNote(t('scanNoCamera'));
      return null;
    });
  });

  still.addEventListener('change', () => {
    const file = still.files && still.files[0];
    still.value = '';
    if (!file) return;
    decodeAndApply(async () => (await loadScanner()).scanFile(file, ctx.info().barcodeFormats));
  });

  ctx.onLanguage(() => {
    renderLink();
    if (lookedUp && lookedUp.body) renderLookup(lookedUp.body.found ? 'found' : 'missing');
  });

  return {
    pick,
    /// After a send: the link goes with the form.
    reset() {
      link = null;
      lock(false);
      renderLink();
      hideLookup();
      hideNote();
    },
    /// The entry string to send with the study, or null.
    entry: () => (link ? link.entry : null),
    linked: () => link,
    /// The PIN arrived or changed: a lookup refused for want of it is asked again.
    retry: () => scheduleLookup(true),
  };
}
