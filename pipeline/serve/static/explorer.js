// The explorer page: reads the catalog (/api/v1/rollups), keeps the chosen query
// in the controls and the URL's fragment, and refreshes every panel from the query,
// facet and monitor endpoints, on each change and every few seconds while live.
//
// The page's state is in the DOM for tests and assistive technology alike:
// body[data-refreshes] counts completed refreshes, the table's cells carry their
// exact values, #chart carries its series and point counts, and window.explorer
// holds the last answers and the chart instance.
import { answerMeta, el, renderChart, renderFacets, renderMonitors, renderTable } from './panels.js'

const $ = (id) => document.getElementById(id)
const RANGES = { '15m': 15, '1h': 60, '4h': 240, '1d': 1440, '2d': 2880, '7d': 10080 } // minutes
// The bucket of the chart for each range (at most ~60 points); raised to the rollup's smallest interval.
const EVERY = { '15m': 1, '1h': 1, '4h': 5, '1d': 30, '2d': 60, '7d': 240 } // minutes
const UNITS = { s: 1, m: 60, h: 3600, d: 86400 }

const params = new URLSearchParams(location.search)
const REFRESH_S = Math.max(1, Number(params.get('refresh')) || 10)

const explorer = (window.explorer = {
  catalog: null, answer: null, facets: [], monitors: null, chart: null, refreshes: 0, ready: false,
  // The query string of the answer shown, and that of the query the controls describe now.
  params: null,
  currentParams: () => queryParams().query.toString(),
})
let generation = 0
let timer = null
let retry = null // the next look at the catalog while the view catches up
let running = false

const seconds = (text) => Number(text.slice(0, -1)) * UNITS[text.slice(-1)]

function spanText(minutes) {
  if (minutes % 1440 === 0) return `${minutes / 1440}d`
  if (minutes % 60 === 0) return `${minutes / 60}h`
  return `${minutes}m`
}

/** GET a JSON endpoint: {status, body}; status 0 when the server could not be reached. */
async function getJSON(url) {
  try {
    const response = await fetch(url, { headers: { Accept: 'application/json' } })
    const body = await response.json().catch(() => null)
    return { status: response.status, body }
  } catch (error) {
    return { status: 0, body: { error: String(error.message ?? error) } }
  }
}

const rollupInfo = () => explorer.catalog.rollups.find((r) => r.name === $('rollup').value)

function fillAggregations(keep) {
  const info = rollupInfo()
  const select = $('agg')
  select.replaceChildren(...info.aggregations.map((a) => el('option', { value: a }, a)))
  select.value = info.aggregations.includes(keep) ? keep : info.aggregations[0]
  $('group-by').textContent = info.group_by.length ? `grouped by ${info.group_by.join(', ')}` : 'not grouped'
}

/** The query the controls describe, as the query API's parameters. */
function queryParams() {
  const info = rollupInfo()
  const agg = $('agg').value
  const range = $('range').value
  const smallest = Math.min(...info.intervals.map(seconds)) / 60
  const every = Math.ceil(EVERY[range] / smallest) * smallest
  const aggs = agg !== 'count' && info.aggregations.includes('count') ? [agg, 'count'] : [agg]
  const query = new URLSearchParams({
    rollup: info.name, last: range, agg: aggs.join(','), every: spanText(every), top: $('top').value, by: agg,
  })
  const where = $('where').value.trim()
  if (where) query.append('where', where)
  return { query, aggs, range }
}

function saveHash() {
  const state = new URLSearchParams()
  for (const id of ['rollup', 'range', 'agg', 'top', 'where']) if ($(id).value) state.set(id, $(id).value)
  history.replaceState(null, '', `#${state}`)
}

function restoreHash() {
  const state = new URLSearchParams(location.hash.slice(1))
  const names = explorer.catalog.rollups.map((r) => r.name)
  if (names.includes(state.get('rollup'))) $('rollup').value = state.get('rollup')
  fillAggregations(state.get('agg'))
  for (const id of ['range', 'top']) {
    if ([...$(id).options].some((o) => o.value === state.get(id))) $(id).value = state.get(id)
  }
  $('where').value = state.get('where') ?? ''
}

function showMessage(text) {
  $('message').textContent = text
}

async function refresh() {
  if (!explorer.catalog) return
  const mine = ++generation
  running = true
  document.body.dataset.state = 'loading'
  try {
    if (!explorer.ready && !(await caughtUp())) return
    const { query, aggs, range } = queryParams()
    const [answer, facets, monitors] = await Promise.all([
      getJSON(`/api/v1/query?${query}`),
      Promise.all(explorer.catalog.facets.map(async (facet) => ({
        facet, ...(await getJSON(`/api/v1/facets/${encodeURIComponent(facet)}?last=${range}&top=5`)),
      }))),
      // Asked only where this process serves monitors: a 404 would be a console error.
      explorer.catalog.monitors ? getJSON('/api/v1/monitors') : { status: 404, body: null },
    ])
    if (mine !== generation) return // a newer refresh started (the controls changed): drop this one
    show(answer, facets, monitors, query, aggs)
  } finally {
    if (mine === generation) running = false
  }
}

