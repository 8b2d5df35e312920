// The pure logic of the browser SDK (sdk/core.js): no page, no network.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import {
  Batch,
  LIMITS,
  SESSION_KEY,
  buildIntakeUrl,
  configErrors,
  memoryStorage,
  mergeContext,
  sanitize,
  serializeBatch,
  touchSession,
  utf8Length,
  uuid,
} from '../../sdk/core.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe('Batch', () => {
  test('is full at 50 events', () => {
    const batch = new Batch()
    for (let i = 1; i < LIMITS.batchEvents; i++) assert.deepEqual(batch.add(`{"n":${i}}`), { before: null, full: false })
    assert.deepEqual(batch.add('{"n":50}'), { before: null, full: true })
    assert.equal(batch.take().length, 50)
    assert.equal(batch.lines.length, 0)
    assert.equal(batch.bytes, 0)
  })

  test('counts the body bytes, newlines included, and is full at exactly 16 KiB', () => {
    const batch = new Batch()
    const line = 'x'.repeat(1023) // with its separating newline, 1 KiB a line after the first
    for (let i = 0; i < 15; i++) assert.equal(batch.add(line).full, false)
    assert.equal(batch.bytes, 15 * 1023 + 14)
    assert.equal(batch.bytes, utf8Length(serializeBatch(batch.lines)))
    const last = 'y'.repeat(LIMITS.batchBytes - batch.bytes - 1)
    assert.deepEqual(batch.add(last), { before: null, full: true })
    assert.equal(utf8Length(serializeBatch(batch.lines)), LIMITS.batchBytes)
  })

  test('hands back the batch so far when a line would take it over 16 KiB', () => {
    const batch = new Batch()
    batch.add('a'.repeat(10_000))
    const { before, full } = batch.add('b'.repeat(7_000))
    assert.deepEqual(before, ['a'.repeat(10_000)])
    assert.equal(full, false)
    assert.deepEqual(batch.lines, ['b'.repeat(7_000)])
    assert.equal(batch.bytes, 7_000)
  })

  test('a single line over the limit is a batch of its own', () => {
    const batch = new Batch()
    batch.add('small')
    const { before, full } = batch.add('z'.repeat(20_000))
    assert.deepEqual(before, ['small'])
    assert.equal(full, true)
  })

  test('measures UTF-8 bytes, not characters', () => {
    const batch = new Batch({ maxBytes: 10 })
    assert.equal(batch.add('ééééé').full, true) // 5 characters, 10 bytes
  })
})

describe('mergeContext', () => {
  test("the action's own values win, nested objects merge key by key", () => {
    const global = { plan: 'premium', cart: { currency: 'EUR', coupon: 'X' }, items: ['a'] }
    const own = { value: 42.12, cart: { coupon: 'SPRING' }, items: ['tomato', 'strawberries'] }
    assert.deepEqual(mergeContext(global, own), {
      plan: 'premium',
      value: 42.12,
      cart: { currency: 'EUR', coupon: 'SPRING' },
      items: ['tomato', 'strawberries'],
    })
  })

  test('a non-object replaces an object and the reverse', () => {
    assert.deepEqual(mergeContext({ a: { b: 1 }, c: 2 }, { a: 3, c: { d: 4 } }), { a: 3, c: { d: 4 } })
  })

  test('changes neither input', () => {
    const global = { cart: { currency: 'EUR' } }
    const own = { cart: { coupon: 'X' } }
    mergeContext(global, own)
    assert.deepEqual(global, { cart: { currency: 'EUR' } })
    assert.deepEqual(own, { cart: { coupon: 'X' } })
  })
})

describe('sanitize', () => {
  test('copies JSON values and leaves out what JSON cannot carry, naming the path', () => {
    const warnings = []
    const cyclic = { name: 'c' }
    cyclic.self = cyclic
    const input = {
      n: 1,
      s: 't',
      ok: true,
      none: null,
      fn() {},
      missing: undefined,
      nan: NaN,
      when: new Date(Date.UTC(2025, 10, 28)),
      big: 10n,
      list: [1, undefined, () => 0],
      nested: { sym: Symbol('x'), keep: 2 },
      cyclic,
    }
    const copy = sanitize(input, (m) => warnings.push(m))
    assert.deepEqual(copy, {
      n: 1,
      s: 't',
      ok: true,
      none: null,
      nan: null,
      when: '2025-11-28T00:00:00.000Z',
      big: '10',
      list: [1, null, null],
      nested: { keep: 2 },
      cyclic: { name: 'c' },
    })
    assert.deepEqual(warnings.sort(), [
      'cyclic.self: circular reference left out',
      'fn: function values cannot be sent; left out',
      'list[1]: undefined values cannot be sent; left out',
      'list[2]: function values cannot be sent; left out',
      'missing: undefined values cannot be sent; left out',
      'nan: NaN is not a finite number; sent as null',
      'nested.sym: symbol values cannot be sent; left out',
    ])
  })

  test('a shared object that is not a cycle is copied twice', () => {
    const shared = { k: 1 }
    assert.deepEqual(sanitize({ a: shared, b: [shared] }), { a: { k: 1 }, b: [{ k: 1 }] })
  })

  test('is a snapshot', () => {
    const items = ['tomato']
    const copy = sanitize({ items })
    items.push('strawberries')
    assert.deepEqual(copy, { items: ['tomato'] })
  })
})

