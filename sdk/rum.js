/**
 * rum.js: a tiny, dependency-free browser SDK that sends custom user actions to
 * the rum-pipeline intake.
 *
 *   import * as rum from './rum.js'
 *   rum.init({intake: 'https://rum.example.com', clientToken: 'pub-...', applicationId: 'shop',
 *             service: 'shop-web', env: 'prod', version: '1.4.2'})
 *   rum.setUser({id: 'u-42'})
 *   rum.addAction('checkout', {value: 42.12, items: ['tomato', 'strawberries']})
 *
 * Requests use the wire format of Datadog's browser SDK (NDJSON in a text/plain
 * body, POST /api/v2/rum?ddsource=browser&dd-api-key=...), so one intake serves
 * both SDKs. Events are batched: a batch goes out at 50 events, at 16 KiB, 30 s
 * after its first event, and when the page is hidden or left (then with
 * navigator.sendBeacon, which outlives the page). Bad input never throws and
 * never reaches the network: it is reported with console.warn. The pure logic
 * lives in core.js, next to this file.
 */

import {
  Batch,
  LIMITS,
  SESSION_KEY,
  buildIntakeUrl,
  configErrors,
  isPlainObject,
  memoryStorage,
  mergeContext,
  sanitize,
  serializeBatch,
  touchSession,
  utf8Length,
  uuid,
} from './core.js'

export { LIMITS, SDK_VERSION } from './core.js'

const PREFIX = '[rum]'

/** A value as a warning shows it, whatever it is. */
const describe = (value) => (value && typeof value === 'object' ? 'an object' : String(value))

/** The browser's globals, looked up when used so that importing this module never touches them. */
export function browserEnvironment() {
  const g = globalThis
  let storage
  return {
    now: () => Date.now(),
    href: () => g.location?.href ?? '',
    referrer: () => g.document?.referrer ?? '',
    hidden: () => g.document?.visibilityState === 'hidden',
    storage() {
      if (!storage) {
        try {
          storage = g.sessionStorage
          storage.getItem(SESSION_KEY)
        } catch {
          storage = undefined
        }
        storage = storage || memoryStorage()
      }
      return storage
    },
    listen(type, handler) {
      const target = type === 'visibilitychange' ? g.document : g
      target?.addEventListener?.(type, handler, { capture: true })
    },
    beacon: (url, body) =>
      typeof g.navigator?.sendBeacon === 'function' &&
      g.navigator.sendBeacon(url, new Blob([body], { type: 'text/plain' })),
    fetch: (url, init) => g.fetch(url, init),
    setTimeout: (fn, ms) => g.setTimeout(fn, ms),
    clearTimeout: (id) => g.clearTimeout(id),
    random: () => Math.random(),
    console: g.console,
  }
}

