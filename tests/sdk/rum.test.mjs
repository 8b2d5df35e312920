// The SDK's behaviour on a page (sdk/rum.js createRum), with a clock, timers and
// network that the tests control: what is sent, when, how and in what shape.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { LIMITS, SDK_VERSION } from '../../sdk/core.js'
import { createRum } from '../../sdk/rum.js'
import { CONFIG, START, fakePage, settle } from './fake-page.mjs'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

function started(options = {}, config = CONFIG) {
  const page = fakePage(options)
  const rum = createRum(page.env)
  assert.equal(rum.init(config), true)
  return { page, rum }
}

describe('the events', () => {
  test('have the raw-action shape, with the global context under the own', async () => {
    const { page, rum } = started()
    rum.setGlobalContextProperty('store', 'paris-01')
    rum.setGlobalContextProperty('value', 0)
    rum.setUser({ id: 'u-42', name: 'Ada', email: 'ada@example.com', plan: 'gold' })
    page.time += 5
    rum.addAction('checkout', { value: 42.12, items: ['tomato', 'strawberries'] })
    rum.flush()
    await settle()
    const [event] = page.sent()
    assert.match(event.session.id, UUID)
    assert.match(event.view.id, UUID)
    assert.match(event.action.id, UUID)
    assert.deepEqual(event, {
      type: 'action',
      date: START + 5,
      application: { id: 'shop' },
      service: 'shop-web',
      env: 'prod',
      version: '1.4.2',
      session: { id: event.session.id },
      usr: { id: 'u-42', name: 'Ada', email: 'ada@example.com', plan: 'gold' },
      view: { id: event.view.id, url: 'https://shop.example/cart?utm_source=news', referrer: 'https://www.google.com/' },
      action: { id: event.action.id, type: 'custom', target: { name: 'checkout' } },
      context: { store: 'paris-01', value: 42.12, items: ['tomato', 'strawberries'] },
    })
  })

  test('leave out what was not set', async () => {
    const { page, rum } = started({}, { intake: CONFIG.intake, clientToken: 't', applicationId: 'a' })
    rum.addAction('open')
    rum.flush()
    await settle()
    const [event] = page.sent()
    for (const key of ['service', 'env', 'version', 'usr', 'context']) assert.equal(key in event, false, key)
  })

  test('follow the global context and the user as they change', async () => {
    const { page, rum } = started()
    rum.setGlobalContextProperty('a', 1)
    rum.setGlobalContextProperty('b', { c: 2 })
    rum.addAction('one')
    rum.removeGlobalContextProperty('a')
    rum.setUser({ id: 7 })
    rum.addAction('two', { b: { d: 3 } })
    rum.clearGlobalContext()
    rum.clearUser()
    rum.addAction('three')
    rum.flush()
    await settle()
    const [one, two, three] = page.sent()
    assert.deepEqual(one.context, { a: 1, b: { c: 2 } })
    assert.deepEqual(two.context, { b: { c: 2, d: 3 } })
    assert.deepEqual(two.usr, { id: '7' })
    assert.equal('context' in three || 'usr' in three, false)
    assert.deepEqual(rum.getGlobalContext(), {})
  })

  test('keep the context as it was when the action happened', async () => {
    const { page, rum } = started()
    const items = ['tomato']
    rum.addAction('checkout', { items })
    items.push('strawberries')
    rum.flush()
    await settle()
    assert.deepEqual(page.sent()[0].context, { items: ['tomato'] })
  })

  test('share one view id per URL; a new URL is a new view referred by the previous one', async () => {
    const { page, rum } = started()
    rum.addAction('a')
    rum.addAction('b')
    page.href = 'https://shop.example/checkout'
    rum.addAction('c')
    rum.flush()
    await settle()
    const [a, b, c] = page.sent().map((event) => event.view)
    assert.equal(a.id, b.id)
    assert.notEqual(c.id, a.id)
    assert.deepEqual({ url: c.url, referrer: c.referrer }, {
      url: 'https://shop.example/checkout',
      referrer: 'https://shop.example/cart?utm_source=news',
    })
  })

  test('keep the session of the tab across page loads', async () => {
    const first = started()
    first.rum.addAction('a')
    first.rum.flush()
    const page = fakePage()
    page.storage = first.page.storage
    page.time = first.page.time + 60_000
    const rum = createRum(page.env)
    rum.init(CONFIG)
    rum.addAction('b')
    rum.flush()
    await settle()
    assert.equal(page.sent()[0].session.id, first.page.sent()[0].session.id)
    assert.notEqual(page.sent()[0].view.id, first.page.sent()[0].view.id)
  })
})

