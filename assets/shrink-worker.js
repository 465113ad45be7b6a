// Shrinks one photo at a time off the page's main thread (see shrink.js), so the page stays
// responsive while a 12-megapixel photo is decoded. Answers { id, blob } or { id, original }
// and { id, unsupported } where this browser has no OffscreenCanvas in workers.
import { offscreenJpeg, shrinkPhoto } from './shrink.js';

self.addEventListener('message', async (e) => {
  const { id, file, job } = e.data;
  if (typeof OffscreenCanvas === 'undefined' || typeof createImageBitmap === 'undefined') {
    self.postMessage({ id, unsupported: true });
    return;
  }
  self.postMessage({ id, ...(await shrinkPhoto(file, job, offscreenJpeg)) });
});
