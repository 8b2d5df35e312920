// The shop's static web server: the pages in pages/, the repository's sdk/ at
// /sdk/, and Datadog's browser SDK bundle from node_modules at /vendor/. It runs
// on its own port so that the pages post to the intake cross-origin, with CORS.
//
//   node serve.mjs [--host 127.0.0.1] [--port 0]
//   -> prints "static: listening on http://HOST:PORT" once ready; Ctrl-C stops it.
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import http from 'node:http'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const HERE = path.dirname(fileURLToPath(import.meta.url))

/** URL prefix -> folder served under it. */
export const ROOTS = {
  '/sdk/': path.resolve(HERE, '../../sdk'),
  '/vendor/': path.join(HERE, 'node_modules/@datadog/browser-rum/bundle'),
  '/': path.join(HERE, 'pages'),
}

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.ico': 'image/x-icon',
}

/** The file a request path names, or null when it is outside every root. */
export function resolveFile(urlPath) {
  let decoded
  try {
    decoded = decodeURIComponent(urlPath)
  } catch {
    return null
  }
  for (const [prefix, root] of Object.entries(ROOTS)) {
    if (!decoded.startsWith(prefix)) continue
    const rest = decoded.slice(prefix.length) || 'index.html'
    const file = path.resolve(root, rest)
    return file.startsWith(root + path.sep) ? file : null
  }
  return null
}

async function handle(request, response) {
  const { pathname } = new URL(request.url, 'http://localhost')
  const file = resolveFile(pathname)
  const info = file && (await stat(file).catch(() => null))
  if (!info?.isFile() || !['GET', 'HEAD'].includes(request.method)) {
    response.writeHead(info?.isFile() ? 405 : 404, { 'Content-Type': 'text/plain' })
    response.end(info?.isFile() ? 'method not allowed\n' : 'not found\n')
    return
  }
  response.writeHead(200, {
    'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream',
    'Content-Length': info.size,
    'Cache-Control': 'no-store',
  })
  if (request.method === 'HEAD') response.end()
  else createReadStream(file).pipe(response)
}

/** Start the server; resolves to {server, url} once it listens. */
export function startStaticServer({ host = '127.0.0.1', port = 0 } = {}) {
  const server = http.createServer((request, response) => {
    handle(request, response).catch((error) => {
      response.writeHead(500, { 'Content-Type': 'text/plain' })
      response.end(`${error}\n`)
    })
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      const { port: bound } = server.address()
      resolve({ server, url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}` })
    })
  })
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: { host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string', default: '0' } },
  })
  const { server, url } = await startStaticServer({ host: values.host, port: Number(values.port) })
  console.log(`static: listening on ${url}`)
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)))
}
