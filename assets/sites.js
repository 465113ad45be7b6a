// Where on the body each photo was taken: a region (the box's list, head to toe, from
// api/settings/info `bodySites`), a side for paired regions, and a short note, per photo.
// A new photo takes the previous photo's region and side ("same as previous"), so a series
// of the same wound needs no taps; the note is not carried (see `carried`). The choices live
// on the page's photo objects, in memory only, and go with the upload as bodySite[],
// laterality[] and bodySiteNote[], one entry per photo in image order.

const NOTE_MAX = 64;
const SIDES = ['L', 'R', 'B'];
// The box lists the regions head to toe; a group starts at each of these keys. A region the
// page does not know yet joins the group before it, under the box's English name.
const GROUP_STARTS = { head: 'siteGroupHead', chest: 'siteGroupTrunk', shoulder: 'siteGroupArm', hip: 'siteGroupLeg' };

export function blankSite() {
  return { key: '', side: '', note: '' };
}

export function initSites(ctx) {
  const { t } = ctx;
  // What the next photo gets: the region and side of the photo before it.
  let carry = blankSite();

  function regions() {
    const list = ctx.info().bodySites;
    return Array.isArray(list) ? list : [];
  }

  function region(key) {
    return key ? regions().find((r) => r.key === key) : undefined;
  }

  function regionName(r) {
    const key = `region${r.key.charAt(0).toUpperCase()}${r.key.slice(1)}`;
    const name = t(key);
    return name === key ? r.meaning : name;
  }

  /// The short label on a photo's thumbnail ("左前臂", "Forearm (L)"), or '' with no region.
  function label(site) {
    const r = region(site.key);
    if (!r) return '';
    const name = regionName(r);
    return r.paired && site.side ? t('siteTag', { site: name, side: t(`sideShort${site.side}`) }) : name;
  }

  /// The region and side of the previous photo for a new one. Not the note: it usually says
  /// something about that one picture ("before debridement", "with ruler"), and a note
  /// carried unseen into a later photo would put a wrong sentence into the record; an empty
  /// note costs nothing.
  function carried() {
    return { ...carry, note: '' };
  }

  /// After a change to the list or to a photo's site: the next photo follows the last one.
  /// An emptied list keeps what its last photo had (a blurred photo removed and taken again).
  function follow(images) {
    const last = images[images.length - 1];
    if (last) carry = { key: last.site.key, side: last.site.side, note: '' };
  }

  function reset() {
    carry = blankSite();
  }

  /// The controls of photo `i` (0-based): region select, side buttons (paired regions
  /// only) and the note. `changed` runs after each change, with the photo's new label.
  function editor(img, i, changed) {
    const n = i + 1;
    const box = document.createElement('div');
    box.className = 'site';

    const selectLabel = document.createElement('label');
    selectLabel.className = 'visually-hidden';
    selectLabel.htmlFor = `site-${i}`;
    selectLabel.textContent = t('siteLabel', { n });
    const select = document.createElement('select');
    select.id = `site-${i}`;
    select.className = 'site-region';
    const none = document.createElement('option');
    none.value = '';
    none.textContent = t('siteNone');
    select.append(none);
    let group = null;
    for (const r of regions()) {
      if (GROUP_STARTS[r.key] || !group) {
        group = document.createElement('optgroup');
        group.label = GROUP_STARTS[r.key] ? t(GROUP_STARTS[r.key]) : '';
        select.append(group);
      }
      const option = document.createElement('option');
      option.value = r.key;
      option.textContent = regionName(r);
      group.append(option);
    }
    if (!region(img.site.key)) img.site.key = '';
    select.value = img.site.key;

    const sides = document.createElement('div');
    sides.className = 'site-side';
    sides.setAttribute('role', 'group');
    sides.setAttribute('aria-label', t('sideGroup', { n }));
    const buttons = SIDES.map((side) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.side = side;
      b.textContent = t(`side${side}`);
      b.addEventListener('click', () => {
        // A second tap on the chosen side takes it back: no side.
        img.site.side = img.site.side === side ? '' : side;
        update();
      });
      sides.append(b);
      return b;
    });

    const noteLabel = document.createElement('label');
    noteLabel.className = 'visually-hidden';
    noteLabel.htmlFor = `site-note-${i}`;
    noteLabel.textContent = t('siteNoteLabel', { n });
    const note = document.createElement('input');
    note.id = `site-note-${i}`;
    note.className = 'site-note';
    note.maxLength = NOTE_MAX;
    note.autocomplete = 'off';
    note.enterKeyHint = 'done';
    note.placeholder = t('siteNotePlaceholder');
    note.value = img.site.note;
    note.addEventListener('input', () => {
      img.site.note = note.value;
    });
    // Enter on the phone's keyboard closes it; it never sends the study.
    note.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter') return;
      e.preventDefault();
      note.blur();
    });

    function update() {
      const r = region(img.site.key);
      // A side only for a paired region: an unpaired one, or none, drops it.
      if (!r || !r.paired) img.site.side = '';
      sides.hidden = !(r && r.paired);
      for (const b of buttons) b.setAttribute('aria-pressed', String(b.dataset.side === img.site.side));
      changed(label(img.site));
    }

    select.addEventListener('change', () => {
      const before = region(img.site.key);
      img.site.key = select.value;
      const after = region(img.site.key);
      // Another paired region keeps the side chosen (left forearm, then left hand).
      if (!before || !after || !after.paired) img.site.side = '';
      update();
    });

    box.append(selectLabel, select, sides, noteLabel, note);
    const r = region(img.site.key);
    sides.hidden = !(r && r.paired);
    if (!(r && r.paired)) img.site.side = '';
    for (const b of buttons) b.setAttribute('aria-pressed', String(b.dataset.side === img.site.side));
    return box;
  }

  /// The three arrays, one entry per photo in image order ('' where none).
  function append(data, images) {
    for (const img of images) {
      const r = region(img.site.key);
      data.append('bodySite[]', r ? r.key : '');
      data.append('laterality[]', r && r.paired ? img.site.side : '');
      data.append('bodySiteNote[]', img.site.note.trim());
    }
  }

  return {
    enabled: () => regions().length > 0,
    carried,
    follow,
    reset,
    label,
    editor,
    append,
  };
}
