// Photo PACS capture page. Form values and photos live only in this page's memory.
'use strict';

const images = [];
const form = document.getElementById('study');
const send = document.getElementById('send');
const thumbs = document.getElementById('thumbs');
const result = document.getElementById('result');
const progress = document.getElementById('progress');
let sending = false;

const MESSAGES = {
  VALIDATION_ERROR: 'A field is missing or not valid',
  PACS_TIMEOUT: 'The PACS did not answer in time',
  PACS_REJECTED: 'The PACS refused the connection or the images',
  PAYLOAD_TOO_LARGE: 'The images are too large',
};

function refresh() {
  const hasId = document.getElementById('patientId').value.trim() !== '';
  send.disabled = sending || !hasId || images.length === 0;
}

function addFiles(list) {
  for (const file of list) {
    const url = URL.createObjectURL(file);
    images.push({ file, url });
  }
  renderThumbs();
}

function renderThumbs() {
  thumbs.replaceChildren();
  images.forEach((img, i) => {
    const li = document.createElement('li');
    const pic = document.createElement('img');
    pic.src = img.url;
    pic.alt = 'Photo ' + (i + 1);
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.textContent = '×';
    remove.setAttribute('aria-label', 'Remove photo ' + (i + 1));
    remove.addEventListener('click', () => {
      URL.revokeObjectURL(img.url);
      images.splice(i, 1);
      renderThumbs();
    });
    li.append(pic, remove);
    thumbs.append(li);
  });
  refresh();
}

function show(text, ok) {
  result.textContent = text;
  result.className = ok ? 'ok' : 'error';
}

form.addEventListener('input', refresh);
for (const id of ['camera', 'album']) {
  const input = document.getElementById(id);
  input.addEventListener('change', () => {
    addFiles(input.files);
    input.value = '';
  });
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (send.disabled) return;
  sending = true;
  refresh();
  const data = new FormData();
  for (const [name, value] of new FormData(form)) {
    if (typeof value === 'string' && value !== '') data.append(name, value);
  }
  images.forEach((img) => data.append('images[]', img.file, img.file.name));
  const xhr = new XMLHttpRequest();
  xhr.open('POST', 'api/studies');
  progress.hidden = false;
  progress.value = 0;
  xhr.upload.addEventListener('progress', (e) => {
    if (e.lengthComputable) progress.value = e.loaded / e.total;
  });
  xhr.addEventListener('loadend', () => {
    sending = false;
    progress.hidden = true;
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status === 200) {
      show('Sent: ' + body.instances.length + ' image(s).', true);
      images.forEach((img) => URL.revokeObjectURL(img.url));
      images.length = 0;
      form.reset();
      renderThumbs();
    } else if (xhr.status === 0) {
      show('The gateway cannot be reached. Check the Wi-Fi and try again.', false);
    } else {
      const base = MESSAGES[body.code] || 'Sending failed';
      show(base + (body.message ? ': ' + body.message : ''), false);
    }
    refresh();
  });
  xhr.send(data);
});

fetch('api/settings/info')
  .then((r) => r.json())
  .then((info) => { document.getElementById('demo').hidden = info.pacsBackend !== 'mock'; })
  .catch(() => {});
refresh();
