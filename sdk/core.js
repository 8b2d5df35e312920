/**
 * The pure logic of rum.js: limits, event and context handling, batching, the
 * wire format and sessions. Nothing here touches the browser; rum.js binds it
 * to the page.
 */

export const SDK_VERSION = '1.0.0'

/** Limits; the batch ones are those of Datadog's SDK. */
export const LIMITS = Object.freeze({
  batchEvents: 50,
  batchBytes: 16 * 1024,
  flushIntervalMs: 30_000,
  /** An event larger than this is dropped with a warning (the intake would refuse it). */
  maxEventBytes: 256 * 1024,
  maxNameLength: 1000,
  /** Actions called before init() that are kept and sent once init() runs. */
  maxPending: 100,
  /** A session ends after 15 minutes without an action, or after 4 hours. */
  sessionIdleMs: 15 * 60_000,
  sessionMaxMs: 4 * 60 * 60_000,
  /** Sends of one batch (first try included) when the intake is unreachable or answers 408/429/5xx. */
  maxAttempts: 3,
  retryBaseMs: 1000,
  /** Browsers refuse keepalive and beacon bodies above 64 KiB in flight. */
  keepaliveBytes: 60_000,
})

export const SESSION_KEY = '_rum_pipeline_s'

/** A random v4 UUID, from crypto.randomUUID or crypto.getRandomValues. */
export function uuid(crypto = globalThis.crypto) {
  if (crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID()
  const bytes = new Uint8Array(16)
  if (crypto && typeof crypto.getRandomValues === 'function') crypto.getRandomValues(bytes)
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256)
  bytes[6] = (bytes[6] & 0x0f) | 0x40
  bytes[8] = (bytes[8] & 0x3f) | 0x80
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

export function isPlainObject(value) {
  if (value === null || typeof value !== 'object') return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/**
 * A JSON-safe deep copy of ``value``: what JSON cannot carry (functions,
 * symbols, undefined, cycles) is left out with a warning naming its path, Dates
 * become ISO strings, BigInts strings, NaN and infinities null. A snapshot, so
 * later changes by the application do not alter an event already recorded.
 */
export function sanitize(value, warn = () => {}, path = '', seen = new Set()) {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value
    case 'number':
      if (Number.isFinite(value)) return value
      warn(`${path || 'value'}: ${value} is not a finite number; sent as null`)
      return null
    case 'bigint':
      return value.toString()
    case 'undefined':
    case 'function':
    case 'symbol':
      warn(`${path || 'value'}: ${typeof value} values cannot be sent; left out`)
      return undefined
  }
  if (value === null) return null
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString()
  if (seen.has(value)) {
    warn(`${path || 'value'}: circular reference left out`)
    return undefined
  }
  seen.add(value)
  try {
    if (Array.isArray(value)) {
      return value.map((item, i) => {
        const copy = sanitize(item, warn, `${path}[${i}]`, seen)
        return copy === undefined ? null : copy
      })
    }
    if (typeof value.toJSON === 'function') return sanitize(value.toJSON(), warn, path, seen)
    const out = {}
    for (const key of Object.keys(value)) {
      const copy = sanitize(value[key], warn, path ? `${path}.${key}` : key, seen)
      if (copy !== undefined) out[key] = copy
    }
    return out
  } finally {
    seen.delete(value)
  }
}

/**
 * ``own`` merged over ``base``, as Datadog's SDK merges an action's context over
 * the global context: nested objects merge key by key, anything else from
 * ``own`` replaces what ``base`` has. Neither input is modified.
 */
export function mergeContext(base, own) {
  const out = { ...base }
  for (const [key, value] of Object.entries(own)) {
    out[key] = isPlainObject(value) && isPlainObject(out[key]) ? mergeContext(out[key], value) : value
  }
  return out
}

const encoder = new TextEncoder()

/** Size in bytes of ``text`` as UTF-8. */
export function utf8Length(text) {
  return encoder.encode(text).length
}

/** A batch body: one JSON document a line (NDJSON), as the intake reads it. */
export function serializeBatch(lines) {
  return lines.join('\n')
}

/** The intake URL of one request: ``<intake>/api/v2/rum?ddsource=browser&...``. */
export function buildIntakeUrl(intake, { clientToken, requestId, batchTime, api, retry }) {
  const url = new URL(intake)
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/api/v2/rum`
  const params = [
    'ddsource=browser',
    `dd-api-key=${encodeURIComponent(clientToken)}`,
    `dd-evp-origin-version=${encodeURIComponent(SDK_VERSION)}`,
    'dd-evp-origin=browser',
    `dd-request-id=${requestId}`,
    `batch_time=${batchTime}`,
    `_dd.api=${api}`,
  ]
  if (retry) params.push(`_dd.retry_count=${retry.count}`, `_dd.retry_after=${retry.status}`)
  url.search = `?${params.join('&')}`
  return url.href
}

/**
 * The session of this tab, from ``storage`` (sessionStorage in a browser):
 * kept while actions keep coming, renewed after 15 idle minutes or 4 hours.
 * Whether it is sampled in is decided once, when it starts.
 */
export function touchSession(storage, now, sampleRate, random = Math.random) {
  let session = null
  try {
    session = JSON.parse(storage.getItem(SESSION_KEY) || 'null')
  } catch {
    session = null
  }
  const valid =
    session &&
    typeof session.id === 'string' &&
    now - session.last < LIMITS.sessionIdleMs &&
    now - session.created < LIMITS.sessionMaxMs
  if (!valid) session = { id: uuid(), sampled: random() * 100 < sampleRate, created: now }
  session.last = now
  try {
    storage.setItem(SESSION_KEY, JSON.stringify(session))
  } catch {
    // Storage full or forbidden (sandboxed frame): the session then lives as long as the page.
  }
  return session
}

/** A memory-only stand-in for sessionStorage where it cannot be used. */
export function memoryStorage() {
  const items = new Map()
  return {
    getItem: (key) => (items.has(key) ? items.get(key) : null),
    setItem: (key, value) => void items.set(key, String(value)),
  }
}

/** Problems with an init() configuration, each named; empty when it is usable. */
export function configErrors(config, baseUrl) {
  if (!isPlainObject(config)) return ['init() takes one object: {intake, clientToken, applicationId, ...}']
  const errors = []
  try {
    // A path ("/rum") is resolved against the page; anything else must be a whole URL.
    const relative = typeof config.intake === 'string' && config.intake.startsWith('/')
    const url = relative ? new URL(config.intake, baseUrl) : new URL(config.intake)
    if (url.protocol !== 'http:' && url.protocol !== 'https:') errors.push('intake: must be an http(s) URL')
  } catch {
    errors.push(`intake: not a URL: ${JSON.stringify(config.intake)}`)
  }
  for (const key of ['clientToken', 'applicationId']) {
    if (typeof config[key] !== 'string' || !config[key]) errors.push(`${key}: a non-empty string is required`)
  }
  for (const key of ['service', 'env', 'version']) {
    if (config[key] !== undefined && typeof config[key] !== 'string') errors.push(`${key}: must be a string`)
  }
  const rate = config.sessionSampleRate
  if (rate !== undefined && !(typeof rate === 'number' && rate >= 0 && rate <= 100)) {
    errors.push('sessionSampleRate: must be a number from 0 to 100')
  }
  return errors
}

/**
 * Events waiting to be sent. ``add`` returns what must be sent first (the batch
 * so far when the new line would take it over the byte limit) and whether the
 * batch is full after the line was added.
 */
export class Batch {
  constructor({ maxEvents = LIMITS.batchEvents, maxBytes = LIMITS.batchBytes } = {}) {
    this.maxEvents = maxEvents
    this.maxBytes = maxBytes
    this.lines = []
    this.bytes = 0
  }

  /** Bytes of the body if ``size`` more bytes were added as a new line. */
  sizeWith(size) {
    return this.lines.length ? this.bytes + 1 + size : size
  }

  add(line, size = utf8Length(line)) {
    let before = null
    if (this.lines.length && this.sizeWith(size) > this.maxBytes) before = this.take()
    this.bytes = this.sizeWith(size)
    this.lines.push(line)
    return { before, full: this.lines.length >= this.maxEvents || this.bytes >= this.maxBytes }
  }

  /** Empty the batch and return its lines. */
  take() {
    const lines = this.lines
    this.lines = []
    this.bytes = 0
    return lines
  }
}
