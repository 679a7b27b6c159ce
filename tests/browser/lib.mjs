// What the browser tests share: PASS/FAIL lines (tests/run.sh counts them) and Debian's Chromium,
// headless, launched so it works as root in CI on a machine with a closed network.
import { chromium } from 'playwright-core';

export let failed = 0;
export const check = (name, ok, why) => {
  console.log(ok ? `PASS ${name}` : `FAIL ${name}${why ? ': ' + why : ''}`);
  if (!ok) failed++;
};

export const launch = () => chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // no sandbox (root in CI); no background traffic: this machine's network is closed
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});

// A page at base, loaded; errors collects the page's uncaught exceptions.
export const openPage = async (browser, base) => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(base, { waitUntil: 'load' });
  return { page, errors };
};
