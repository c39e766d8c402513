'use strict';
// The gate: an HTTP/1.1 proxy in front of a Kinesis stand-in that verifies
// every request's SigV4 (AWS's own JS signer) and injects faults on demand.
//   node tests/rig/gate.js --upstream http://127.0.0.1:N --access-key AK
//     --secret-key SK [--session-token T] [--port 0] [--log-max 10000]
//     [--tls-key FILE --tls-cert FILE]
// Ready line: {"ready":true,"port":N,"url":"http://127.0.0.1:N"}
// Control API (unsigned) on the same port: GET /_gate/stats, POST /_gate/reset,
// POST /_gate/fault (JSON spec), GET /_gate/faults, GET /_gate/log,
// POST /_gate/release ({"count": n}; releases requests parked by `hold`).
const http = require('http');
const https = require('https');
const fs = require('fs');
const crypto = require('crypto');
const sig = require('./sigv4');
const { startScript, httpRequest, parseArgs, announceReady, announceFailure } = require('./proc');

const MAX_BODY = 16 * 1024 * 1024;
const FAULT_KINDS = ['throttle', 'kms_throttle', 'status', 'error', 'delay', 'hold', 'drop', 'partial', 'expired_iterator'];

function awsError(res, status, type, message, extraHeaders = {}) {
  const body = JSON.stringify(message === undefined ? { __type: type } : { __type: type, message });
  res.writeHead(status, {
    'content-type': sig.AMZ_JSON,
    'content-length': Buffer.byteLength(body),
    'x-amzn-requestid': crypto.randomUUID(),
    ...extraHeaders,
  });
  res.end(body);
}

function validateFault(f) {
  if (!f || typeof f !== 'object') throw new Error('fault spec must be a JSON object');
  if (!FAULT_KINDS.includes(f.kind)) throw new Error(`fault kind must be one of ${FAULT_KINDS.join(', ')}`);
  const spec = { ...f };
  spec.count = f.count === undefined ? 1 : Number(f.count);
  if (!Number.isInteger(spec.count) || spec.count < 1) throw new Error('fault count must be an integer >= 1');
  if (spec.op !== undefined && typeof spec.op !== 'string') throw new Error('fault op must be a string');
  if (spec.kind === 'partial') {
    spec.op = spec.op || 'PutRecords';
    if (spec.op !== 'PutRecords') throw new Error('partial faults apply to PutRecords only');
    if (!Array.isArray(spec.fail) || !spec.fail.every((i) => Number.isInteger(i) && i >= 0)) {
      throw new Error('partial fault needs "fail": [indices]');
    }
    spec.code = spec.code || 'ProvisionedThroughputExceededException';
    if (!['ProvisionedThroughputExceededException', 'InternalFailure'].includes(spec.code)) {
      throw new Error('partial fault code must be ProvisionedThroughputExceededException or InternalFailure');
    }
  }
  if (spec.kind === 'expired_iterator') spec.op = spec.op || 'GetRecords';
  if (spec.kind === 'status') {
    spec.status = Number(f.status || 500);
    if (![500, 503].includes(spec.status)) throw new Error('status fault: status must be 500 or 503');
  }
  if (spec.kind === 'error') {
    spec.status = Number(f.status || 400);
    if (!(spec.status >= 400 && spec.status <= 599) || typeof f.type !== 'string') {
      throw new Error('error fault needs "type" and a 4xx/5xx "status"');
    }
  }
  if (spec.kind === 'delay') {
    spec.ms = Number(f.ms);
    if (!(spec.ms >= 0)) throw new Error('delay fault needs "ms" >= 0');
  }
  return spec;
}

