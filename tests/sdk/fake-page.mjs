// A page for createRum() to run in under Node: a settable clock and URL, timers
// that run when the test advances the clock, and recorded beacons and fetches.
import { memoryStorage } from '../../sdk/core.js'

export const START = 1_764_340_000_000

export function fakePage({ href = 'https://shop.example/cart?utm_source=news', referrer = 'https://www.google.com/' } = {}) {
  const page = {
    time: START,
    href,
    referrer,
    hidden: false,
    storage: memoryStorage(),
    random: () => 0.5,
    listeners: new Map(),
    timers: [],
    nextTimer: 1,
    beacons: [],
    fetches: [],
    requests: [],
    warnings: [],
    errors: [],
    /** What sendBeacon answers (false: the browser refused to queue it). */
    beaconAccepts: true,
    /** HTTP status of the answers to fetch, one per call; the last one repeats; a string rejects. */
    statuses: [202],
  }
  page.env = {
    now: () => page.time,
    href: () => page.href,
    referrer: () => page.referrer,
    hidden: () => page.hidden,
    storage: () => page.storage,
    listen: (type, handler) => page.listeners.set(type, [...(page.listeners.get(type) ?? []), handler]),
    beacon(url, body) {
      if (page.beaconAccepts) {
        page.beacons.push({ url, body })
        page.requests.push({ url, body })
      }
      return page.beaconAccepts
    },
    fetch(url, init) {
      page.fetches.push({ url, ...init })
      page.requests.push({ url, body: init.body })
      const status = page.statuses.length > 1 ? page.statuses.shift() : page.statuses[0]
      return typeof status === 'string' ? Promise.reject(new TypeError(status)) : Promise.resolve({ status })
    },
    setTimeout(fn, ms) {
      const id = page.nextTimer++
      page.timers.push({ id, at: page.time + ms, fn })
      return id
    },
    clearTimeout(id) {
      page.timers = page.timers.filter((timer) => timer.id !== id)
    },
    random: () => page.random(),
    console: { warn: (m) => page.warnings.push(m), error: (m) => page.errors.push(m) },
  }
  /** Move the clock on by ``ms``, running the timers that fall due, in order. */
  page.advance = async (ms) => {
    const until = page.time + ms
    for (;;) {
      await settle()
      page.timers.sort((a, b) => a.at - b.at)
      const due = page.timers[0]
      if (!due || due.at > until) break
      page.timers.shift()
      page.time = due.at
      due.fn()
    }
    page.time = until
    await settle()
  }
  page.fire = (type) => (page.listeners.get(type) ?? []).forEach((handler) => handler({ type }))
  /** Every request body sent so far, beacons and fetches, in order of sending, as parsed events. */
  page.sent = () =>
    page.requests.flatMap((request) => request.body.split('\n').map((line) => JSON.parse(line)))
  return page
}

/** Let pending promise callbacks run. */
export async function settle() {
  for (let i = 0; i < 5; i++) await Promise.resolve()
}

export const CONFIG = Object.freeze({
  intake: 'https://rum.example.com',
  clientToken: 'pub-token',
  applicationId: 'shop',
  service: 'shop-web',
  env: 'prod',
  version: '1.4.2',
})