describe('batching', () => {
  test('nothing is sent before a threshold; the 50th action sends a batch of 50', async () => {
    // Small events, so that 50 of them stay under the byte limit.
    const config = { intake: CONFIG.intake, clientToken: 't', applicationId: 'a' }
    const { page, rum } = started({ href: 'https://s/', referrer: '' }, config)
    for (let i = 1; i < 50; i++) rum.addAction('a', { i })
    await settle()
    assert.equal(page.requests.length, 0)
    rum.addAction('b')
    await settle()
    assert.equal(page.fetches.length, 1)
    assert.equal(page.sent().length, 50)
    assert.ok(new TextEncoder().encode(page.fetches[0].body).length < LIMITS.batchBytes)
    assert.deepEqual(page.sent().map((e) => e.context?.i), [...Array.from({ length: 49 }, (_, i) => i + 1), undefined])
  })

  test('no request body goes over 16 KiB and no action is lost', async () => {
    const { page, rum } = started()
    const note = 'n'.repeat(3000)
    for (let i = 0; i < 20; i++) rum.addAction('review', { i, note })
    rum.flush()
    await settle()
    assert.ok(page.fetches.length >= 4)
    for (const request of page.fetches) assert.ok(new TextEncoder().encode(request.body).length <= LIMITS.batchBytes)
    assert.deepEqual(page.sent().map((e) => e.context.i), Array.from({ length: 20 }, (_, i) => i))
  })

  test('a batch goes out 30 s after its first action', async () => {
    const { page, rum } = started()
    rum.addAction('a')
    await page.advance(20_000)
    rum.addAction('b')
    await page.advance(LIMITS.flushIntervalMs - 20_000 - 1)
    assert.equal(page.requests.length, 0)
    await page.advance(1)
    assert.deepEqual(page.sent().map((e) => e.action.target.name), ['a', 'b'])
    // The timer starts again with the next action, not before.
    await page.advance(60_000)
    assert.equal(page.requests.length, 1)
    rum.addAction('c')
    await page.advance(LIMITS.flushIntervalMs)
    assert.equal(page.requests.length, 2)
  })

  test('a batch sent for its size leaves the next one its full 30 s', async () => {
    const { page, rum } = started()
    const note = 'n'.repeat(9000)
    rum.addAction('a', { note })
    await page.advance(20_000)
    rum.addAction('b', { note }) // does not fit: "a" leaves now, "b" opens a new batch
    await settle()
    assert.equal(page.requests.length, 1)
    await page.advance(LIMITS.flushIntervalMs - 1)
    assert.equal(page.requests.length, 1)
    await page.advance(1)
    assert.deepEqual(page.sent().map((e) => e.action.target.name), ['a', 'b'])
  })

  test('requests use the wire format: text/plain NDJSON POST with keepalive, without cookies', async () => {
    const { page, rum } = started()
    rum.addAction('a')
    rum.addAction('b')
    await page.advance(LIMITS.flushIntervalMs)
    const [request] = page.fetches
    assert.equal(request.method, 'POST')
    assert.equal(request.keepalive, true)
    assert.equal(request.credentials, 'omit')
    assert.equal(request.headers['Content-Type'], 'text/plain;charset=UTF-8')
    assert.equal(request.body.split('\n').length, 2)
    const url = new URL(request.url)
    assert.equal(url.origin + url.pathname, 'https://rum.example.com/api/v2/rum')
    assert.equal(url.searchParams.get('ddsource'), 'browser')
    assert.equal(url.searchParams.get('dd-api-key'), 'pub-token')
    assert.equal(url.searchParams.get('dd-evp-origin'), 'browser')
    assert.equal(url.searchParams.get('dd-evp-origin-version'), SDK_VERSION)
    assert.match(url.searchParams.get('dd-request-id'), UUID)
    assert.equal(url.searchParams.get('batch_time'), String(START + LIMITS.flushIntervalMs))
    assert.equal(url.searchParams.get('_dd.api'), 'fetch')
  })
})