// Gate state and request handling; `createGate(opts)` returns an http(s) server.
function createGate(opts) {
  const upstream = new URL(opts.upstream);
  const creds = new Map([[opts.accessKey, { secretKey: opts.secretKey, sessionToken: opts.sessionToken || '' }]]);
  const logMax = opts.logMax || 10000;
  const agent = new (upstream.protocol === 'https:' ? https : http).Agent({ keepAlive: true, maxSockets: 256 });
  const upstreamMod = upstream.protocol === 'https:' ? https : http;

  let stats;
  let log;
  let faults = [];
  let held = []; // resolvers of requests parked by `hold` faults
  let seq = 0;
  const release = (n = Infinity) => {
    const out = held.splice(0, Math.min(n, held.length));
    for (const r of out) r();
    return out.length;
  };
  const reset = () => {
    stats = { total: 0, byOp: {}, sigFailures: 0, byStatus: {}, faultsApplied: 0, inFlight: 0, maxInFlight: 0 };
    log = [];
    faults = [];
    release();
  };
  reset();
  let inFlight = 0;

  const takeFault = (op) => {
    for (let i = 0; i < faults.length; i++) {
      const f = faults[i];
      if (f.op && f.op !== op) continue;
      f.remaining -= 1;
      if (f.remaining <= 0) faults.splice(i, 1);
      stats.faultsApplied += 1;
      return f;
    }
    return null;
  };

  const record = (entry) => {
    log.push(entry);
    if (log.length > logMax) log.splice(0, log.length - logMax);
  };

  function control(req, res, body) {
    const send = (status, obj) => {
      const b = JSON.stringify(obj);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
      res.end(b);
    };
    const p = req.url.split('?')[0];
    if (req.method === 'GET' && p === '/_gate/stats') {
      return send(200, { ...stats, inFlight, held: held.length, faultsPending: faults.length });
    }
    if (req.method === 'POST' && p === '/_gate/release') {
      let n = Infinity;
      try {
        const o = body.length ? JSON.parse(body.toString('utf8')) : {};
        if (o.count !== undefined) n = Number(o.count);
      } catch (e) {
        return send(400, { error: e.message });
      }
      return send(200, { released: release(n), held: held.length });
    }
    if (req.method === 'POST' && p === '/_gate/reset') { reset(); return send(200, { ok: true }); }
    if (req.method === 'GET' && p === '/_gate/log') return send(200, log);
    if (req.method === 'GET' && p === '/_gate/faults') return send(200, faults);
    if (req.method === 'POST' && p === '/_gate/fault') {
      let specs;
      try {
        const parsed = JSON.parse(body.toString('utf8'));
        specs = (Array.isArray(parsed) ? parsed : [parsed]).map(validateFault);
      } catch (e) {
        return send(400, { error: e.message });
      }
      for (const s of specs) faults.push({ ...s, id: ++seq, remaining: s.count });
      return send(200, { ok: true, pending: faults.length });
    }
    return send(404, { error: `unknown control path ${req.method} ${p}` });
  }

  // Forward to upstream; with `transform` the response is buffered and rewritten.
  function forward(req, res, body, entry, transform, done) {
    const headers = { ...req.headers };
    delete headers.connection;
    delete headers['keep-alive'];
    delete headers['transfer-encoding'];
    headers['content-length'] = String(body.length);
    const up = upstreamMod.request({
      host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers, agent,
      rejectUnauthorized: false,
    }, (ur) => {
      entry.status = ur.statusCode;
      if (!transform) {
        const h = { ...ur.headers };
        delete h.connection;
        delete h['keep-alive'];
        res.writeHead(ur.statusCode, h);
        ur.pipe(res);
        ur.on('end', done);
        ur.on('error', () => { res.destroy(); done(); });
        return;
      }
      const chunks = [];
      ur.on('data', (c) => chunks.push(c));
      ur.on('error', () => { res.destroy(); done(); });
      ur.on('end', () => {
        const raw = Buffer.concat(chunks);
        const out = transform(ur.statusCode, raw);
        const h = { ...ur.headers, 'content-length': String(out.length) };
        delete h.connection;
        delete h['keep-alive'];
        delete h['transfer-encoding'];
        res.writeHead(ur.statusCode, h);
        res.end(out);
        done();
      });
    });
    res.on('close', () => {
      if (res.writableFinished) return;
      entry.error = 'client closed the connection';
      up.destroy();
    });
    up.on('error', (e) => {
      if (res.destroyed) return done();
      entry.status = 502;
      entry.error = `upstream: ${e.message}`;
      if (!res.headersSent) awsError(res, 502, 'InternalFailure', `gate: upstream unreachable: ${e.message}`);
      else res.destroy();
      done();
    });
    up.end(body);
  }

  function partialPutRecords(req, res, body, entry, fault, done) {
    let parsed;
    try { parsed = JSON.parse(body.toString('utf8')); } catch (_) { parsed = null; }
    if (!parsed || !Array.isArray(parsed.Records)) return forward(req, res, body, entry, null, done);
    const failSet = new Set(fault.fail.filter((i) => i < parsed.Records.length));
    const message = fault.code === 'InternalFailure' ? 'Internal service failure.'
      : `Rate exceeded for shard shardId-000000000000 in stream ${parsed.StreamName || parsed.StreamARN} under account 000000000000.`;
    const failed = { ErrorCode: fault.code, ErrorMessage: message };
    entry.failedIndices = [...failSet].sort((x, y) => x - y);
    const kept = parsed.Records.filter((_, i) => !failSet.has(i));
    if (kept.length === 0) {
      entry.status = 200;
      const b = Buffer.from(JSON.stringify({ FailedRecordCount: failSet.size, Records: parsed.Records.map(() => failed) }));
      res.writeHead(200, { 'content-type': sig.AMZ_JSON, 'content-length': b.length, 'x-amzn-requestid': crypto.randomUUID() });
      res.end(b);
      return done();
    }
    const newBody = Buffer.from(JSON.stringify({ ...parsed, Records: kept }));
    forward(req, res, newBody, entry, (status, raw) => {
      if (status !== 200) return raw;
      let upr;
      try { upr = JSON.parse(raw.toString('utf8')); } catch (_) { return raw; }
      if (!upr || !Array.isArray(upr.Records) || upr.Records.length !== kept.length) return raw;
      let j = 0;
      const records = parsed.Records.map((_, i) => (failSet.has(i) ? failed : upr.Records[j++]));
      const out = { ...upr, FailedRecordCount: (upr.FailedRecordCount || 0) + failSet.size, Records: records };
      return Buffer.from(JSON.stringify(out));
    }, done);
  }

  async function handle(req, res, body) {
    const target = req.headers['x-amz-target'] || '';
    const op = target.startsWith(sig.KINESIS_TARGET_PREFIX) ? target.slice(sig.KINESIS_TARGET_PREFIX.length) : (target || '-');
    const entry = { time: new Date().toISOString(), op, status: 0 };
    if (op === 'PutRecord' || op === 'PutRecords') {
      try { entry.body = JSON.parse(body.toString('utf8')); } catch (_) { entry.body = body.toString('utf8'); }
    }
    stats.total += 1;
    stats.byOp[op] = (stats.byOp[op] || 0) + 1;
    inFlight += 1;
    if (inFlight > stats.maxInFlight) stats.maxInFlight = inFlight;
    let finished = false;
    const done = () => {
      if (finished) return;
      finished = true;
      inFlight -= 1;
      stats.byStatus[entry.status] = (stats.byStatus[entry.status] || 0) + 1;
      record(entry);
    };
    res.on('close', done);

    let v;
    try {
      v = await sig.verifyRequest({ method: req.method, path: req.url, headers: req.headersDistinct || req.headers, body },
        (ak) => creds.get(ak) || null);
    } catch (e) {
      v = { ok: false, status: 400, type: 'IncompleteSignatureException', message: `gate could not verify: ${e.message}` };
    }
    if (!v.ok) {
      stats.sigFailures += 1;
      entry.status = v.status;
      entry.error = `${v.type}: ${v.message}`;
      if (v.canonicalRequest) {
        entry.canonicalRequest = v.canonicalRequest;
        entry.stringToSign = v.stringToSign;
      }
      awsError(res, v.status, v.type, v.message);
      return done();
    }
    entry.region = v.region;

    const f = takeFault(op);
    if (f) entry.fault = f.kind;
    if (f && f.kind === 'delay') await new Promise((r) => setTimeout(r, f.ms));
    if (f && f.kind === 'hold') {
      await new Promise((r) => {
        held.push(r);
        res.on('close', () => { // client gave up: forget it
          const i = held.indexOf(r);
          if (i >= 0) held.splice(i, 1);
        });
      });
      if (res.destroyed) return done();
    }
    if (!f || f.kind === 'delay' || f.kind === 'hold') return forward(req, res, body, entry, null, done);

    switch (f.kind) {
      case 'throttle':
        entry.status = 400;
        awsError(res, 400, 'ProvisionedThroughputExceededException',
          'Rate exceeded for shard shardId-000000000000 in stream under account 000000000000.');
        return done();
      case 'kms_throttle':
        entry.status = 400;
        awsError(res, 400, 'KMSThrottlingException',
          'The request was denied due to request throttling. For more information about throttling, see Limits in the AWS Key Management Service Developer Guide.');
        return done();
      case 'status':
        entry.status = f.status;
        if (f.status === 503) awsError(res, 503, 'ServiceUnavailable', 'Service Unavailable');
        else awsError(res, 500, 'InternalFailure', 'Internal service failure.');
        return done();
      case 'error':
        entry.status = f.status;
        awsError(res, f.status, f.type, f.message);
        return done();
      case 'expired_iterator':
        entry.status = 400;
        awsError(res, 400, 'ExpiredIteratorException',
          `Iterator expired. The iterator was created at time ${new Date(Date.now() - 600000).toUTCString()} while right now it is ${new Date().toUTCString()} which is further in the future than the tolerated delay of 300000 milliseconds.`);
        return done();
      case 'drop':
        entry.status = 0;
        entry.dropped = true;
        req.socket.destroy();
        return done();
      case 'partial':
        return partialPutRecords(req, res, body, entry, f, done);
      default:
        return forward(req, res, body, entry, null, done);
    }
  }

  const onRequest = (req, res) => {
    const chunks = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) { tooBig = true; return; }
      chunks.push(c);
    });
    req.on('error', () => res.destroy());
    req.on('end', () => {
      if (tooBig) {
        res.writeHead(413, { 'content-length': 0 });
        return res.end();
      }
      const body = Buffer.concat(chunks);
      if (req.url.startsWith('/_gate/')) return control(req, res, body);
      handle(req, res, body).catch((e) => {
        if (!res.headersSent) awsError(res, 500, 'InternalFailure', `gate error: ${e.message}`);
        else res.destroy();
      });
    });
  };

  const server = opts.tlsKey
    ? https.createServer({ key: fs.readFileSync(opts.tlsKey), cert: fs.readFileSync(opts.tlsCert) }, onRequest)
    : http.createServer(onRequest);
  server.keepAliveTimeout = 60000;
  server.on('close', () => agent.destroy());
  return server;
}