describe('serializeBatch', () => {
  test('one JSON document a line, no trailing newline, round-trips', () => {
    const events = [{ type: 'action', context: { text: 'a\nb' } }, { type: 'action', n: 2 }]
    const body = serializeBatch(events.map((e) => JSON.stringify(e)))
    assert.equal(body.split('\n').length, 2)
    assert.equal(body.endsWith('\n'), false)
    assert.deepEqual(body.split('\n').map((line) => JSON.parse(line)), events)
  })
})

describe('buildIntakeUrl', () => {
  const request = { clientToken: 'pub abc&1', requestId: 'r-1', batchTime: 1764340000000, api: 'fetch' }

  test("uses the query of Datadog's browser SDK", () => {
    const url = new URL(buildIntakeUrl('https://rum.example.com', request))
    assert.equal(url.origin + url.pathname, 'https://rum.example.com/api/v2/rum')
    assert.deepEqual([...url.searchParams.keys()], [
      'ddsource',
      'dd-api-key',
      'dd-evp-origin-version',
      'dd-evp-origin',
      'dd-request-id',
      'batch_time',
      '_dd.api',
    ])
    assert.equal(url.searchParams.get('ddsource'), 'browser')
    assert.equal(url.searchParams.get('dd-api-key'), 'pub abc&1')
    assert.equal(url.searchParams.get('dd-evp-origin'), 'browser')
    assert.equal(url.searchParams.get('dd-request-id'), 'r-1')
    assert.equal(url.searchParams.get('batch_time'), '1764340000000')
  })

  test('keeps a path prefix, with or without a trailing slash', () => {
    for (const intake of ['http://127.0.0.1:8080/rum', 'http://127.0.0.1:8080/rum/']) {
      assert.equal(new URL(buildIntakeUrl(intake, request)).pathname, '/rum/api/v2/rum')
    }
  })

  test('a retry says so', () => {
    const url = new URL(buildIntakeUrl('https://rum.example.com', { ...request, retry: { count: 1, status: 503 } }))
    assert.equal(url.searchParams.get('_dd.retry_count'), '1')
    assert.equal(url.searchParams.get('_dd.retry_after'), '503')
  })
})

describe('touchSession', () => {
  const t0 = 1_764_340_000_000

  test('keeps one session while actions keep coming', () => {
    const storage = memoryStorage()
    const first = touchSession(storage, t0, 100)
    assert.match(first.id, UUID)
    assert.equal(first.sampled, true)
    const later = touchSession(storage, t0 + LIMITS.sessionIdleMs - 1, 100)
    assert.equal(later.id, first.id)
    // Each action moves the idle deadline on.
    assert.equal(touchSession(storage, t0 + 2 * LIMITS.sessionIdleMs - 2, 100).id, first.id)
  })

  test('renews after 15 idle minutes', () => {
    const storage = memoryStorage()
    const first = touchSession(storage, t0, 100)
    assert.notEqual(touchSession(storage, t0 + LIMITS.sessionIdleMs, 100).id, first.id)
  })

  test('renews after 4 hours even when active', () => {
    const storage = memoryStorage()
    const first = touchSession(storage, t0, 100)
    let t = t0
    while (t < t0 + LIMITS.sessionMaxMs - 60_000) {
      t += 60_000
      assert.equal(touchSession(storage, t, 100).id, first.id)
    }
    assert.notEqual(touchSession(storage, t0 + LIMITS.sessionMaxMs, 100).id, first.id)
  })

  test('decides sampling once, when the session starts', () => {
    const storage = memoryStorage()
    assert.equal(touchSession(storage, t0, 30, () => 0.5).sampled, false) // 50 >= 30
    assert.equal(touchSession(storage, t0 + 1, 30, () => 0.1).sampled, false)
    assert.equal(touchSession(memoryStorage(), t0, 30, () => 0.1).sampled, true)
    assert.equal(touchSession(memoryStorage(), t0, 0, () => 0).sampled, false)
  })

  test('replaces unreadable stored state, and survives storage that throws', () => {
    const storage = memoryStorage()
    storage.setItem(SESSION_KEY, '{not json')
    assert.match(touchSession(storage, t0, 100).id, UUID)
    const broken = {
      getItem() {
        throw new Error('SecurityError')
      },
      setItem() {
        throw new Error('QuotaExceededError')
      },
    }
    assert.match(touchSession(broken, t0, 100).id, UUID)
  })
})

describe('configErrors', () => {
  test('a good configuration has none; a relative intake resolves against the page', () => {
    const config = { intake: 'https://rum.example.com', clientToken: 't', applicationId: 'shop' }
    assert.deepEqual(configErrors(config), [])
    assert.deepEqual(configErrors({ ...config, intake: '/rum' }, 'https://shop.example/cart'), [])
  })

  test('names every problem', () => {
    assert.deepEqual(
      configErrors({ intake: 'ftp://x', clientToken: '', service: 1, sessionSampleRate: 101 }),
      [
        'intake: must be an http(s) URL',
        'clientToken: a non-empty string is required',
        'applicationId: a non-empty string is required',
        'service: must be a string',
        'sessionSampleRate: must be a number from 0 to 100',
      ],
    )
    assert.deepEqual(configErrors({ clientToken: 't', applicationId: 'a' }), ['intake: not a URL: undefined'])
    assert.equal(configErrors('https://rum.example.com').length, 1)
  })
})

test('uuid is a random v4 UUID, also without crypto.randomUUID', () => {
  const ids = new Set(Array.from({ length: 100 }, () => uuid()))
  assert.equal(ids.size, 100)
  for (const id of ids) assert.match(id, UUID)
  const fallback = uuid({ getRandomValues: (bytes) => bytes.fill(0xff) })
  assert.equal(fallback, 'ffffffff-ffff-4fff-bfff-ffffffffffff')
})
