// Rendering of the explorer's panels from the API's answers: the top-list table,
// the time-series chart (uPlot), the facets and the monitors. Nothing here fetches;
// explorer.js asks the API and calls these. Every number shown keeps its exact value
// in a data-value attribute, so a test can compare the page with the API.

const PALETTE = [
  '#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf',
  '#7f7f7f', '#bcbd22', '#393b79', '#ad494a', '#637939', '#e6550d', '#7b4173', '#3182bd',
  '#31a354', '#756bb1', '#636363', '#843c39',
]

/** The colour of the i-th group, the same in the table and the chart. */
export const colour = (i) => PALETTE[i % PALETTE.length]

const NUMBER = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 })

/** A value as shown: thousands separated, at most two decimals; a dash for none. */
export function fmt(value) {
  return value === null || value === undefined ? '–' : NUMBER.format(value)
}

/** One group's label: its attribute values joined; "(none)" for a missing value. */
export function groupLabel(group) {
  const parts = Object.values(group).map((v) => (v === null || v === undefined ? '(none)' : String(v)))
  return parts.length ? parts.join(' · ') : '(all)'
}

/** An element with attributes and children (strings become text, never HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue
    if (name === 'dataset') Object.assign(node.dataset, value)
    else if (name === 'style') Object.assign(node.style, value)
    else node.setAttribute(name, value === true ? '' : String(value))
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue
    node.append(child instanceof Node ? child : document.createTextNode(String(child)))
  }
  return node
}

const utc = (ms) => new Date(ms).toISOString().replace('T', ' ').replace(/:\d\d\.\d+Z$/, ' UTC')

/** The top-list: one row per group, the chosen aggregation (and count) in number cells. */
export function renderTable(table, answer, columns) {
  const groupBy = answer.group_by
  const head = el('tr', {},
    groupBy.length ? groupBy.map((name) => el('th', { scope: 'col' }, name)) : el('th', { scope: 'col' }, 'group'),
    columns.map((agg) => el('th', { scope: 'col', class: 'num' }, agg)))
  table.tHead.replaceChildren(head)
  const rows = answer.groups.map((row, i) => {
    const names = groupBy.length ? groupBy : [null]
    const cells = names.map((name, j) => {
      const text = name === null ? '(all)' : groupLabel({ [name]: row.group[name] })
      const swatch = j === 0 ? el('span', { class: 'swatch', 'aria-hidden': 'true', style: { background: colour(i) } }) : null
      return el('th', { scope: 'row' }, swatch, text)
    })
    const values = columns.map((agg) =>
      el('td', { class: 'num', dataset: { agg, value: JSON.stringify(row.values[agg] ?? null) } }, fmt(row.values[agg])))
    return el('tr', { dataset: { group: JSON.stringify(row.group) } }, cells, values)
  })
  if (!rows.length) {
    const span = Math.max(groupBy.length, 1) + columns.length
    rows.push(el('tr', {}, el('td', { colspan: span, class: 'muted' }, 'No data in this range.')))
  }
  table.tBodies[0].replaceChildren(...rows)
  const shown = answer.groups.length
  table.caption.textContent =
    `${shown} of ${answer.groups_total} groups, ranked by ${columns[0]}, ${utc(answer.from_ms)} to ${utc(answer.to_ms)}`
  table.dataset.fromMs = answer.from_ms
  table.dataset.toMs = answer.to_ms
}

/** The chart's data: x in seconds (the start of each point), then one array per group. */
export function seriesData(answer, agg) {
  const xs = answer.series.map((point) => point.from_ms / 1000)
  const keys = answer.groups.map((row) => JSON.stringify(row.group))
  const ys = keys.map(() => new Array(xs.length).fill(null))
  answer.series.forEach((point, p) => {
    for (const row of point.groups) {
      const g = keys.indexOf(JSON.stringify(row.group))
      if (g >= 0) ys[g][p] = row.values[agg] ?? null
    }
  })
  return [xs, ...ys]
}

/** Draws (or redraws) the chart of the top groups; returns the uPlot instance. */
export function renderChart(container, previous, answer, agg) {
  const data = seriesData(answer, agg)
  const labels = answer.groups.map((row) => groupLabel(row.group))
  const points = data[0].length
  container.dataset.series = String(labels.length)
  container.dataset.points = String(points)
  container.setAttribute('aria-label',
    `Line chart of ${agg} over time for ${labels.length} groups (${labels.join(', ') || 'none'}), ${points} points of ${answer.every}s each`)
  const sameSeries = previous && previous.series.length - 1 === labels.length &&
    labels.every((label, i) => previous.series[i + 1].label === label)
  if (sameSeries) {
    previous.setData(data)
    return previous
  }
  previous?.destroy()
  const width = Math.max(container.clientWidth, 320)
  const options = {
    width,
    height: 300,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
    scales: { x: { time: true } },
    axes: [{}, { values: (u, ticks) => ticks.map(fmt), size: 70 }],
    series: [
      { label: 'UTC' },
      ...labels.map((label, i) => ({
        label,
        stroke: colour(i),
        width: 2,
        points: { show: points <= 60 },
        value: (u, v) => fmt(v),
      })),
    ],
  }
  return new uPlot(options, data, container)
}