/**
 * Whether the view has caught up with the topics, asked of the catalog (always 200) so that
 * no query gets a 503 while it has not; says so on the page and tries again in 2 s if not.
 */
async function caughtUp() {
  const catalog = await getJSON('/api/v1/rollups')
  explorer.ready = catalog.status === 200 && catalog.body.view.caught_up
  if (!explorer.ready) {
    const lag = catalog.body?.view?.lag ?? '?'
    showMessage('The view is still reading the rollup topics: answers will follow.')
    $('view-state').textContent = `Catching up (${lag} records behind)`
    document.body.dataset.state = 'catching-up'
    clearTimeout(retry)
    retry = setTimeout(() => refresh(), 2000)
  }
  return explorer.ready
}

/** Puts the answers of one refresh on the page. */
function show(answer, facets, monitors, query, aggs) {
  renderMonitors($('monitors'), $('events'), monitors)
  explorer.monitors = monitors.body
  $('where').removeAttribute('aria-invalid')
  if (answer.status === 200) {
    showMessage('')
    explorer.answer = answer.body
    explorer.params = query.toString()
    renderTable($('top-table'), answer.body, aggs)
    explorer.chart = renderChart($('chart'), explorer.chart, answer.body, aggs[0])
    $('answer-meta').textContent = answerMeta(answer.body)
    renderFacets($('facets'), facets)
    explorer.facets = facets
    const view = answer.body.view
    $('view-state').textContent = view?.caught_up ? 'View up to date' : `View ${view?.lag ?? '?'} records behind`
  } else if (answer.status === 503) {
    explorer.ready = false // ask the catalog until the view has caught up again
    showMessage('The view is still reading the rollup topics: answers will follow.')
    $('view-state').textContent = `Catching up (${answer.body?.lag ?? '?'} records behind)`
  } else if (answer.status === 400) {
    showMessage(answer.body.error)
    if (answer.body.parameter === 'where') $('where').setAttribute('aria-invalid', 'true')
  } else {
    showMessage(`The query API could not be reached (${answer.status || answer.body.error}).`)
  }
  const now = new Date()
  $('updated').dateTime = now.toISOString()
  $('updated').textContent = now.toLocaleTimeString('en-GB')
  explorer.refreshes += 1
  document.body.dataset.refreshes = String(explorer.refreshes)
  document.body.dataset.state = answer.status === 200 ? 'ready' : 'error'
}

function schedule() {
  clearInterval(timer)
  timer = null
  if ($('live').getAttribute('aria-pressed') === 'true') {
    timer = setInterval(() => {
      if (!running && !document.hidden) refresh()
    }, REFRESH_S * 1000)
  }
}

function changed() {
  saveHash()
  refresh()
  schedule() // the next live refresh a whole period after this one
}

async function start() {
  const catalog = await getJSON('/api/v1/rollups')
  if (catalog.status !== 200 || !catalog.body.rollups.length) {
    showMessage(catalog.status === 200 ? 'No rollups are configured.' : 'The catalog could not be read.')
    document.body.dataset.state = 'error'
    return
  }
  explorer.catalog = catalog.body
  explorer.ready = catalog.body.view.caught_up
  const longest = catalog.body.limits.max_range_ms / 60000
  for (const option of [...$('range').options]) if (RANGES[option.value] > longest) option.remove()
  $('rollup').replaceChildren(...catalog.body.rollups.map((r) => el('option', { value: r.name }, r.name)))
  restoreHash()
  $('rollup').addEventListener('change', () => {
    fillAggregations($('agg').value)
    changed()
  })
  for (const id of ['range', 'agg', 'top']) $(id).addEventListener('change', changed)
  $('where').addEventListener('change', changed)
  $('controls').addEventListener('submit', (event) => {
    event.preventDefault()
    changed()
  })
  $('refresh').addEventListener('click', () => refresh())
  $('live').addEventListener('click', () => {
    const live = $('live').getAttribute('aria-pressed') !== 'true'
    $('live').setAttribute('aria-pressed', String(live))
    schedule()
  })
  new ResizeObserver(() => {
    const chart = explorer.chart
    const width = Math.max($('chart').clientWidth, 320)
    if (chart && Math.abs(chart.width - width) > 1) chart.setSize({ width, height: 300 })
  }).observe($('chart'))
  await refresh()
  schedule()
}

start()
