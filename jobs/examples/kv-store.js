// An ordinary stateful service that knows nothing of nomad-chain: an in-memory key/value store and a
// request counter. GET /kv/KEY, PUT /kv/KEY (body = value), GET /keys, GET /counter (increments),
// GET /whoami (this instance's addresses and uptime). Everything lives in memory only.
'use strict';
const http = require('http');
const os = require('os');

const store = new Map();
let counter = 0;
const startedAt = Date.now();
const port = Number(process.env.PORT || 8080);

function addresses() {
  return Object.values(os.networkInterfaces())
    .flat()
    .filter((a) => a && a.family === 'IPv4' && !a.internal)
    .map((a) => a.address);
}

http
  .createServer((req, res) => {
    const [, route, key] = (req.url || '/').split('/');
    if (route === 'kv' && key && req.method === 'PUT') {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        store.set(key, body);
        res.end('ok');
      });
      return;
    }
    res.setHeader('content-type', 'application/json');
    if (route === 'kv' && key) {
      if (!store.has(key)) {
        res.statusCode = 404;
        res.end('{}');
        return;
      }
      res.end(JSON.stringify({ key, value: store.get(key) }));
    } else if (route === 'keys') {
      res.end(JSON.stringify(Object.fromEntries(store)));
    } else if (route === 'counter') {
      counter += 1;
      res.end(JSON.stringify({ counter }));
    } else if (route === 'whoami') {
      res.end(JSON.stringify({ addresses: addresses(), pid: process.pid, startedAt }));
    } else {
      res.statusCode = 404;
      res.end('{}');
    }
  })
  .listen(port, '0.0.0.0');
