// Service worker: keeps the app shell (page, script, styles, icons) for when the gateway
// cannot be reached, so the phone shows a clear "unreachable" screen instead of a browser
// error. It never stores an API answer, a photo or a form value: only these files.
// The barcode decoder (scan.js, vendor/) is not among them: it is about 1 MB that most
// phones never need, loaded from the box when "Scan wristband" is pressed.
'use strict';

const CACHE = 'photo-pacs-shell-v4';
const SHELL = [
  './',
  'index.html',
  'app.js',
  'patient.js',
  'worklist.js',
  'sites.js',
  'shrink.js',
  'shrink-worker.js',
  'i18n.js',
  'styles.css',
  'manifest.webmanifest',
  'icons/icon.svg',
  'icons/icon-192.png',
  'icons/icon-512.png',
  'icons/maskable-512.png',
];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

function isShell(url) {
  if (url.origin !== self.location.origin) return false;
  const scope = new URL(self.registration.scope);
  const path = url.pathname.startsWith(scope.pathname) ? url.pathname.slice(scope.pathname.length) : null;
  return path !== null && (path === '' || SHELL.includes(path));
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  // Everything else (the API, uploads, health checks) goes straight to the network and is
  // never cached.
  if (request.method !== 'GET' || !isShell(url)) return;
  // Network first, so an updated gateway is seen at once; the copy only when offline.
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(request, copy));
        }
        return response;
      })
      .catch(() => caches.match(request).then((hit) => hit || caches.match('index.html'))),
  );
});
