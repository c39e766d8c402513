// aws-test-server.js - a tiny AWS-JSON-protocol server for the AWS client's
// own tests: it checks every request's SigV4 signature with AWS's JS signer
// (sigv4-verify.js), counts TCP connections, and answers by X-Amz-Target
// operation with what the test asks for.
//
//   node aws-test-server.js [--port 0] [--secret S] [--tls-key F --tls-cert F]
//     [--parent-watch]
// Listens on 127.0.0.1; ready line {"ready":true,"port":N,"url":...}. With
// --tls-key/--tls-cert it serves HTTPS with HTTP/2 and HTTP/1.1 (ALPN).
//
// Operations (<prefix>.<Op>; the body is JSON):
//   Echo        200 {verified, reason, connections, requests, httpVersion,
//                    bodyLength, bodySha256, target, headers}
//   Stats       200 {connections, requests}
//   FailTimes   {key, times, status, type, message, header} fails the first
//               `times` calls with that key, then 200 {attempt}
//   Big         {size} 200 with a body of that many bytes
//   Raw         {status, body, header} answers exactly that
//   Hang        never answers (timeouts)
// Answer framings, for the HTTP/1.1 client (plain HTTP only):
//   Chunked     {pieces: [..]} 200, the pieces written one by one (chunked)
//   Continue    a "100 Continue" first, then 200 {continued: true}
//   Close       200 {closed: true} with "Connection: close"
//   ToClose     {body} 200 without length, ended by closing the connection
//   Partial     {length, body} a Content-Length longer than the body, then a close
//   Abort       the connection closed without an answer
//   DropIdle    200 {dropped: true}, then every idle kept-alive connection closed
//   Early       200 {early: true} at once, before the body is read (unsigned)
// A request whose signature does not verify gets 400
// {"__type":"InvalidSignatureException"}.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const http2 = require('node:http2');
const { verify } = require('./sigv4-verify');
const { parseArgs, announceReady } = require('./proc');

const argv = parseArgs(process.argv.slice(2), ['parent-watch']);
const secret = argv.secret || 'test-secret';
const tls = argv['tls-key'] ? { key: fs.readFileSync(argv['tls-key']), cert: fs.readFileSync(argv['tls-cert']) } : null;

let connections = 0;
let requests = 0;
const failures = new Map();

function send(res, status, obj, extraHeaders) {
  const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', ...(extraHeaders || {}) });
  res.end(body);
}

async function handle(req, res) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const body = Buffer.concat(chunks);
  requests++;
  const headers = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i];
    if (name.startsWith(':')) {
      if (name === ':authority') headers.push(['host', req.rawHeaders[i + 1]]);
      continue;
    }
    headers.push([name, req.rawHeaders[i + 1]]);
  }
  const [path, query] = (req.url || '/').split('?');
  const v = await verify({ method: req.method, path, query, headers, body }, () => secret);
  const target = req.headers['x-amz-target'] || '';
  const op = target.split('.').pop();
  if (!v.ok && op !== 'Raw') {
    send(res, 400, { __type: 'InvalidSignatureException', message: v.reason });
    return;
  }
  let input = {};
  try { input = body.length ? JSON.parse(body.toString('utf8')) : {}; } catch (e) { input = {}; }
  switch (op) {
    case 'Echo':
      send(res, 200, {
        verified: v.ok, reason: v.reason, connections, requests, httpVersion: req.httpVersion,
        bodyLength: body.length, bodySha256: crypto.createHash('sha256').update(body).digest('hex'),
        target, headers,
      });
      return;
    case 'Stats':
      send(res, 200, { connections, requests });
      return;
    case 'FailTimes': {
      const n = (failures.get(input.key) || 0) + 1;
      failures.set(input.key, n);
      if (n <= input.times) {
        const h = input.header ? { 'x-amzn-ErrorType': input.header } : {};
        send(res, input.status || 400, input.type ? { __type: input.type, message: input.message || '' } : (input.body || ''), h);
      } else {
        send(res, 200, { attempt: n });
      }
      return;
    }
    case 'Big':
      send(res, 200, 'x'.repeat(input.size || 0));
      return;
    case 'Raw':
      send(res, input.status || 200, input.body || '', input.header ? { 'x-amzn-ErrorType': input.header } : {});
      return;
    case 'Hang':
      return;
    case 'Chunked': {
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
      for (const p of input.pieces || []) {
        res.write(p);
        await new Promise((r) => setTimeout(r, 5));
      }
      res.end();
      return;
    }
    case 'Continue':
      res.writeContinue();
      await new Promise((r) => setTimeout(r, 5));
      send(res, 200, { continued: true });
      return;
    case 'Close':
      send(res, 200, { closed: true }, { connection: 'close' });
      return;
    case 'ToClose':
    case 'Partial': {
      const sock = req.socket;
      const text = input.body || '';
      const len = op === 'Partial' ? `Content-Length: ${input.length}\r\n` : '';
      sock.write(`HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n${len}\r\n${text}`);
      sock.end();
      return;
    }
    case 'Abort':
      req.socket.destroy();
      return;
    case 'DropIdle':
      res.on('finish', () => setTimeout(() => server.closeIdleConnections(), 20));
      send(res, 200, { dropped: true });
      return;
    default:
      send(res, 400, { __type: 'UnknownOperationException', message: `no operation ${op}` });
  }
}

function onRequest(req, res) {
  if (String(req.headers['x-amz-target'] || '').endsWith('.Early')) {
    send(res, 200, { early: true });
    return;
  }
  handle(req, res).catch((e) => { res.statusCode = 500; res.end(String(e)); });
}

const server = tls
  ? http2.createSecureServer({ key: tls.key, cert: tls.cert, allowHTTP1: true }, onRequest)
  : http.createServer({ keepAliveTimeout: 60000 }, onRequest);
server.on(tls ? 'secureConnection' : 'connection', () => { connections++; });
server.listen(Number(argv.port || 0), '127.0.0.1', () => {
  const { port } = server.address();
  announceReady({ port, url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}` }, {
    parentWatch: !!argv['parent-watch'],
    onStop: () => new Promise((r) => {
      if (server.closeAllConnections) server.closeAllConnections();
      server.close(() => r());
    }),
  });
});