describe('leaving the page', () => {
  test('pagehide sends what waits with a beacon', async () => {
    const { page, rum } = started()
    rum.addAction('checkout')
    page.fire('pagehide')
    assert.equal(page.beacons.length, 1)
    assert.equal(page.fetches.length, 0)
    assert.equal(new URL(page.beacons[0].url).searchParams.get('_dd.api'), 'beacon')
    assert.equal(page.timers.length, 0)
    page.fire('pagehide') // nothing left: nothing more is sent
    assert.equal(page.requests.length, 1)
  })

  test('the page turning hidden sends with a beacon; turning visible does not', () => {
    const { page, rum } = started()
    rum.addAction('a')
    page.fire('visibilitychange')
    assert.equal(page.requests.length, 0)
    page.hidden = true
    page.fire('visibilitychange')
    assert.equal(page.beacons.length, 1)
  })

  test('a refused beacon falls back to fetch with keepalive', () => {
    const { page, rum } = started()
    page.beaconAccepts = false
    rum.addAction('a')
    page.fire('pagehide')
    assert.equal(page.fetches.length, 1)
    assert.equal(page.fetches[0].keepalive, true)
  })
})

describe('delivery failures', () => {
  test('408, 429, 5xx and network errors are retried with backoff, then dropped with a warning', async () => {
    const { page, rum } = started()
    page.statuses = [503, 'Failed to fetch', 429]
    rum.addAction('a')
    rum.flush()
    await settle()
    assert.equal(page.fetches.length, 1)
    await page.advance(LIMITS.retryBaseMs)
    assert.equal(page.fetches.length, 2)
    assert.equal(new URL(page.fetches[1].url).searchParams.get('_dd.retry_count'), '1')
    assert.equal(new URL(page.fetches[1].url).searchParams.get('_dd.retry_after'), '503')
    await page.advance(2 * LIMITS.retryBaseMs)
    assert.equal(page.fetches.length, 3)
    assert.equal(page.fetches[2].body, page.fetches[0].body)
    await page.advance(60_000)
    assert.equal(page.fetches.length, 3)
    assert.deepEqual(page.warnings, ['[rum] a batch of 1 actions was not accepted after 3 tries (429); dropped'])
  })

  test('a success after a retry ends the retries', async () => {
    const { page, rum } = started()
    page.statuses = [500, 202]
    rum.addAction('a')
    rum.flush()
    await page.advance(60_000)
    assert.equal(page.fetches.length, 2)
    assert.deepEqual(page.warnings, [])
  })

  test('another 4xx is not retried', async () => {
    const { page, rum } = started()
    page.statuses = [403]
    rum.addAction('a')
    rum.flush()
    await page.advance(60_000)
    assert.equal(page.fetches.length, 1)
    assert.deepEqual(page.warnings, ['[rum] the intake refused a batch of 1 actions: HTTP 403'])
  })
})