/** An SDK instance bound to ``env`` (see browserEnvironment); the module's functions use one. */
export function createRum(env = browserEnvironment()) {
  let config = null
  let globalContext = {}
  let user = null
  let view = null
  let sessionId = null
  let timer = null
  const pending = []
  const batch = new Batch()
  const warn = (message) => env.console?.warn(`${PREFIX} ${message}`)

  function currentView() {
    const href = env.href()
    if (!view || view.url !== href) {
      view = { id: uuid(), url: href, referrer: view ? view.url : env.referrer() }
    }
    return view
  }

  function buildEvent({ name, own, date, page }) {
    const session = touchSession(env.storage(), env.now(), config.sessionSampleRate ?? 100, env.random)
    if (!session.sampled) return null
    if (session.id !== sessionId) {
      if (sessionId !== null) view = null // a renewed session starts a new view
      sessionId = session.id
    }
    page = page ?? currentView()
    const event = { type: 'action', date, application: { id: config.applicationId } }
    for (const key of ['service', 'env', 'version']) if (config[key] !== undefined) event[key] = config[key]
    event.session = { id: session.id }
    if (user) event.usr = user
    event.view = { ...page }
    event.action = { id: uuid(), type: 'custom', target: { name } }
    const context = mergeContext(globalContext, own)
    if (Object.keys(context).length) event.context = context
    return event
  }

  function enqueue(event) {
    const line = JSON.stringify(event)
    const size = utf8Length(line)
    if (size > LIMITS.maxEventBytes) {
      warn(`action "${event.action.target.name}" is ${size} bytes, over ${LIMITS.maxEventBytes}; not sent`)
      return
    }
    const { before, full } = batch.add(line, size)
    if (before) {
      // The 30 s count starts again with the line that opened the new batch.
      env.clearTimeout(timer)
      timer = null
      send(before, 'fetch')
    }
    if (full) flush('fetch')
    else if (timer === null) timer = env.setTimeout(() => flush('fetch'), LIMITS.flushIntervalMs)
  }

  function flush(api = 'fetch') {
    if (timer !== null) {
      env.clearTimeout(timer)
      timer = null
    }
    if (config && batch.lines.length) send(batch.take(), api)
  }

  function send(lines, api, attempt = 1, retry = undefined) {
    const body = serializeBatch(lines)
    const url = (transport) =>
      buildIntakeUrl(config.intake, {
        clientToken: config.clientToken,
        requestId: uuid(),
        batchTime: env.now(),
        api: transport,
        retry,
      })
    const size = utf8Length(body)
    // A page being left only lets a beacon through; fetch with keepalive is the fallback.
    if (api === 'beacon' && size <= LIMITS.keepaliveBytes && env.beacon(url('beacon'), body)) return
    const again = (status) => {
      if (attempt >= LIMITS.maxAttempts) {
        warn(`a batch of ${lines.length} actions was not accepted after ${attempt} tries (${status}); dropped`)
        return
      }
      const delay = LIMITS.retryBaseMs * 2 ** (attempt - 1)
      env.setTimeout(() => send(lines, 'fetch', attempt + 1, { count: attempt, status }), delay)
    }
    let request
    try {
      request = env.fetch(url('fetch'), {
        method: 'POST',
        body,
        keepalive: size <= LIMITS.keepaliveBytes,
        credentials: 'omit',
        mode: 'cors',
        headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
      })
    } catch (error) {
      again(String(error))
      return
    }
    Promise.resolve(request).then(
      (response) => {
        const status = response.status
        if (status === 408 || status === 429 || status >= 500) again(status)
        else if (status >= 400) warn(`the intake refused a batch of ${lines.length} actions: HTTP ${status}`)
      },
      () => again(0),
    )
  }

  function record(item) {
    const event = buildEvent(item)
    if (event) enqueue(event)
  }

  const api = {
    /** Start sending; a second call, or one with a bad configuration, changes nothing. */
    init(options) {
      if (config) {
        warn('init() was already called; this call is ignored')
        return false
      }
      const errors = configErrors(options, env.href() || undefined)
      if (errors.length) {
        for (const error of errors) env.console?.error(`${PREFIX} init() ignored: ${error}`)
        return false
      }
      config = { ...options, intake: new URL(options.intake, env.href() || undefined).href }
      env.listen('pagehide', () => flush('beacon'))
      env.listen('visibilitychange', () => env.hidden() && flush('beacon'))
      for (const item of pending.splice(0)) record(item)
      return true
    },

    /** Record the custom action ``name`` with ``context`` merged over the global context. */
    addAction(name, context = undefined) {
      if (typeof name !== 'string' || !name.trim()) {
        const shown = typeof name === 'string' ? JSON.stringify(name) : describe(name)
        warn(`addAction() needs a non-empty name; got ${shown}: ignored`)
        return
      }
      if (name.length > LIMITS.maxNameLength) {
        warn(`addAction(): a name is at most ${LIMITS.maxNameLength} characters: ignored`)
        return
      }
      let own = {}
      if (context !== undefined && context !== null) {
        if (isPlainObject(context)) own = sanitize(context, (m) => warn(`addAction("${name}") context.${m}`))
        else warn(`addAction("${name}"): the context must be a plain object; sent without it`)
      }
      if (config) {
        record({ name, own, date: env.now() })
      } else if (pending.length < LIMITS.maxPending) {
        pending.push({ name, own, date: env.now(), page: { ...currentView() } })
      } else {
        warn(`addAction("${name}") before init(): more than ${LIMITS.maxPending} waiting; dropped`)
      }
    },

    setGlobalContextProperty(key, value) {
      if (typeof key !== 'string' || !key) {
        warn('setGlobalContextProperty() needs a non-empty string key: ignored')
        return
      }
      const copy = sanitize(value, (m) => warn(`global context ${m}`), key)
      if (copy !== undefined) globalContext = { ...globalContext, [key]: copy }
    },

    removeGlobalContextProperty(key) {
      const { [key]: _removed, ...rest } = globalContext
      globalContext = rest
    },

    clearGlobalContext() {
      globalContext = {}
    },

    getGlobalContext() {
      return sanitize(globalContext)
    },

    /** Attach a user ({id, name, email, ...}) to the actions that follow. */
    setUser(next) {
      if (!isPlainObject(next)) {
        warn('setUser() takes an object such as {id, name, email}: ignored')
        return
      }
      const copy = sanitize(next, (m) => warn(`setUser() ${m}`), 'usr')
      if (copy.id !== undefined && typeof copy.id !== 'string') copy.id = String(copy.id)
      user = copy
    },

    clearUser() {
      user = null
    },

    /** Send what is waiting now (e.g. before a redirect the page controls). */
    flush() {
      flush('fetch')
    },
  }
  // Whatever the page passes (a getter that throws, a hostile proxy), the SDK never breaks the page.
  for (const [name, method] of Object.entries(api)) {
    api[name] = (...args) => {
      try {
        return method(...args)
      } catch (error) {
        warn(`${name}() failed and was ignored: ${error}`)
        return undefined
      }
    }
  }
  return api
}

const rum = createRum()

export const init = rum.init
export const addAction = rum.addAction
export const setGlobalContextProperty = rum.setGlobalContextProperty
export const removeGlobalContextProperty = rum.removeGlobalContextProperty
export const clearGlobalContext = rum.clearGlobalContext
export const getGlobalContext = rum.getGlobalContext
export const setUser = rum.setUser
export const clearUser = rum.clearUser
export const flush = rum.flush
