// What the browser benches share: the gateway started in a scratch folder, Debian's
// Chromium, and the median.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'tests/browser/package.json'));
const { chromium } = require('playwright-core');

/// The release build the benches measure: BIN, or target/release/photo-pacs under
/// CARGO_TARGET_DIR or ./target.
export const BIN = process.env.BIN || join(process.env.CARGO_TARGET_DIR || join(root, 'target'), 'release/photo-pacs');

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/// BIN on 127.0.0.1 (a free port) in a new scratch folder, with `env` on top of PATH:
/// { base, stop }.
export async function startGateway(env) {
  statSync(BIN); // a clear error when the release build is missing
  const dir = mkdtempSync(join(tmpdir(), 'photo-pacs-bench-'));
  const child = spawn(BIN, [], {
    cwd: dir,
    env: { PATH: process.env.PATH, PHOTO_PACS_LISTEN: '127.0.0.1:0', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const base = await new Promise((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => reject(new Error(`the gateway did not start:\n${log}`)), 20000);
    child.stderr.on('data', (d) => {
      log += d;
      const m = /listening on (http:\/\/[\d.:]+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(`${m[1]}/`);
      }
    });
    child.on('exit', (code) => reject(new Error(`the gateway exited (${code}):\n${log}`)));
  });
  return { base, stop: () => { child.kill('SIGTERM'); rmSync(dir, { recursive: true, force: true }); } };
}

/// Debian's Chromium (or CHROMIUM), headless, with the flags every test here uses.
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}