describe('bad input sends nothing and throws nothing', () => {
  test('addAction without a usable name warns', async () => {
    const { page, rum } = started()
    for (const name of [undefined, '', '   ', 42, null, { name: 'x' }, 'x'.repeat(LIMITS.maxNameLength + 1)]) {
      rum.addAction(name)
    }
    rum.flush()
    page.fire('pagehide')
    await page.advance(60_000)
    assert.equal(page.requests.length, 0)
    assert.equal(page.warnings.length, 7)
    assert.match(page.warnings[0], /^\[rum\] addAction\(\) needs a non-empty name; got undefined: ignored$/)
  })

  test('names and contexts that cannot even be shown or copied do not throw', async () => {
    const { page, rum } = started()
    rum.addAction(10n)
    rum.addAction(Symbol('checkout'))
    const hostile = {}
    Object.defineProperty(hostile, 'value', { enumerable: true, get: () => { throw new Error('no') } })
    rum.addAction('checkout', hostile)
    rum.setGlobalContextProperty('cart', hostile)
    rum.addAction('ok')
    rum.flush()
    await settle()
    assert.deepEqual(page.sent().map((e) => e.action.target.name), ['ok'])
    assert.deepEqual(page.warnings, [
      '[rum] addAction() needs a non-empty name; got 10: ignored',
      '[rum] addAction() needs a non-empty name; got Symbol(checkout): ignored',
      '[rum] addAction() failed and was ignored: Error: no',
      '[rum] setGlobalContextProperty() failed and was ignored: Error: no',
    ])
  })

  test('a context that is not a plain object is left out; the action is still sent', async () => {
    const { page, rum } = started()
    rum.setGlobalContextProperty('store', 'paris-01')
    rum.addAction('checkout', ['tomato'])
    rum.addAction('checkout', 'cheap')
    rum.flush()
    await settle()
    assert.deepEqual(page.sent().map((e) => e.context), [{ store: 'paris-01' }, { store: 'paris-01' }])
    assert.equal(page.warnings.length, 2)
  })

  test('an action over 256 KiB is dropped with a warning, the others go', async () => {
    const { page, rum } = started()
    rum.addAction('huge', { blob: 'x'.repeat(LIMITS.maxEventBytes) })
    rum.addAction('small')
    rum.flush()
    await settle()
    assert.deepEqual(page.sent().map((e) => e.action.target.name), ['small'])
    assert.match(page.warnings[0], /^\[rum\] action "huge" is \d+ bytes, over 262144; not sent$/)
  })

  test('a bad configuration is refused with every error named, and nothing is sent', async () => {
    const page = fakePage()
    const rum = createRum(page.env)
    assert.equal(rum.init({ intake: 'not a url', applicationId: 'shop' }), false)
    assert.deepEqual(page.errors, [
      '[rum] init() ignored: intake: not a URL: "not a url"',
      '[rum] init() ignored: clientToken: a non-empty string is required',
    ])
    rum.addAction('checkout')
    rum.flush()
    page.fire('pagehide')
    await page.advance(60_000)
    assert.equal(page.requests.length, 0)
  })

  test('setUser and the global context refuse what they cannot use', async () => {
    const { page, rum } = started()
    rum.setUser('u-42')
    rum.setUser(null)
    rum.setGlobalContextProperty('', 1)
    rum.setGlobalContextProperty('fn', () => 1)
    rum.addAction('a')
    rum.flush()
    await settle()
    assert.equal('usr' in page.sent()[0] || 'context' in page.sent()[0], false)
    assert.equal(page.warnings.length, 4)
  })

  test('a second init is ignored', async () => {
    const { page, rum } = started()
    assert.equal(rum.init({ ...CONFIG, applicationId: 'other' }), false)
    rum.addAction('a')
    rum.flush()
    await settle()
    assert.equal(page.sent()[0].application.id, 'shop')
    assert.deepEqual(page.warnings, ['[rum] init() was already called; this call is ignored'])
  })
})

describe('sampling and the start', () => {
  test('a session sampled out sends nothing', async () => {
    const { page, rum } = started({}, { ...CONFIG, sessionSampleRate: 0 })
    for (let i = 0; i < 60; i++) rum.addAction('a')
    rum.flush()
    await settle()
    assert.equal(page.requests.length, 0)
  })

  test('actions before init are sent once init runs, with their own time and page', async () => {
    const page = fakePage()
    const rum = createRum(page.env)
    rum.addAction('early', { n: 1 })
    page.time += 1000
    page.href = 'https://shop.example/cart/2'
    assert.equal(page.requests.length, 0)
    rum.init(CONFIG)
    rum.addAction('late')
    rum.flush()
    await settle()
    const [early, late] = page.sent()
    assert.equal(early.date, START)
    assert.equal(early.view.url, 'https://shop.example/cart?utm_source=news')
    assert.deepEqual(early.context, { n: 1 })
    assert.equal(late.date, START + 1000)
    assert.equal(late.view.url, 'https://shop.example/cart/2')
    assert.equal(early.session.id, late.session.id)
  })

  test('a relative intake is resolved against the page', async () => {
    const { page, rum } = started({}, { ...CONFIG, intake: '/rum' })
    rum.addAction('a')
    rum.flush()
    await settle()
    assert.equal(new URL(page.fetches[0].url).origin + new URL(page.fetches[0].url).pathname, 'https://shop.example/rum/api/v2/rum')
  })
})
