// Backup and restore of the box's configuration (POST api/backup, POST api/restore).
//
// A backup is a download: the settings without secrets as JSON, or, when the admin asks
// for the secrets and re-enters the password, an age file encrypted with a passphrase.
// A restore is two steps: the box reads the chosen file and says what would change (a
// preview; nothing is written), then the admin applies exactly that. Secrets show as
// "set" / "not set", never as values. The chosen file and the passphrase stay in this
// page's memory until the restore is applied or cancelled, never in storage.

// The box takes backups of at most 64 KiB; a larger file is not one of its backups.
const MAX_BACKUP_BYTES = 64 * 1024;
const PASSPHRASE_MIN = 8;
// How an age file begins, armored (as the box writes it) or binary.
const AGE_HEADERS = ['-----BEGIN AGE ENCRYPTED FILE-----', 'age-encryption.org/'];
// Settings whose values the box never shows: their change reads "set" / "not set".
const SECRET_KEY = /password|token|pin|secret/i;

export function initBackup(ctx) {
  const { $, t } = ctx;
  const area = $('admin-backup');
  let file = null; // the chosen backup file
  let encrypted = false;
  let plan = null; // the box's preview of that file

  async function body(r) {
    try { return await r.json(); } catch (_) { return {}; }
  }

  function say(el, text, cls = '') {
    el.textContent = text;
    el.className = cls;
  }

  // ---- backup -------------------------------------------------------------------------------
  function renderSecretFields() {
    // A box without an admin password gives no secrets: anyone on its network could take them.
    const can = Boolean(ctx.session().adminPasswordSet);
    const box = $('backup-secrets');
    box.disabled = !can;
    if (!can) box.checked = false;
    $('backup-secrets-off').hidden = can;
    $('backup-secret-fields').hidden = !box.checked;
    $('backup-password-box').hidden = !ctx.session().adminPasswordSet;
  }

  function clearSecrets() {
    for (const id of ['backup-password', 'backup-passphrase', 'backup-passphrase2']) $(id).value = '';
  }

  async function download() {
    ctx.clearErrors(area);
    const out = $('backup-result');
    say(out, '');
    const withSecrets = $('backup-secrets').checked;
    const request = { includeSecrets: withSecrets };
    if (withSecrets) {
      const passphrase = $('backup-passphrase').value;
      if (passphrase.length < PASSPHRASE_MIN) {
        ctx.showFieldError(area, 'passphrase', t('passphraseShort', { n: PASSPHRASE_MIN }));
        $('backup-passphrase').focus();
        return;
      }
      if (passphrase !== $('backup-passphrase2').value) {
        ctx.showFieldError(area, 'passphrase2', t('passphraseMismatch'));
        $('backup-passphrase2').focus();
        return;
      }
      request.passphrase = passphrase;
      if (ctx.session().adminPasswordSet) request.password = $('backup-password').value;
    }
    const button = $('backup-download');
    button.disabled = true;
    say(out, t('backupPreparing'));
    try {
      const r = await fetch('api/backup', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(request),
        cache: 'no-store',
      });
      if (r.ok) {
        const name = await ctx.saveAnswer(r, withSecrets ? 'photo-pacs.backup.age' : 'photo-pacs.backup.json');
        say(out, t(withSecrets ? 'backupSavedSecrets' : 'backupSaved', { name }), 'ok');
        clearSecrets();
        return;
      }
      const doc = await body(r);
      if (r.status === 429) {
        say(out, ctx.tooMany(r), 'error');
      } else if (r.status === 401 && !(withSecrets && doc.field === 'password')) {
        say(out, '');
        ctx.needLogin(); // the session ended
      } else {
        // A wrong admin password, a passphrase the box refuses: said beside the field.
        const text = r.status === 401 ? t('loginWrong') : doc.message || t('errUnknown');
        if (doc.field) ctx.showFieldError(area, doc.field, text);
        if (doc.field === 'password') $('backup-password').focus();
        say(out, text, 'error');
      }
    } catch (_) {
      say(out, t('errNetwork'), 'error');
    } finally {
      button.disabled = false;
    }
  }

  // ---- restore ------------------------------------------------------------------------------
  function passError(text) {
    const el = $('restore-pass-error');
    el.textContent = text;
    el.hidden = !text;
    const input = $('restore-passphrase');
    if (text) {
      input.setAttribute('aria-invalid', 'true');
      input.setAttribute('aria-describedby', el.id);
    } else {
      input.removeAttribute('aria-invalid');
    }
  }

  /// Forgets the file, the passphrase and the preview (after an apply, or on Cancel).
  function forget() {
    file = null;
    encrypted = false;
    plan = null;
    $('restore-passphrase').value = '';
    $('restore-pass-box').hidden = true;
    $('restore-file-name').hidden = true;
    $('restore-preview').disabled = true;
    $('restore-plan').hidden = true;
    passError('');
  }

  function renderFileName() {
    const el = $('restore-file-name');
    el.hidden = !file;
    if (file) el.textContent = t(encrypted ? 'restoreFileEncrypted' : 'restoreFile', { name: file.name });
  }

  async function choose() {
    const input = $('restore-file');
    const picked = input.files[0] || null;
    input.value = ''; // the same file can be chosen again
    forget();
    say($('restore-result'), '');
    if (!picked) return;
    if (picked.size > MAX_BACKUP_BYTES) {
      say($('restore-result'), `${t('restoreTooLarge')} ${t('nothingChanged')}`, 'error');
      return;
    }
    file = picked;
    const head = await file.slice(0, 64).text().catch(() => '');
    encrypted = AGE_HEADERS.some((h) => head.startsWith(h));
    renderFileName();
    $('restore-pass-box').hidden = !encrypted;
    $('restore-preview').disabled = false;
    // A plain backup is read at once; an encrypted one waits for its passphrase.
    if (encrypted) $('restore-passphrase').focus();
    else preview();
  }

  function send(apply) {
    const form = new FormData();
    form.append('file', file, file.name);
    const passphrase = $('restore-passphrase').value;
    if (passphrase) form.append('passphrase', passphrase);
    if (apply) form.append('apply', 'true');
    return fetch('api/restore', { method: 'POST', body: form, cache: 'no-store' });
  }

  function refused(r, doc) {
    const out = $('restore-result');
    let text;
    if (r.status === 429) {
      text = ctx.tooMany(r);
    } else if (doc.code === 'BACKUP_PASSPHRASE') {
      // The box knows the file is encrypted even when the page did not.
      encrypted = true;
      renderFileName();
      $('restore-pass-box').hidden = false;
      text = $('restore-passphrase').value ? t('restorePassWrong') : t('restorePassNeeded');
      passError(text);
      $('restore-passphrase').focus();
      $('restore-passphrase').select();
    } else if (doc.code === 'BACKUP_INVALID') {
      text = t('restoreInvalid', { message: doc.message || '' });
    } else if (doc.code === 'VALIDATION_ERROR') {
      text = t('restoreBadValue', { field: ctx.fieldLabel(doc.field) || doc.field || '?', message: doc.message || '' });
    } else if (r.status === 413 || doc.code === 'PAYLOAD_TOO_LARGE') {
      text = t('restoreTooLarge');
    } else {
      text = doc.message || t('errUnknown');
    }
    say(out, `${text} ${t('nothingChanged')}`, 'error');
  }

  /// The value of a change as the admin reads it.
  function shownValue(field, value) {
    if (value === null || value === undefined || value === '') return t('emptyValue');
    if (SECRET_KEY.test(field) && (value === 'set' || value === 'not set')) {
      return value === 'set' ? t('secretSetShort') : t('secretUnsetShort');
    }
    return ctx.fieldValue(field, value);
  }

  /// What the page calls something a restore does not bring ("wifi", "uploadPin").
  function itemName(item) {
    const known = { adminPassword: t('adminPassword'), wifi: 'Wi-Fi', tunnel: 'Cloudflare Tunnel', hostname: t('factHostname') };
    return known[item] || ctx.fieldLabel(item) || item;
  }

  function renderPlan() {
    const box = $('restore-plan');
    box.hidden = !plan;
    if (!plan) return;
    const changes = plan.changes || [];
    const ul = $('restore-changes');
    ul.replaceChildren();
    for (const change of changes) {
      const li = document.createElement('li');
      li.dataset.field = change.field;
      const name = document.createElement('strong');
      name.className = 'change-field';
      name.textContent = ctx.fieldLabel(change.field) || change.field;
      const key = document.createElement('code');
      key.textContent = change.field;
      const values = document.createElement('p');
      values.className = 'change-values';
      // Seen as "old → new"; heard as "was old, becomes new".
      const was = document.createElement('span');
      was.className = 'visually-hidden';
      was.textContent = `${t('changeWas')} `;
      const from = document.createElement('span');
      from.className = 'from';
      from.textContent = shownValue(change.field, change.from);
      const arrow = document.createElement('span');
      arrow.setAttribute('aria-hidden', 'true');
      arrow.textContent = ' → ';
      const becomes = document.createElement('span');
      becomes.className = 'visually-hidden';
      becomes.textContent = `, ${t('changeNow')} `;
      const to = document.createElement('span');
      to.className = 'to';
      to.textContent = shownValue(change.field, change.to);
      values.append(was, from, arrow, becomes, to);
      li.append(name, ' ', key, values);
      ul.append(li);
    }
    if (changes.length === 0) {
      const li = document.createElement('li');
      li.textContent = t('restoreNoChanges');
      ul.append(li);
    }
    $('restore-unchanged').textContent = t('restoreUnchanged', { n: plan.unchanged || 0 });
    const notes = [];
    for (const item of plan.notRestored || []) notes.push(t('restoreNotRestored', { item: itemName(item.item), reason: item.reason || '' }));
    for (const w of plan.warnings || []) notes.push(w);
    if (plan.restartNeeded) notes.push(t('restoreRestart'));
    const notesBox = $('restore-notes');
    notesBox.replaceChildren();
    notesBox.hidden = notes.length === 0;
    if (notes.length) {
      const list = document.createElement('ul');
      for (const n of notes) {
        const li = document.createElement('li');
        li.textContent = n;
        list.append(li);
      }
      notesBox.append(list);
    }
    const apply = $('restore-apply');
    apply.hidden = changes.length === 0;
    apply.textContent = t('restoreApply', { n: changes.length });
  }

  function busy(on) {
    for (const id of ['restore-preview', 'restore-apply', 'restore-cancel']) $(id).disabled = on;
    area.setAttribute('aria-busy', String(on));
  }

  // One round trip of the restore form, saying `working` meanwhile. `null` when it did not
  // come back (no network) or asked for a login; both already told the user.
  async function exchange(applyIt, out, working) {
    busy(true);
    say(out, working);
    let r;
    try {
      r = await send(applyIt);
    } catch (_) {
      busy(false);
      say(out, t('errNetwork'), 'error');
      return null;
    }
    const doc = await body(r);
    busy(false);
    if (r.status === 401) {
      say(out, '');
      ctx.needLogin();
      return null;
    }
    return { r, doc };
  }

  async function preview() {
    if (!file) return;
    passError('');
    const out = $('restore-result');
    if (encrypted && !$('restore-passphrase').value) {
      passError(t('restorePassNeeded'));
      $('restore-passphrase').focus();
      return;
    }
    const answer = await exchange(false, out, t('restoreReading'));
    if (!answer) return;
    const { r, doc } = answer;
    if (!r.ok) {
      plan = null;
      renderPlan();
      refused(r, doc);
      return;
    }
    say(out, '');
    plan = doc;
    renderPlan();
    const title = $('restore-plan-title');
    title.focus();
    title.scrollIntoView({ block: 'start', behavior: 'instant' });
  }

  async function apply() {
    if (!file || !plan) return;
    const out = $('restore-result');
    const answer = await exchange(true, out, t('restoreApplying'));
    if (!answer) return;
    const { r, doc } = answer;
    if (!r.ok || !doc.applied) {
      refused(r, doc);
      return;
    }
    const n = (doc.changes || []).length;
    forget();
    say(out, `${t('restoreApplied', { n })}${doc.restartNeeded ? ` ${t('restoreRestart')}` : ''}`, 'ok');
    out.focus();
  }

  function cancel() {
    forget();
    say($('restore-result'), t('restoreCancelled'));
  }

  $('backup-secrets').addEventListener('change', () => {
    renderSecretFields();
    if ($('backup-secrets').checked) ($('backup-password-box').hidden ? $('backup-passphrase') : $('backup-password')).focus();
    else clearSecrets();
  });
  $('backup-form').addEventListener('submit', (e) => {
    e.preventDefault();
    download();
  });
  $('restore-file').addEventListener('change', choose);
  // Preview, or Enter in the passphrase field.
  $('restore-form').addEventListener('submit', (e) => {
    e.preventDefault();
    preview();
  });
  $('restore-apply').addEventListener('click', apply);
  $('restore-cancel').addEventListener('click', cancel);
  ctx.onLanguage(() => {
    renderFileName();
    renderPlan();
  });

  return {
    show() {
      renderSecretFields();
      // The secrets box is decided (it starts disabled in the page): tests wait for this.
      area.dataset.ready = '1';
    },
  };
}