/** One small table per facet: its top values and counts. */
export function renderFacets(container, answers) {
  container.replaceChildren(...answers.map(({ facet, status, body }) => {
    const title = el('h3', {}, facet)
    if (status !== 200) {
      return el('section', { dataset: { facet } }, title, el('p', { class: 'muted' }, body?.error ?? 'unavailable'))
    }
    const rows = body.values.map((v) => el('tr', { dataset: { value: JSON.stringify(v.value) } },
      el('td', {}, v.value === null ? '(none)' : String(v.value)),
      el('td', { class: 'num', dataset: { count: String(v.count) } }, fmt(v.count))))
    const table = rows.length
      ? el('table', {}, el('caption', {}, `${body.unique_values} values, ${fmt(body.total)} in all`), el('tbody', {}, rows))
      : el('p', { class: 'muted' }, 'No values in this range.')
    return el('section', { dataset: { facet, fromMs: body.from_ms, toMs: body.to_ms } }, title, table)
  }))
}

const ORDER = { ALERT: 0, NO_DATA: 1, WARN: 2, OK: 3 }
const badge = (status) => el('span', { class: `badge ${status}` }, status.replace('_', ' '))

function thresholdsText(monitor) {
  return Object.entries(monitor.thresholds ?? {}).map(([k, v]) => `${k.replace('_', ' ')} ${monitor.comparator} ${fmt(v)}`).join(', ')
}

/** The monitors with their states, the groups not OK first, and the latest transitions. */
export function renderMonitors(container, eventsList, answer) {
  const { status, body } = answer
  container.dataset.state = status === 200 ? 'ok' : status === 404 ? 'none' : 'waiting'
  if (status !== 200) {
    const text = status === 404 ? 'No monitors.'
      : status === 503 ? 'The monitor states are still being read.'
      : 'The monitors could not be read.'
    container.replaceChildren(el('p', { class: 'muted' }, text))
    eventsList.replaceChildren()
    return
  }
  if (!body.monitors.length) container.replaceChildren(el('p', { class: 'muted' }, 'No monitors.'))
  else container.replaceChildren(...body.monitors.map((m) => {
    const groups = [...m.groups].sort((a, b) => ORDER[a.status] - ORDER[b.status])
    const notOk = groups.filter((g) => g.status !== 'OK')
    const items = notOk.slice(0, 5).map((g) => el('li', { dataset: { status: g.status, group: JSON.stringify(g.group) } },
      badge(g.status), ' ', groupLabel(g.group), ': ', fmt(g.value)))
    if (notOk.length > 5) items.push(el('li', { class: 'muted' }, `and ${notOk.length - 5} more`))
    const okCount = groups.length - notOk.length
    return el('div', { class: 'monitor', dataset: { monitor: m.name, status: m.status } },
      el('p', {}, badge(m.status), ' ', el('strong', {}, m.name)),
      el('p', { class: 'muted' }, `${m.aggregation} of ${m.rollup}${m.filter ? ` where ${m.filter}` : ''} over ${m.window}` +
        `${m.multi ? ', per group' : ''}; ${thresholdsText(m)}`),
      items.length ? el('ul', { class: 'groups' }, items) : null,
      el('p', { class: 'muted' }, m.multi ? `${groups.length} group${groups.length === 1 ? '' : 's'}, ${okCount} OK` : 'over all groups'))
  }))
  const events = (body.events ?? []).slice(0, 10)
  eventsList.replaceChildren(...(events.length ? events.map((e) => el('li', { dataset: { monitor: e.monitor, to: e.to } },
    el('time', { datetime: new Date(e.at).toISOString() }, utc(e.at)), ' ', el('strong', {}, e.monitor), ' ',
    groupLabel(e.group), ': ', e.from, ' → ', badge(e.to), e.value === null ? '' : ` (${fmt(e.value)})`))
    : [el('li', { class: 'muted' }, 'None yet.')]))
}

/** What the answer used: its range, windows, finality, late actions and approximations. */
export function answerMeta(answer) {
  const windows = Object.entries(answer.windows).map(([k, n]) => `${n} × ${k}`).join(', ') || 'none'
  const parts = [`${utc(answer.from_ms)} to ${utc(answer.to_ms)}`, `windows: ${windows}`,
    answer.final ? 'final' : `${answer.open_windows ?? 0} windows still open`]
  if (answer.late) parts.push(`${fmt(answer.late)} late actions not counted`)
  if (answer.approximations?.length) parts.push(answer.approximations.join('; '))
  return parts.join(' · ')
}
