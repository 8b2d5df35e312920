// Drives a shop page in headless Chromium (Debian's /usr/bin/chromium through
// playwright-core): open the cart, click "Checkout", click "Continue shopping"
// (which leaves the page, so the SDK sends its last batch), wait until the
// intake has answered every request, and print what happened as one JSON
// document on stdout: the page URL, the browser's version and user agent, every
// request to the intake with its answer, console messages and page errors.
//
//   node drive.mjs --intake http://127.0.0.1:8080 --page shop-sdk.html [--base URL]
//                  [--user-agent UA] [--client-token T] [--application-id A] [--env E]
//                  [--timeout MS] [--screenshot FILE]
//
// Without --base it serves the pages itself (serve.mjs) on a free port. Exits 1,
// with the reason on stderr, when the page fails or the intake is never reached.
import { parseArgs } from 'node:util'

import { chromium } from 'playwright-core'

import { CHROMIUM, CHROMIUM_ARGS } from './chromium.mjs'
import { startStaticServer } from './serve.mjs'

const { values: opts } = parseArgs({
  options: {
    intake: { type: 'string' },
    page: { type: 'string', default: 'shop-sdk.html' },
    base: { type: 'string' },
    'user-agent': { type: 'string' },
    'client-token': { type: 'string', default: 'pub-shop-test' },
    'application-id': { type: 'string', default: 'shop' },
    env: { type: 'string', default: 'test' },
    timeout: { type: 'string', default: '20000' },
    screenshot: { type: 'string' },
  },
})

function fail(message) {
  console.error(`drive: ${message}`)
  process.exit(1)
}

if (!opts.intake) fail('--intake URL is required (the intake base URL, e.g. http://127.0.0.1:8080)')
const timeout = Number(opts.timeout)
const intake = new URL(opts.intake)

let staticServer = null
let base = opts.base
if (!base) {
  const started = await startStaticServer()
  staticServer = started.server
  base = started.url
}
const pageUrl = new URL(opts.page, `${base.replace(/\/+$/, '')}/`).href

/** Which way an intake request was sent: the _dd.api parameter, also inside ddforward (proxy mode). */
function apiOf(url) {
  const params = new URL(url).searchParams
  const forwarded = params.get('ddforward')
  const inner = forwarded ? new URL(forwarded, url).searchParams : params
  return inner.get('_dd.api') ?? params.get('_dd.api')
}

/** Wait until no request is waiting for its answer and none started for ``calmMs``. */
async function quiet(pending, report, calmMs, timeout) {
  const deadline = Date.now() + timeout
  let seen = report.requests.length
  let since = Date.now()
  while (Date.now() < deadline && (pending.size || Date.now() - since < calmMs)) {
    if (pending.size || report.requests.length !== seen) {
      seen = report.requests.length
      since = Date.now()
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

const report = {
  page_url: pageUrl,
  browser_version: null,
  user_agent: null,
  requests: [],
  console: [],
  page_errors: [],
}

// A user agent given at launch applies to every request, including the beacons
// sent while a page unloads (a per-page override does not reach those).
const args = opts['user-agent'] ? [...CHROMIUM_ARGS, `--user-agent=${opts['user-agent']}`] : CHROMIUM_ARGS
const browser = await chromium.launch({ executablePath: CHROMIUM, args, timeout })
try {
  report.browser_version = browser.version()
  const context = await browser.newContext()
  context.setDefaultTimeout(timeout)
  // The shop's settings, in place before any script of the page runs.
  await context.addInitScript((config) => {
    window.SHOP_CONFIG = config
  }, {
    intake: intake.href.replace(/\/+$/, ''),
    clientToken: opts['client-token'],
    applicationId: opts['application-id'],
    env: opts.env,
    version: '1.4.2',
  })

  const pending = new Set()
  const isIntake = (request) => new URL(request.url()).origin === intake.origin
  context.on('request', (request) => {
    if (!isIntake(request)) return
    const entry = {
      method: request.method(),
      url: request.url(),
      api: apiOf(request.url()),
      resource_type: request.resourceType(),
      body_bytes: request.postDataBuffer()?.length ?? 0,
      status: null,
      allow_origin: null,
      failure: null,
    }
    report.requests.push(entry)
    const done = (async () => {
      const response = await request.response().catch(() => null)
      if (response) {
        entry.status = response.status()
        // allHeaders() asks the page, which may be gone by now (a beacon sent while leaving);
        // headers() holds what the network reported.
        const headers = await response.allHeaders().catch(() => response.headers())
        entry.allow_origin = headers['access-control-allow-origin'] ?? null
      } else {
        entry.failure = request.failure()?.errorText ?? 'no response'
      }
    })()
    pending.add(done)
    done.finally(() => pending.delete(done))
  })
  context.on('requestfailed', (request) => {
    const entry = report.requests.findLast((e) => e.url === request.url())
    if (entry && isIntake(request)) entry.failure = request.failure()?.errorText ?? 'failed'
  })

  const page = await context.newPage()
  page.on('console', (message) => report.console.push({ type: message.type(), text: message.text() }))
  page.on('pageerror', (error) => report.page_errors.push(String(error)))

  const loaded = await page.goto(pageUrl)
  if (!loaded?.ok()) fail(`${pageUrl} answered ${loaded?.status()}`)
  await page.waitForSelector('body[data-ready="true"]')
  report.user_agent = await page.evaluate(() => navigator.userAgent)
  await page.click('#checkout')
  await page.waitForSelector('#status:has-text("Thank you")')
  if (opts.screenshot) await page.screenshot({ path: opts.screenshot })
  // Requests sent so far get their answers while the page is still there to read them.
  await quiet(pending, report, 300, timeout)
  await Promise.all([page.waitForURL('**/thanks.html'), page.click('#continue')])

  // The last batch leaves as the page is left. A beacon sent while a page
  // unloads does not always show up among the requests seen here, so rather
  // than wait for it, wait until every request seen has its answer and nothing
  // new came for a second: the browser stays up while the beacon goes out.
  await quiet(pending, report, 1000, timeout)
  await context.close()
} finally {
  await browser.close()
  staticServer?.close()
}

console.log(JSON.stringify(report, null, 2))
if (report.page_errors.length) fail(`the page threw: ${report.page_errors.join('; ')}`)
if (!report.requests.some((r) => r.method === 'POST')) fail(`the page sent nothing to ${intake.origin}`)
