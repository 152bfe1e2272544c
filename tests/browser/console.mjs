// Drives the hsmlink web console in headless Chromium (Debian's
// /usr/bin/chromium) through playwright-core, with client certificates
// (Playwright's `clientCertificates`: it terminates the mutual TLS itself).
// Run by tests/tests/console.rs: `node console.mjs provider|after`, with
// its settings in the environment. Exits non-zero with a message on the
// first expectation that fails; screenshots go to $SHOTS.
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(process.env.PLAYWRIGHT_DIR + '/');
const { chromium } = require('playwright-core');

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const URL_BASE = env('CONSOLE_URL');
const SHOTS = env('SHOTS');
const TENANT = env('TENANT');
const OTHER = env('OTHER_TENANT');
const PARTITION = env('PARTITION');

function expect(condition, message) {
  if (!condition) throw new Error(`expectation failed: ${message}`);
}

async function context(browser, cert, key) {
  return browser.newContext({
    ignoreHTTPSErrors: true, // the deployment's own CA; the client side is what is tested
    clientCertificates: [{ origin: URL_BASE, certPath: cert, keyPath: key }],
    viewport: { width: 1280, height: 900 },
  });
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function provider(browser) {
  const ctx = await context(browser, env('ADMIN_CERT'), env('ADMIN_KEY'));
  const page = await ctx.newPage();
  let r = await page.goto(`${URL_BASE}/console`);
  expect(r.status() === 200, `overview: HTTP ${r.status()}`);
  expect((await page.textContent('#who')).includes('provider admin'), 'signed in as the provider');
  expect(await page.locator(`#tenants tr[data-tenant="${TENANT}"]`).count() === 1, 'tenant listed');
  expect(await page.locator(`#tenants tr[data-tenant="${OTHER}"]`).count() === 1, 'other tenant listed');
  expect(await page.locator('#devices').count() === 1, 'devices listed');
  await shot(page, '01-overview');

  await page.click(`#tenants a[href="/console/tenants/${TENANT}"]`);
  expect((await page.textContent('#tenant-name')) === TENANT, 'tenant page');
  await shot(page, '02-tenant');

  r = await page.goto(`${URL_BASE}/console/partitions/${PARTITION}`);
  expect(r.status() === 200, `partition page: HTTP ${r.status()}`);
  expect(await page.locator('#partition-state [data-state="active"]').count() === 1, 'partition active');
  const chart = page.locator('svg#chart-ops');
  expect(await chart.isVisible(), 'operations chart shown');
  const max = Number(await chart.getAttribute('data-max'));
  expect(max > 0, `the chart shows the tenant's operations (max ${max})`);
  await shot(page, '03-partition');

  await page.click(`#suspend-${PARTITION}`);
  expect(page.url().includes('/console/confirm?action=suspend'), 'confirmation asked');
  await shot(page, '04-confirm-suspend');
  await page.click('#confirm');
  await page.waitForURL(/\/console\/partitions\/.*done=/);
  expect(await page.locator('#partition-state [data-state="suspended"]').count() === 1, 'partition suspended');
  expect((await page.textContent('#flash')).includes('suspend'), 'flash message');
  await shot(page, '05-suspended');

  // A forged POST (no CSRF token) is refused.
  const forged = await page.request.post(`${URL_BASE}/console/action`, {
    form: { action: 'resume', target: PARTITION, csrf: '00' },
    headers: { Origin: URL_BASE },
  });
  expect(forged.status() === 403, `forged action: HTTP ${forged.status()}`);
  await ctx.close();
}

async function after(browser) {
  const ctx = await context(browser, env('ADMIN_CERT'), env('ADMIN_KEY'));
  const page = await ctx.newPage();
  let r = await page.goto(`${URL_BASE}/console/audit?tenant=${TENANT}`);
  expect(r.status() === 200, `audit page: HTTP ${r.status()}`);
  expect(await page.locator(`#verification tr[data-chain="${TENANT}"] [data-state="ok"]`).count() === 1,
    'the chain verifies');
  const results = await page.locator('#records td.rv').allTextContents();
  expect(results.includes('CKR_DEVICE_REMOVED'), `the refused call is in the audit log (${results.slice(0, 10)})`);
  expect((await page.content()).includes('admin.partition.suspend'), 'the suspension is audited');
  await shot(page, '06-audit');
  r = await page.goto(`${URL_BASE}/console/partitions/${PARTITION}`);
  const errors = Number(await page.locator('svg#chart-errors').getAttribute('data-max'));
  expect(errors > 0, 'the errors chart shows the refused calls');
  await shot(page, '07-partition-errors');
  r = await page.goto(`${URL_BASE}/console/certificates`);
  expect(r.status() === 200 && await page.locator('#certificates').count() === 1, 'certificates page');
  await shot(page, '08-certificates');
  await ctx.close();

  // The tenant's own certificate: its tenant only, no actions.
  const tctx = await context(browser, env('TENANT_CERT'), env('TENANT_KEY'));
  const tpage = await tctx.newPage();
  r = await tpage.goto(`${URL_BASE}/console`);
  expect(r.status() === 200, `tenant overview: HTTP ${r.status()}`);
  expect((await tpage.textContent('#who')).includes(`tenant: ${TENANT}`), 'signed in as the tenant');
  expect((await tpage.textContent('#tenant-name')) === TENANT, 'its own tenant page');
  expect(await tpage.locator(`tr[data-partition="${PARTITION}"]`).count() === 1, 'its partition');
  const text = await tpage.content();
  expect(!text.includes(OTHER), 'nothing of the other tenant');
  expect(await tpage.locator('a.button').count() === 0, 'no actions offered');
  await shot(tpage, '09-tenant-view');
  for (const url of [`/console/tenants/${OTHER}`, `/console/partitions/${OTHER}-p0`]) {
    r = await tpage.goto(`${URL_BASE}${url}`);
    expect(r.status() === 404, `${url} as the tenant: HTTP ${r.status()}`);
  }
  r = await tpage.goto(`${URL_BASE}/console/confirm?action=resume&target=${PARTITION}`);
  expect(r.status() === 403, `confirm as the tenant: HTTP ${r.status()}`);
  r = await tpage.goto(`${URL_BASE}/console/audit`);
  expect(r.status() === 200, 'tenant audit page');
  const chains = await tpage.locator('#verification tr[data-chain]').evaluateAll(
    (rows) => rows.map((row) => row.getAttribute('data-chain')));
  expect(chains.length === 1 && chains[0] === TENANT, `only its own chain (${chains})`);
  await shot(tpage, '10-tenant-audit');
  await tctx.close();
}

const phase = process.argv[2];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 30000,
});
try {
  if (phase === 'provider') await provider(browser);
  else if (phase === 'after') await after(browser);
  else throw new Error(`unknown phase ${phase}`);
  console.log(`console ${phase}: ok`);
} catch (e) {
  console.error(`console ${phase}: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
