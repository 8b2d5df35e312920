// Drives the explorer page of `rum-pipeline serve` in headless Chromium (Debian's,
// through playwright-core) and prints what the page showed as one JSON document:
// for each step (a choice of rollup, range, aggregation, groups and filter, made
// with the keyboard or by selecting options) the table's cells with their exact
// values and their text, the chart's series and points (from the uPlot instance),
// the facets, the monitors, the query the page asked; and every console message,
// page error and failed request of the whole visit.
//
//   node explorer.mjs --url http://127.0.0.1:8081 --steps '[{...}, ...]' --out DIR
//                     [--refresh 2] [--wait-monitor NAME=STATUS] [--timeout MS]
//
// A step is {"name": "a-file-name", "select": {"rollup": ..., "range": ..., "agg": ...,
// "top": ..., "where": ...}} (each optional) or {"name": ..., "keys": [["#rollup",
// "Tab", "ArrowUp", ...]]}: a focus and the keys pressed from there. A screenshot of
// each step is saved as DIR/<name>.png. Exits 1, with the reason on stderr, when the
// page never shows an answer.
import path from 'node:path'
import { parseArgs } from 'node:util'

import { chromium } from 'playwright-core'

import { CHROMIUM, CHROMIUM_ARGS } from './chromium.mjs'

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    steps: { type: 'string', default: '[{"name": "default"}]' },
    out: { type: 'string', default: '.' },
    refresh: { type: 'string', default: '2' },
    'wait-monitor': { type: 'string' },
    timeout: { type: 'string', default: '60000' },
  },
})

function fail(message) {
  console.error(`explorer: ${message}`)
  process.exit(1)
}

if (!opts.url) fail('--url is required (the base URL of rum-pipeline serve)')
const timeout = Number(opts.timeout)
const steps = JSON.parse(opts.steps)

const report = {
  url: null, browser_version: null, steps: [], console: [], page_errors: [], failed: [], origins: [], monitor: null,
}

/** Everything the page shows, read in one go (so from one answer). */
function snapshot() {
  const text = (node) => node?.textContent.trim() ?? null
  const table = document.getElementById('top-table')
  const chart = window.explorer.chart
  const section = (node) => ({
    facet: node.dataset.facet,
    from_ms: Number(node.dataset.fromMs),
    to_ms: Number(node.dataset.toMs),
    values: [...node.querySelectorAll('tr[data-value]')].map((row) => ({
      value: JSON.parse(row.dataset.value),
      count: Number(row.querySelector('[data-count]').dataset.count),
      text: text(row.querySelector('[data-count]')),
    })),
  })
  return {
    controls: Object.fromEntries(['rollup', 'range', 'agg', 'top', 'where'].map((id) => [id, document.getElementById(id).value])),
    params: window.explorer.params,
    from_ms: Number(table.dataset.fromMs),
    to_ms: Number(table.dataset.toMs),
    rows: [...table.tBodies[0].querySelectorAll('tr[data-group]')].map((row) => ({
      group: JSON.parse(row.dataset.group),
      cells: [...row.querySelectorAll('td[data-agg]')].map((cell) => ({
        agg: cell.dataset.agg, value: JSON.parse(cell.dataset.value), text: text(cell),
      })),
    })),
    chart: {
      series_attr: Number(document.getElementById('chart').dataset.series),
      points_attr: Number(document.getElementById('chart').dataset.points),
      labels: chart ? chart.series.slice(1).map((s) => s.label) : [],
      data: chart ? chart.data.map((column) => Array.from(column)) : [],
      canvas: Boolean(document.querySelector('#chart canvas')),
    },
    facets: [...document.querySelectorAll('#facets section[data-facet]')].map(section),
    monitors_state: document.getElementById('monitors').dataset.state,
    monitors: [...document.querySelectorAll('#monitors [data-monitor]')].map((m) => ({
      name: m.dataset.monitor,
      status: m.dataset.status,
      groups: [...m.querySelectorAll('li[data-status]')].map((g) => ({ group: JSON.parse(g.dataset.group), status: g.dataset.status })),
    })),
    events: [...document.querySelectorAll('#events li[data-monitor]')].map((e) => ({ monitor: e.dataset.monitor, to: e.dataset.to })),
    updated: text(document.getElementById('updated')),
    refreshes: Number(document.body.dataset.refreshes),
    message: text(document.getElementById('message')),
  }
}

/** Wait until the page shows the answer to the query its controls describe now. */
async function settled(page) {
  await page.waitForFunction(() => {
    const e = window.explorer
    return document.body.dataset.state === 'ready' && e.params && e.params === e.currentParams()
  }, null, { timeout })
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout })
try {
  report.browser_version = browser.version()
  const context = await browser.newContext({ viewport: { width: 1400, height: 1100 } })
  context.setDefaultTimeout(timeout)
  const page = await context.newPage()
  page.on('console', (message) => report.console.push({ type: message.type(), text: message.text() }))
  page.on('pageerror', (error) => report.page_errors.push(String(error)))
  // Every origin the page asked anything of: its own only, so it works with no internet.
  page.on('request', (request) => {
    const { origin } = new URL(request.url())
    if (!report.origins.includes(origin)) report.origins.push(origin)
  })
  page.on('requestfailed', (request) => report.failed.push({ url: request.url(), status: null, error: request.failure()?.errorText }))
  page.on('response', (response) => {
    if (response.status() >= 400) report.failed.push({ url: response.url(), status: response.status() })
  })

  report.url = `${opts.url.replace(/\/+$/, '')}/?refresh=${opts.refresh}`
  const loaded = await page.goto(report.url)
  if (!loaded?.ok()) fail(`${report.url} answered ${loaded?.status()}`)
  await settled(page)

  for (const step of steps) {
    if (step.keys) {
      const [focus, ...keys] = step.keys
      await page.focus(focus)
      for (const key of keys) await page.keyboard.press(key)
    }
    for (const [id, value] of Object.entries(step.select ?? {})) {
      if (id === 'where') {
        await page.fill('#where', value)
        await page.focus('#where')
        await page.keyboard.press('Enter')
      } else {
        await page.selectOption(`#${id}`, value)
      }
    }
    await settled(page)
    // One more refresh, so the live one is proven to keep the same answer.
    const seen = await page.evaluate(() => window.explorer.refreshes)
    await page.waitForFunction((n) => window.explorer.refreshes > n && document.body.dataset.state === 'ready', seen, { timeout })
    await settled(page)
    const shot = path.join(opts.out, `${step.name}.png`)
    const state = await page.evaluate(snapshot)
    await page.screenshot({ path: shot, fullPage: true })
    report.steps.push({ name: step.name, screenshot: shot, ...state })
  }

  if (opts['wait-monitor']) {
    const [name, status] = opts['wait-monitor'].split('=')
    await page.waitForSelector(`#monitors [data-monitor="${name}"][data-status="${status}"]`, { timeout })
    const shot = path.join(opts.out, `monitor-${name}.png`)
    report.monitor = { ...(await page.evaluate(snapshot)), screenshot: shot }
    await page.screenshot({ path: shot, fullPage: true })
  }
  await context.close()
} finally {
  await browser.close()
}

console.log(JSON.stringify(report, null, 2))
if (report.page_errors.length) fail(`the page threw: ${report.page_errors.join('; ')}`)
