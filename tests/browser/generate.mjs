// Browser test of the router's web page: Debian's Chromium, headless, driven by playwright-core.
// Types a prompt, submits, watches the progress bar move and the per-step timeline fill, then
// waits for the <video> to load and play. Prints PASS/FAIL lines (tests/run.sh counts them) and
// saves a screenshot of the finished page.
//   node generate.mjs BASE_URL SCREENSHOT.png [STEPS]
import { check, failed, launch, openPage } from './lib.mjs';

const [base, shot, stepsArg] = process.argv.slice(2);
const steps = Number(stepsArg || 24);
const browser = await launch();
try {
  const { page, errors } = await openPage(browser, base);
  check('browser_page_loads', (await page.title()).includes('wanserve'));
  // before any video the player is not shown (a `display` rule must not beat `hidden`), and the
  // form's defaults are small enough for the CPU tiny cluster (issue 19, item 11)
  check('browser_no_empty_player_before_a_video',
    await page.$eval('#video', (v) => getComputedStyle(v).display) === 'none');
  const defaults = await page.evaluate(() => ['size', 'frames', 'steps'].map(
    (id) => document.getElementById(id).value));
  const [dw, dh] = defaults[0].split('x').map(Number);
  check('browser_defaults_small', dw * dh <= 320 * 192 && Number(defaults[1]) <= 17 &&
    Number(defaults[2]) <= 12, JSON.stringify(defaults));
  await page.waitForFunction(() => document.getElementById('cluster').textContent.includes('high'),
    null, { timeout: 15000 }).catch(() => {});
  check('browser_shows_cluster_replicas',
    /high [1-9].*low [1-9]/.test(await page.textContent('#cluster')), await page.textContent('#cluster'));

  // every value the progress bar takes, seen from inside the page
  await page.evaluate(() => {
    window.barValues = [];
    const bar = document.getElementById('bar');
    new MutationObserver(() => window.barValues.push(Number(bar.getAttribute('aria-valuenow'))))
      .observe(bar, { attributes: true, attributeFilter: ['aria-valuenow'] });
  });
  await page.fill('#prompt', 'a paper boat drifting down a rainy street, close-up');
  await page.fill('#size', '128x128');
  await page.fill('#frames', '17');
  await page.fill('#steps', String(steps));
  await page.fill('#seed', '42');
  await page.click('#submit');

  await page.waitForFunction(() => document.getElementById('job').dataset.status === 'completed',
    null, { timeout: 180000 });
  const bar = await page.evaluate(() => window.barValues);
  const distinct = new Set(bar.filter((v) => v > 0 && v < 100));
  check('browser_progress_bar_moves', distinct.size >= 3 && bar[bar.length - 1] === 100,
    `values ${JSON.stringify(bar)}`);
  const cells = await page.$$eval('#timeline .cell', (cs) => cs.map((c) => c.className));
  check('browser_timeline_one_cell_per_step', cells.length === steps, `${cells.length} cells`);
  check('browser_timeline_shows_both_pools',
    cells.some((c) => c.includes('expert-high')) && cells.some((c) => c.includes('expert-low')));
  check('browser_status_names_done', /Done in/.test(await page.textContent('#status')),
    await page.textContent('#status'));

  // the video loads (readyState >= HAVE_CURRENT_DATA) and plays (currentTime advances)
  const ready = await page.waitForFunction(() => {
    const v = document.getElementById('video');
    return !v.hidden && v.readyState >= 2 && v.videoWidth === 128;
  }, null, { timeout: 30000 }).then(() => true, () => false);
  const vstate = await page.evaluate(() => {
    const v = document.getElementById('video');
    return { rs: v.readyState, w: v.videoWidth, err: v.error && v.error.message, src: v.src };
  });
  check('browser_video_loads', ready, JSON.stringify(vstate));
  const t0 = await page.evaluate(() => document.getElementById('video').currentTime);
  await page.waitForTimeout(1500);
  const t1 = await page.evaluate(() => document.getElementById('video').currentTime);
  const paused = await page.evaluate(() => document.getElementById('video').paused);
  check('browser_video_plays', !paused && t1 !== t0, `currentTime ${t0} -> ${t1}, paused ${paused}`);

  await page.waitForFunction(() => document.querySelectorAll('#jobs tr.job-row.completed').length > 0,
    null, { timeout: 10000 }).catch(() => {});
  check('browser_recent_list_has_job',
    (await page.$$('#jobs tr.job-row.completed')).length >= 1);
  check('browser_no_page_errors', errors.length === 0, errors.join('; '));
  await page.evaluate(() => document.getElementById('video').pause());
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
} catch (e) {
  check('browser_flow', false, String(e).split('\n')[0]);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0); // a live binding: the count of failed checks
