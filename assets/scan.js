// Barcode decoding for the "scan wristband" button, loaded only when it is pressed.
//
// The browser's own BarcodeDetector when it exists and reads every configured format;
// otherwise ZXing compiled to WebAssembly, served by the box itself
// (vendor/zxing-wasm, loaded here on first use: about 1 MB, never with the page).
//
// scanLive(): live video in a dialog (needs a secure context: HTTPS through the tunnel, or
// localhost). scanFile(): one still photo (plain HTTP on the clinic LAN).
// Both answer the code's text, '' when no code was found, null when the user cancelled;
// scanLive() answers undefined when there is no camera to use.

// BarcodeDetector's format names (what the box's settings say) and ZXing's.
const ZXING_FORMATS = {
  aztec: 'Aztec',
  code_128: 'Code128',
  code_39: 'Code39',
  code_93: 'Code93',
  codabar: 'Codabar',
  data_matrix: 'DataMatrix',
  ean_13: 'EAN13',
  ean_8: 'EAN8',
  itf: 'ITF',
  pdf417: 'PDF417',
  qr_code: 'QRCode',
  upc_a: 'UPCA',
  upc_e: 'UPCE',
};
const DEFAULT_FORMATS = ['code_128', 'code_39', 'qr_code', 'data_matrix', 'pdf417'];
// A still photo is scaled down to this longest edge before decoding (a 12 MP photo is
// 48 MB of pixels; wristband codes stay readable well below that).
const STILL_MAX_EDGE = 2400;
const LIVE_INTERVAL_MS = 150;

let engine = null; // Promise of { name, detect(source) -> Promise<string|null> }

function formatsOf(formats) {
  return Array.isArray(formats) && formats.length ? formats : DEFAULT_FORMATS;
}

async function nativeEngine(formats) {
  if (typeof window.BarcodeDetector !== 'function') return null;
  try {
    const supported = await window.BarcodeDetector.getSupportedFormats();
    if (!formats.every((f) => supported.includes(f))) return null;
    const detector = new window.BarcodeDetector({ formats });
    return {
      name: 'BarcodeDetector',
      async detect(source) {
        const found = await detector.detect(source);
        return found.length ? found[0].rawValue : null;
      },
    };
  } catch (_) {
    return null;
  }
}

async function zxingEngine(formats) {
  const zxing = await import('./vendor/zxing-wasm/es/reader/index.js');
  const wasm = new URL('./vendor/zxing-wasm/reader/zxing_reader.wasm', import.meta.url).href;
  // The package would fetch its .wasm from a CDN: the box serves it instead.
  await zxing.prepareZXingModule({
    overrides: { locateFile: (path, prefix) => (path.endsWith('.wasm') ? wasm : prefix + path) },
    fireImmediately: true,
  });
  const options = {
    formats: formats.map((f) => ZXING_FORMATS[f]).filter(Boolean),
    tryHarder: true,
    tryRotate: true,
    tryInvert: true,
    tryDownscale: true,
    maxNumberOfSymbols: 1,
  };
  performance.mark('photo-pacs-decoder-ready'); // for bench/first_load.mjs
  return {
    name: 'zxing-wasm',
    async detect(imageData) {
      const found = await zxing.readBarcodes(imageData, options);
      const hit = found.find((r) => r.isValid && r.text);
      return hit ? hit.text : null;
    },
  };
}

/// Loads the decoder for `formats` (the box's barcodeFormats); the first call decides which.
export function prepare(formats) {
  if (!engine) {
    const wanted = formatsOf(formats);
    // ?decoder=zxing: the WebAssembly decoder even where the browser has its own (tests).
    const zxingOnly = new URLSearchParams(window.location.search).get('decoder') === 'zxing';
    engine = (async () => (!zxingOnly && (await nativeEngine(wanted))) || zxingEngine(wanted))();
    engine.catch(() => { engine = null; });
  }
  return engine;
}

/// The pixels of `source` (an ImageBitmap or a playing video) at most `maxEdge` wide or high.
function pixels(source, width, height, maxEdge, canvas) {
  const scale = Math.min(1, maxEdge / Math.max(width, height));
  const w = Math.max(1, Math.round(width * scale));
  const h = Math.max(1, Math.round(height * scale));
  const c = canvas || document.createElement('canvas');
  if (c.width !== w) c.width = w;
  if (c.height !== h) c.height = h;
  const g = c.getContext('2d', { willReadFrequently: true });
  g.drawImage(source, 0, 0, w, h);
  return g.getImageData(0, 0, w, h);
}

/// Decodes one photo (a File from the camera or the album).
export async function scanFile(file, formats) {
  const decoder = await prepare(formats);
  const bitmap = await createImageBitmap(file);
  try {
    const source = decoder.name === 'BarcodeDetector'
      ? bitmap
      : pixels(bitmap, bitmap.width, bitmap.height, STILL_MAX_EDGE);
    return (await decoder.detect(source)) || '';
  } finally {
    bitmap.close();
  }
}

/// Scans live video in `ui.dialog` until a code is read or `ui.cancel` is pressed.
export async function scanLive(formats, ui) {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: false,
      video: { facingMode: { ideal: 'environment' }, width: { ideal: 1280 }, height: { ideal: 720 } },
    });
  } catch (_) {
    return undefined; // refused, or no camera
  }
  const decoderReady = prepare(formats);
  const { dialog, video, cancel } = ui;
  let stopped = false;
  let timer = null;
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  const stop = (result) => {
    if (stopped) return;
    stopped = true;
    clearTimeout(timer);
    cancel.removeEventListener('click', onCancel);
    dialog.removeEventListener('cancel', onCancel);
    for (const track of stream.getTracks()) track.stop();
    video.srcObject = null;
    if (dialog.open) dialog.close();
    finish(result);
  };
  const onCancel = (e) => {
    if (e) e.preventDefault();
    stop(null);
  };
  cancel.addEventListener('click', onCancel);
  dialog.addEventListener('cancel', onCancel); // Escape, or the phone's back gesture
  video.srcObject = stream;
  dialog.showModal();
  try {
    await video.play();
    const decoder = await decoderReady;
    const canvas = document.createElement('canvas');
    const tick = async () => {
      if (stopped) return;
      if (video.readyState >= 2 && video.videoWidth) {
        const source = decoder.name === 'BarcodeDetector'
          ? video
          : pixels(video, video.videoWidth, video.videoHeight, 1280, canvas);
        const code = await decoder.detect(source).catch(() => null);
        if (code) {
          if (navigator.vibrate) navigator.vibrate(60);
          stop(code);
          return;
        }
      }
      timer = setTimeout(tick, LIVE_INTERVAL_MS);
    };
    tick();
  } catch (e) {
    stop(null);
    throw e;
  }
  return done;
}
