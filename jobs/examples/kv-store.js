// An ordinary stateful service that knows nothing of nomad-chain: a key/value store that keeps its data in
// memory and appends every write to a journal it holds open under /alloc/data (replayed on a cold start),
// and a request counter kept in memory only. GET /kv/KEY, PUT /kv/KEY (body = value), GET /keys,
// GET /counter (increments), GET /journal (lines on disk, and whether the open journal is the file at its
// path), GET /whoami (this instance's addresses, uptime and user-namespace id map).
'use strict';
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');

const JOURNAL = process.env.KV_JOURNAL || '/alloc/data/kv.journal';
const store = new Map();
let counter = 0;

fs.mkdirSync(path.dirname(JOURNAL), { recursive: true });
try {
  for (const line of fs.readFileSync(JOURNAL, 'utf8').split('\n')) {
    if (line === '') continue;
    const entry = JSON.parse(line);
    store.set(entry.k, entry.v);
  }
} catch (err) {
  if (err.code !== 'ENOENT') throw err;
}
const journal = fs.openSync(JOURNAL, 'a');
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
        fs.writeSync(journal, JSON.stringify({ k: key, v: body }) + '\n');
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
    } else if (route === 'journal') {
      const lines = fs
        .readFileSync(JOURNAL, 'utf8')
        .split('\n')
        .filter((l) => l !== '').length;
      res.end(JSON.stringify({ lines, sameFile: fs.fstatSync(journal).ino === fs.statSync(JOURNAL).ino }));
    } else if (route === 'whoami') {
      const uidMap = fs.readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/).join(' ');
      res.end(JSON.stringify({ addresses: addresses(), pid: process.pid, startedAt, uidMap }));
    } else {
      res.statusCode = 404;
      res.end('{}');
    }
  })
  .listen(port, '0.0.0.0');
