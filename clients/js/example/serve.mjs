// Serves the example page and the built bundle on http://127.0.0.1:8000/
// and forwards /api/* to roomcast api (API_URL, default
// http://127.0.0.1:8081, the API of `make run`), so that the page and the
// API share an origin and the browser needs no CORS.
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const api = new URL(process.env.API_URL ?? 'http://127.0.0.1:8081');
const port = Number(process.env.PORT ?? 8000);
const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.map': 'application/json' };

createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname.startsWith('/api/')) {
    const fwd = request(
      { host: api.hostname, port: api.port, method: req.method, path: url.pathname.slice(4) + url.search, headers: { ...req.headers, host: api.host } },
      (up) => {
        res.writeHead(up.statusCode, up.headers);
        up.pipe(res);
      },
    );
    fwd.on('error', (e) => {
      res.writeHead(502, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: `roomcast api at ${api.origin} unreachable: ${e.message}` }));
    });
    req.pipe(fwd);
    return;
  }
  const path = url.pathname === '/' ? '/example/index.html' : url.pathname;
  const file = normalize(join(root, path));
  const allowed = [join(root, 'example') + sep, join(root, 'dist') + sep];
  if (!allowed.some((dir) => file.startsWith(dir)) || !existsSync(file) || !statSync(file).isFile()) {
    res.writeHead(404).end('not found');
    return;
  }
  res.writeHead(200, { 'Content-Type': types[extname(file)] ?? 'application/octet-stream' });
  createReadStream(file).pipe(res);
}).listen(port, '127.0.0.1', () => {
  console.log(`example on http://127.0.0.1:${port}/ (API ${api.origin} under /api)`);
});
