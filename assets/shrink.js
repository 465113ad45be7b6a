// Shrinks camera photos on the phone before upload when the box would shrink them anyway
// (GET /api/settings/info, phoneLongEdge > 0): a 12-megapixel JPEG of 3-5 MB becomes a
// 2016-pixel one of well under 1 MB, so a slow clinic Wi-Fi carries a fifth of the bytes.
// The photo is turned upright by its EXIF orientation as it is decoded, and the new JPEG
// carries no EXIF at all, so the box never turns it twice. Anything this browser cannot do
// (decode the file, apply the orientation, encode a JPEG) sends the original instead, and
// the box answers it as usual. Shrunk photos live in memory only, until the page drops them.
// The work runs in two workers (shrink-worker.js) where the browser has OffscreenCanvas
// there, on the page otherwise.

/// JPEG quality of the shrunk photo: high enough that the box's own resampling to half this
/// size, not this encoding, decides what the PACS gets.
const QUALITY = 0.92;

/// The longest a phone may take over one photo before the original goes instead.
const PHOTO_TIMEOUT_MS = 30000;

// A 2x1 JPEG whose EXIF says "turn 90 degrees clockwise": a browser that applies EXIF
// orientation decodes it as 1x2. One that does not would send sideways photos upright-less.
const ORIENTATION_PROBE_BASE64 = '/9j/4AAQSkZJRgABAQAAAQABAAD/4QAiRXhpZgAATU0AKgAAAAgAAQESAAMAAAABAAYAAAAAAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAABAAIDASIAAhEBAxEB/8QAFQABAQAAAAAAAAAAAAAAAAAAAAX/xAAUEAEAAAAAAAAAAAAAAAAAAAAA/8QAFQEBAQAAAAAAAAAAAAAAAAAABAb/xAAUEQEAAAAAAAAAAAAAAAAAAAAA/9oADAMBAAIRAxEAPwCcAGo3/9k=';

function orientationProbe() {
  return new Blob([Uint8Array.from(atob(ORIENTATION_PROBE_BASE64), (c) => c.charCodeAt(0))], { type: 'image/jpeg' });
}

let orientationApplied = null;

async function appliesOrientation() {
  if (orientationApplied === null) {
    try {
      const probe = await createImageBitmap(orientationProbe(), { imageOrientation: 'from-image' });
      orientationApplied = probe.width === 1 && probe.height === 2;
      probe.close();
    } catch (_) {
      orientationApplied = false;
    }
  }
  return orientationApplied;
}