// Module API: start the gate as a child process.
// opts: upstream (URL), accessKey, secretKey, sessionToken, port (0), logMax,
// tlsKey/tlsCert (serve HTTPS), env, timeoutMs.
// Resolves {url, port, pid, stop(), stats(), reset(), fault(spec), faults(), log(), release(count), stderr(), exited}.
async function startGate(opts) {
  if (!opts || !opts.upstream || !opts.accessKey || !opts.secretKey) {
    throw new Error('startGate: upstream, accessKey and secretKey are required');
  }
  const args = ['--upstream', opts.upstream, '--access-key', opts.accessKey, '--secret-key', opts.secretKey,
    '--port', String(opts.port || 0)];
  if (opts.sessionToken) args.push('--session-token', opts.sessionToken);
  if (opts.logMax) args.push('--log-max', String(opts.logMax));
  if (opts.tlsKey) args.push('--tls-key', opts.tlsKey, '--tls-cert', opts.tlsCert);
  const p = await startScript(__filename, args, { env: opts.env, timeoutMs: opts.timeoutMs || 30000, name: 'gate' });
  const { port, url } = p.ready;
  const ctl = `http://127.0.0.1:${port}/_gate`;
  const tlsOpts = opts.tlsKey ? { rejectUnauthorized: false } : {};
  const call = async (method, what, body) => {
    const r = await (opts.tlsKey ? httpsRequest : httpRequest)(`${opts.tlsKey ? url : `http://127.0.0.1:${port}`}/_gate/${what}`, {
      method, body: body === undefined ? undefined : JSON.stringify(body),
      headers: body === undefined ? {} : { 'content-type': 'application/json' }, ...tlsOpts,
    });
    if (r.status !== 200) throw new Error(`gate ${method} /_gate/${what}: ${r.status} ${r.text}`);
    return r.json;
  };
  return {
    url, port, pid: p.pid, stop: p.stop, stderr: p.stderr, exited: p.exited, controlUrl: ctl,
    stats: () => call('GET', 'stats'),
    reset: () => call('POST', 'reset'),
    fault: (spec) => call('POST', 'fault', spec),
    faults: () => call('GET', 'faults'),
    log: () => call('GET', 'log'),
    release: (count) => call('POST', 'release', count === undefined ? {} : { count }),
  };
}

