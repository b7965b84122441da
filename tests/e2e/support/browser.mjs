// Headless Chromium (Debian's `chromium`), driven from the command line:
// the DOM after the page rendered, and a screenshot.
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const BIN = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => fs.existsSync(p));

// Without the background-networking flags Chromium keeps dialling out, which
// this closed network refuses.
function flags(profile) {
  return [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", `--user-data-dir=${profile}`,
  ];
}

async function withProfile(fn) {
  if (!BIN) throw new Error("chromium is not installed: run `scripts/setup.sh --test` (make test does)");
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "chromium-"));
  try {
    return await fn(profile);
  } finally {
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

export function dumpDom(url) {
  return withProfile(async (profile) => {
    const { stdout } = await run(BIN, [...flags(profile), "--dump-dom", url], { timeout: 60_000, maxBuffer: 10 << 20 });
    return stdout;
  });
}

export function screenshot(url, file, { width = 1100, height = 700 } = {}) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  return withProfile(async (profile) => {
    await run(BIN, [...flags(profile), `--screenshot=${file}`, `--window-size=${width},${height}`, "--hide-scrollbars", url], {
      timeout: 60_000,
    });
    return file;
  });
}