// HEIF brands (HEIC from iPhones) and AVIF: formats the box refuses, worth converting
// whatever their size when this browser reads them.
const HEIF_BRANDS = new Set(['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'hevm', 'hevs', 'mif1', 'msf1', 'avif', 'avis']);

/// 'jpeg', 'heif' or '' (anything else, sent as it is: PNG and the like are not camera
/// photos, and making them JPEG would add a lossy step the box would not have taken).
async function kindOf(file) {
  const head = new Uint8Array(await file.slice(0, 12).arrayBuffer());
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'jpeg';
  if (head.length >= 12 && String.fromCharCode(...head.slice(4, 8)) === 'ftyp'
    && HEIF_BRANDS.has(String.fromCharCode(...head.slice(8, 12)))) return 'heif';
  return '';
}

/// Draws `bitmap` at w x h on a fresh canvas and encodes it as JPEG; null when the canvas
/// gives anything but a JPEG (a browser without a JPEG encoder falls back to PNG).
export async function offscreenJpeg(bitmap, w, h, quality) {
  const canvas = new OffscreenCanvas(w, h);
  draw(canvas, bitmap, w, h);
  const blob = await canvas.convertToBlob({ type: 'image/jpeg', quality });
  canvas.width = 0; // let the pixels go now, not at the next collection
  canvas.height = 0;
  return blob.type === 'image/jpeg' ? blob : null;
}

async function pageJpeg(bitmap, w, h, quality) {
  const canvas = document.createElement('canvas');
  canvas.width = w;
  canvas.height = h;
  draw(canvas, bitmap, w, h);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', quality));
  canvas.width = 0;
  canvas.height = 0;
  return blob && blob.type === 'image/jpeg' ? blob : null;
}

function draw(canvas, bitmap, w, h) {
  const ctx = canvas.getContext('2d', { alpha: false });
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(bitmap, 0, 0, w, h);
}

/// The long edge the box makes of a JPEG whose long edge is `long` when its limit is `limit`
/// (src/convert/photo.rs): decoded at the smallest DCT scale of 1/8, 1/4 and 1/2 that
/// reaches 95% of the limit, then resampled down to the limit if still above it. A
/// 4032-pixel phone photo becomes 1008 pixels for 1024.
function boxLongEdge(long, limit) {
  const want = Math.ceil((limit * 95) / 100);
  const eighths = [1, 2, 4].find((e) => Math.ceil((long * e) / 8) >= want) || 8;
  return Math.min(Math.ceil((long * eighths) / 8), limit);
}

/// The long edge to shrink a photo to on the phone: twice what the box will make of it, so
/// the box's own scaling (a DCT halving) sets the final quality and the object has exactly
/// the size the original would have given; at most `cap`, what a phone can draw.
export function phoneLongEdge(long, { limit, cap }) {
  return Math.min(2 * boxLongEdge(long, limit), cap);
}

// WebCodecs' ImageDecoder decodes a JPEG straight at a fraction of its size (libjpeg-turbo's
// DCT scaling: half of a 4032-pixel photo costs a third less than all of it, and needs no
// resampling after), and marks the frame's EXIF rotation and flip, which createImageBitmap
// then applies. Used where the probe above comes out upright through it.
let decoderOrients = null;

async function imageDecoderOrients() {
  if (decoderOrients === null) {
    decoderOrients = false;
    if (typeof ImageDecoder !== 'undefined') {
      try {
        const probe = await decodeFrame(orientationProbe(), { width: 2, height: 1 }, 1);
        decoderOrients = probe.width === 1 && probe.height === 2;
        probe.close();
      } catch (_) { /* createImageBitmap it is */ }
    }
  }
  return decoderOrients;
}

/// The JPEG decoded at about `scale` of its `size` (the decoder takes the next DCT scale up),
/// upright.
async function decodeFrame(file, size, scale) {
  const decoder = new ImageDecoder({
    data: file.stream(),
    type: 'image/jpeg',
    desiredWidth: Math.ceil(size.width * scale),
    desiredHeight: Math.ceil(size.height * scale),
  });
  try {
    const { image } = await decoder.decode();
    try {
      return await createImageBitmap(image);
    } finally {
      image.close();
    }
  } finally {
    decoder.close();
  }
}

/// One photo: `{ blob }` (a JPEG, upright, no EXIF) or `{ original: why }`. `target` is
/// the box's `{ limit, cap }` (GET /api/settings/info: resizeMax, phoneLongEdge); `size`
/// what jpegSize said of the file. `encode(bitmap, w, h, quality)` is offscreenJpeg in the
/// worker, pageJpeg on the page; `useDecoder` false keeps to createImageBitmap (what
/// browsers without ImageDecoder do).
export async function shrinkPhoto(file, { target, size, useDecoder }, encode) {
  const kind = await kindOf(file);
  if (!kind) return { original: 'format' };
  if (!(await appliesOrientation())) return { original: 'orientation' };
  // A JPEG's size is in its header: one already small enough is never decoded.
  const sourceLong = kind === 'jpeg' && size ? Math.max(size.width, size.height) : 0;
  const sourceEdge = sourceLong && phoneLongEdge(sourceLong, target);
  if (sourceLong && sourceLong <= sourceEdge) return { original: 'small' };
  let bitmap;
  try {
    bitmap = sourceLong && useDecoder && (await imageDecoderOrients())
      ? await decodeFrame(file, size, sourceEdge / sourceLong)
      : await createImageBitmap(file, { imageOrientation: 'from-image' });
  } catch (_) {
    return { original: 'decode' }; // the box says what is wrong with it
  }
  try {
    const long = Math.max(bitmap.width, bitmap.height);
    // From the source's size: a DCT-scaled decode is already part of the way there.
    const edge = sourceEdge || phoneLongEdge(long, target);
    // A JPEG whose header hid its size, found small enough: sent untouched, as above.
    if (kind === 'jpeg' && !sourceLong && long <= edge) return { original: 'small' };
    const scale = Math.min(1, edge / long);
    const w = Math.max(1, Math.round(bitmap.width * scale));
    const h = Math.max(1, Math.round(bitmap.height * scale));
    const blob = await encode(bitmap, w, h, QUALITY);
    if (!blob) return { original: 'encode' };
    if (kind === 'jpeg' && blob.size >= file.size) return { original: 'larger' };
    return { blob };
  } catch (_) {
    return { original: 'encode' };
  } finally {
    bitmap.close();
  }
}

/// Width and height from a JPEG's frame header, or null when it is not in the first
/// 256 KiB (EXIF comes first and holds at most 64 KiB, thumbnail included).
export async function jpegSize(file) {
  const b = new Uint8Array(await file.slice(0, 256 * 1024).arrayBuffer());
  let i = 2;
  while (i + 9 < b.length && b[0] === 0xff && b[1] === 0xd8) {
    if (b[i] !== 0xff) return null;
    const marker = b[i + 1];
    if (marker === 0xff) { i += 1; continue; } // fill byte
    const length = (b[i + 2] << 8) | b[i + 3];
    // SOF0-SOF15 but DHT (C4), JPG (C8) and DAC (CC): precision, height, width.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      const height = (b[i + 5] << 8) | b[i + 6];
      const width = (b[i + 7] << 8) | b[i + 8];
      return width && height ? { width, height } : null;
    }
    if (marker === 0xda || marker === 0xd9) return null;
    i += 2 + length;
  }
  return null;
}

/// Decoded pixels the phone may hold at once: two 12-megapixel photos shrink side by side
/// (half the wait on a phone's several cores); a 48-megapixel one, or one whose size the
/// header does not tell (HEIC), goes alone.
const PIXEL_BUDGET = 25e6;
const LANES = 2;

/// The page's shrinker: `prepare(file, target)` resolves to the Blob to send in place of
/// `file`, or null to send `file` itself. Photos start in the order given. `useDecoder`:
/// see shrinkPhoto.
export function createShrinker({ useDecoder = true } = {}) {
  let workerFailed = typeof Worker === 'undefined' || typeof OffscreenCanvas === 'undefined';
  const queue = [];
  const idle = [];
  let running = 0;
  let runningPixels = 0;
  let nextId = 1;
  const waiting = new Map();

  function startWorker() {
    const worker = new Worker(new URL('./shrink-worker.js', import.meta.url), { type: 'module' });
    worker.addEventListener('message', (e) => {
      const done = waiting.get(e.data.id);
      if (done) done(e.data);
    });
    // A worker that cannot start (no module workers): its photos go on the page.
    worker.addEventListener('error', () => {
      workerFailed = true;
      for (const done of waiting.values()) done({ unsupported: true });
    });
    return worker;
  }

  function inWorker(file, job) {
    const worker = idle.pop() || startWorker();
    const id = nextId++;
    return new Promise((resolve) => {
      waiting.set(id, (answer) => {
        waiting.delete(id);
        idle.push(worker);
        resolve(answer);
      });
      worker.postMessage({ id, file, job });
    });
  }

  async function one(file, job) {
    let answer = workerFailed ? { unsupported: true } : await inWorker(file, job);
    if (answer.unsupported) {
      workerFailed = true;
      if (typeof createImageBitmap === 'undefined') return null;
      answer = await shrinkPhoto(file, job, pageJpeg);
    }
    return answer.blob || null;
  }

  function withTimeout(work) {
    let timer;
    const late = new Promise((resolve) => { timer = setTimeout(() => resolve(null), PHOTO_TIMEOUT_MS); });
    return Promise.race([work, late]).finally(() => clearTimeout(timer));
  }

  // The first in line starts when a lane is free and its pixels fit beside those being
  // decoded (or nothing is); on the page itself (no worker) one at a time.
  function pump() {
    while (queue.length) {
      const task = queue[0];
      const lanes = workerFailed ? 1 : LANES;
      const cost = Math.min(task.pixels, PIXEL_BUDGET);
      if (running >= lanes || (running > 0 && runningPixels + cost > PIXEL_BUDGET)) return;
      queue.shift();
      running += 1;
      runningPixels += cost;
      withTimeout(one(task.file, task.job).catch(() => null)).then((blob) => {
        running -= 1;
        runningPixels -= cost;
        task.resolve(blob);
        pump();
      });
    }
  }

  return {
    /// Starts the workers before the first photo, so it does not wait for them.
    warm() {
      while (!workerFailed && idle.length + running < LANES) idle.push(startWorker());
    },
    prepare(file, target) {
      return new Promise((resolve) => {
        // The header is read once, here: for the budget and for the shrinking itself.
        jpegSize(file).catch(() => null).then((size) => {
          const pixels = size ? size.width * size.height : Infinity;
          queue.push({ file, job: { target, size, useDecoder }, pixels, resolve });
          pump();
        });
      });
    },
  };
}
