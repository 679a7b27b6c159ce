// Browser test of the web page against a router started with --auth-tokens: a submit without a
// token shows UNAUTHENTICATED and opens the token field; with the token typed in, the job runs
// (fetch with an Authorization header, SSE and <video> with ?access_token=), the video loads and
// the job is listed. Prints PASS/FAIL lines (tests/run.sh counts them).
//   node token.mjs BASE_URL TOKEN
import { check, failed, launch, openPage } from './lib.mjs';

const [base, tok] = process.argv.slice(2);
const browser = await launch();
try {
  const { page, errors } = await openPage(browser, base);
  const asks = await page.waitForFunction(
    () => document.getElementById('cluster').textContent.includes('access token'), null,
    { timeout: 15000 }).then(() => true, () => false);
  check('browser_token_cluster_needs_token', asks, await page.textContent('#cluster'));
  await page.fill('#prompt', 'a lantern on a pier at night');
  await page.fill('#size', '64x64');
  await page.fill('#frames', '5');
  await page.fill('#steps', '4');
  await page.fill('#seed', '7');
  await page.click('#submit');
  const refused = await page.waitForFunction(() => {
    const e = document.getElementById('form-error');
    return !e.hidden && e.textContent.includes('UNAUTHENTICATED');
  }, null, { timeout: 20000 }).then(() => true, () => false);
  check('browser_token_missing_shows_unauthenticated', refused, await page.textContent('#form-error'));
  check('browser_token_field_opens', await page.evaluate(() => document.getElementById('auth').open));

  await page.fill('#token', tok);
  await page.dispatchEvent('#token', 'change');
  const shown = await page.waitForFunction(
    () => /high [1-9].*low [1-9]/.test(document.getElementById('cluster').textContent), null,
    { timeout: 15000 }).then(() => true, () => false);
  check('browser_token_cluster_shown_with_token', shown, await page.textContent('#cluster'));
  await page.click('#submit');
  await page.waitForFunction(() => document.getElementById('job').dataset.status === 'completed',
    null, { timeout: 120000 });
  check('browser_token_job_completes', true);
  const cells = await page.$$eval('#timeline .cell', (cs) => cs.length);
  check('browser_token_events_stream', cells === 4, `${cells} timeline cells`);
  const ready = await page.waitForFunction(() => {
    const v = document.getElementById('video');
    return !v.hidden && v.readyState >= 2 && v.videoWidth === 64;
  }, null, { timeout: 30000 }).then(() => true, () => false);
  check('browser_token_video_loads', ready, await page.evaluate(() => {
    const v = document.getElementById('video');
    return `readyState ${v.readyState}, error ${v.error && v.error.message}`;
  }));
  await page.waitForFunction(() => document.querySelectorAll('#jobs tr.job-row.completed').length > 0,
    null, { timeout: 10000 }).catch(() => {});
  check('browser_token_job_listed', (await page.$$('#jobs tr.job-row.completed')).length >= 1);
  check('browser_token_no_page_errors', errors.length === 0, errors.join('; '));
} catch (e) {
  check('browser_token_flow', false, String(e).split('\n')[0]);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0); // a live binding: the count of failed checks