function httpsRequest(url, { method = 'GET', headers = {}, body, rejectUnauthorized = false } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = https.request({ host: u.hostname, port: u.port, path: u.pathname, method, headers, rejectUnauthorized, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
        resolve({ status: res.statusCode, text, json });
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

if (require.main === module) {
  const argv = parseArgs(process.argv.slice(2), ['parent-watch']);
  try {
    if (!argv.upstream || !argv['access-key'] || !argv['secret-key']) {
      throw new Error('usage: gate.js --upstream URL --access-key AK --secret-key SK [--session-token T] [--port 0]');
    }
    if (!!argv['tls-key'] !== !!argv['tls-cert']) throw new Error('--tls-key and --tls-cert go together');
    const server = createGate({
      upstream: argv.upstream, accessKey: argv['access-key'], secretKey: argv['secret-key'],
      sessionToken: argv['session-token'], logMax: argv['log-max'] ? Number(argv['log-max']) : undefined,
      tlsKey: argv['tls-key'], tlsCert: argv['tls-cert'],
    });
    server.on('error', announceFailure);
    server.listen({ port: Number(argv.port || 0), host: '127.0.0.1' }, () => {
      const { port } = server.address();
      announceReady({ port, url: `${argv['tls-key'] ? 'https' : 'http'}://127.0.0.1:${port}` }, {
        parentWatch: !!argv['parent-watch'],
        onStop: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
      });
    });
  } catch (e) {
    announceFailure(e);
  }
}

module.exports = { startGate, createGate, validateFault, FAULT_KINDS };
