// broker_wire.test.js - how the stand-in broker ends and polices connections, and its
// TLS: a plain FIN like a KubeMQ server's SIGTERM, GOAWAY then FIN, grpc-go's ping
// policy (GOAWAY too_many_pings), mutual TLS with ALPN h2. Seen from the real client
// kubemq-js 1.2.3, raw grpc-js, and a bare HTTP/2 client (tests/rig/h2-raw.js) that
// records every frame.
'use strict';

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { createRequire } = require('node:module');

const RIG = path.join(__dirname, '..', 'rig');
const rigRequire = createRequire(path.join(RIG, 'package.json'));
const kubemq = rigRequire('kubemq-js');
const grpc = rigRequire('@grpc/grpc-js');
const protoLoader = rigRequire('@grpc/proto-loader');
const rig = require(path.join(RIG, 'lib.js'));

const { startBroker, connectRaw, KUBEMQ_PROTO: PROTO, KUBEMQ_LOADER_OPTS: LOADER_OPTS } = rig;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(pred, timeoutMs = 10000, what = 'condition') {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

let Ctor = null;
// Its own connection (grpc-js would share one between clients of the same address).
function rawClient(address, creds = grpc.credentials.createInsecure(), opts = {}) {
  Ctor ||= grpc.loadPackageDefinition(protoLoader.loadSync(PROTO, LOADER_OPTS)).kubemq.kubemq;
  return new Ctor(address, creds, { 'grpc.use_local_subchannel_pool': 1, ...opts });
}
const rawCall = (client, method, req, deadlineMs = 10000) =>
  new Promise((resolve, reject) =>
    client[method](req, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res))),
  );
function rawSubscribe(client, method, req) {
  const call = client[method](req);
  const done = new Promise((resolve) => {
    call.on('data', () => {});
    call.on('error', (e) => resolve(e));
    call.on('end', () => resolve(null));
  });
  return { call, done };
}

// A Ping RPC on a raw connection; resolves with its stream once answered.
async function rawPing(raw) {
  const id = raw.request('Ping', {});
  await until(() => raw.stream(id).ended, 5000, 'Ping answer');
  return raw.stream(id);
}

function refused(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (e) => resolve(e.code === 'ECONNREFUSED'));
  });
}

describe('stand-in broker: how connections end', () => {
  let b;
  const closers = [];
  before(async () => {
    b = await startBroker({ port: 0 });
  });
  // Each test starts with no client connection.
  afterEach(async () => {
    for (const c of closers.splice(0)) c();
    await b.waitFor((s) => s.connections.open === 0 && s.listening, { what: 'no connection left' });
  });
  after(async () => {
    if (b) await b.stop();
  });

  it('ends every connection with a plain FIN on demand and keeps listening; clients come back', async () => {
    const raw = await connectRaw({ port: b.port });
    closers.push(() => raw.destroy());
    raw.request('SubscribeToRequests', { SubscribeTypeData: 4, ClientID: 'fin-raw', Channel: 'q.fin' });
    raw.request('SubscribeToEvents', { SubscribeTypeData: 1, ClientID: 'fin-raw', Channel: 'ev.fin' });
    const js = rawClient(b.address);
    closers.push(() => js.close());
    const sub = rawSubscribe(js, 'SubscribeToRequests', { SubscribeTypeData: 3, ClientID: 'fin-js', Channel: 'c.fin' });
    const requester = new kubemq.QueriesClient({ address: b.address, clientId: 'fin-requester' });
    closers.push(() => requester.close());
    await requester.ping();
    await b.waitFor((s) => s.subscribers.queries['q.fin'] && s.subscribers.events['ev.fin'] && s.subscribers.commands['c.fin'], { what: 'subscriptions' });
    await rawPing(raw); // HEADERS and DATA went out on the raw connection
    const before0 = await b.stats();
    assert.equal(before0.connections.open, 3);

    const mark = raw.frames.length;
    const r = await b.finConnections();
    assert.deepEqual(r, { ok: true, cut: 3 });
    const how = await raw.closed;
    assert.equal(how.how, 'end', `a FIN, not a reset: ${how.error && how.error.message}`);
    assert.deepEqual(raw.framesSince(mark), [], 'no GOAWAY, no RST_STREAM, no trailers: nothing but the FIN');
    const err = await sub.done;
    assert.equal(err && err.code, grpc.status.UNAVAILABLE);

    const s = await b.stats();
    assert.equal(s.connections.finCuts, 3);
    assert.equal(s.listening, true);
    assert.equal(s.subscribers.queries['q.fin'], undefined, 'the subscriptions ended with their connections');
    assert.equal(s.subscribers.commands['c.fin'], undefined);
    // The same clients connect again.
    await requester.ping();
    assert.equal((await rawCall(js, 'Ping', {})).Version, 'stand-in');
    const s2 = await b.stats();
    assert.equal(s2.connections.accepted, before0.connections.accepted + 2, 'two reconnects');
    assert.equal(s2.connections.open, 2);
  });

  it('refuses new connections for downMs after the FIN, like a restarting server', async () => {
    const js = rawClient(b.address);
    closers.push(() => js.close());
    await rawCall(js, 'Ping', {});
    const t0 = Date.now();
    const r = await b.finConnections({ downMs: 1500 });
    assert.equal(r.cut, 1);
    assert.equal(await refused(b.port), true, 'ECONNREFUSED while down');
    assert.equal((await b.stats()).listening, false);
    await until(async () => !(await refused(b.port)), 10000, 'listening again');
    assert.ok(Date.now() - t0 >= 1400, `down for ${Date.now() - t0} ms`);
    assert.equal((await rawCall(js, 'Ping', {})).Version, 'stand-in', 'the client reconnects on the same port');
  });

  it('sends GOAWAY with the last stream id, then the FIN', async () => {
    const raw = await connectRaw({ port: b.port });
    closers.push(() => raw.destroy());
    const sid = raw.request('SubscribeToEvents', { SubscribeTypeData: 1, ClientID: 'ga-raw', Channel: 'ev.ga' });
    await rawPing(raw); // stream 3
    await b.waitForSubscribers('events', 'ev.ga');
    const mark = raw.frames.length;
    const r = await b.goawayConnections({ code: 0, debug: 'stand-in going away' });
    assert.equal(r.cut, 1);
    const how = await raw.closed;
    assert.equal(how.how, 'end');
    const after = raw.framesSince(mark);
    assert.deepEqual(after.map((f) => f.name), ['GOAWAY'], 'GOAWAY and nothing else');
    assert.deepEqual(raw.goaways, [{ lastStreamId: 3, code: 0, debug: 'stand-in going away' }]);
    assert.equal(raw.stream(sid).ended, false, 'the open subscription got no trailers');
    assert.equal(raw.stream(sid).rst, null);
    assert.equal((await b.stats()).connections.goaways, 1);
    await assert.rejects(b.goawayConnections({ code: -1 }), /invalid code/);
  });

  it('keeps an idle client on its one connection', async () => {
    const c = new kubemq.QueriesClient({ address: b.address, clientId: 'idle' });
    closers.push(() => c.close());
    await c.ping();
    const n0 = (await b.stats()).connections.accepted;
    await sleep(1500);
    await c.ping();
    const s = await b.stats();
    assert.equal(s.connections.accepted, n0, 'no new connection');
    assert.equal(s.connections.tooManyPings, 0);
  });
});

describe('stand-in broker with --min-ping-interval-ms 1000 (grpc-go ping policy)', () => {
  let b;
  const closers = [];
  before(async () => {
    b = await startBroker({ port: 0, minPingIntervalMs: 1000 });
  });
  after(async () => {
    for (const c of closers.splice(0)) c();
    if (b) await b.stop();
  });

  const open = async () => {
    const raw = await connectRaw({ port: b.port });
    closers.push(() => raw.destroy());
    return raw;
  };
  const pings = async (raw, n, gapMs, before = async () => {}) => {
    for (let i = 0; i < n; i++) {
      if (i) await sleep(gapMs);
      await before(i);
      raw.ping(Buffer.from(`ping-00${i}`));
    }
  };

  it('sends GOAWAY too_many_pings at the 4th quick PING on an idle connection, after its ACK', async () => {
    const raw = await open();
    assert.deepEqual((await b.stats()).settings.minPingIntervalMs, 1000);
    await pings(raw, 4, 300);
    const how = await raw.closed;
    assert.equal(how.how, 'end');
    assert.deepEqual(raw.goaways, [{ lastStreamId: 0, code: 0xb, debug: 'too_many_pings' }]);
    assert.deepEqual(raw.pingAcks.map(String), ['ping-000', 'ping-001', 'ping-002', 'ping-003']);
    const names = raw.framesSince(0).map((f) => f.name);
    assert.ok(names.lastIndexOf('PING') < names.indexOf('GOAWAY'), names.join(' '));
    assert.equal((await b.stats()).connections.tooManyPings, 1);
  });

  it('judges PINGs with a stream open against the interval, and not after the server wrote', async () => {
    const quick = await open();
    quick.request('SubscribeToRequests', { SubscribeTypeData: 4, ClientID: 'ka-1', Channel: 'q.ka' });
    await pings(quick, 4, 300);
    await quick.closed;
    assert.deepEqual(quick.goaways, [{ lastStreamId: 1, code: 0xb, debug: 'too_many_pings' }]);

    // A Ping RPC answered before each PING resets the strikes.
    const chatty = await open();
    await pings(chatty, 8, 300, () => rawPing(chatty));
    await sleep(300);
    assert.deepEqual(chatty.goaways, []);
    assert.equal(chatty.pingAcks.length, 8);

    // PINGs slower than the interval, with a stream open: never a strike.
    const slow = await open();
    slow.request('SubscribeToRequests', { SubscribeTypeData: 4, ClientID: 'ka-2', Channel: 'q.ka' });
    await pings(slow, 5, 1100);
    await sleep(300);
    assert.deepEqual(slow.goaways, []);
    assert.equal(slow.pingAcks.length, 5);
    assert.equal((await b.stats()).connections.tooManyPings, 2);
  });

  it('sends a grpc-js client with a short keepalive away; it reconnects and works', async () => {
    const js = rawClient(b.address, grpc.credentials.createInsecure(), {
      'grpc.keepalive_time_ms': 200,
      'grpc.keepalive_timeout_ms': 5000,
      'grpc.keepalive_permit_without_calls': 1,
    });
    closers.push(() => js.close());
    const s0 = await b.stats();
    await rawCall(js, 'Ping', {});
    await b.waitFor((s) => s.connections.tooManyPings > s0.connections.tooManyPings, { timeoutMs: 15000, what: 'too_many_pings' });
    assert.equal((await rawCall(js, 'Ping', {})).Version, 'stand-in');
    const s = await b.stats();
    assert.ok(s.connections.accepted >= s0.connections.accepted + 2, 'connected again');
  });
});

describe('stand-in broker with mutual TLS (--tls-ca)', () => {
  let b;
  let ca;
  let other;
  let srv;
  let cli;
  const closers = [];
  before(async () => {
    ca = rig.makeTestCA();
    srv = ca.issue('server');
    cli = ca.issue('client', { client: true });
    other = rig.makeTestCert({ cn: 'not-from-the-ca' });
    b = await startBroker({ port: 0, tlsCert: srv.certPath, tlsKey: srv.keyPath, tlsCa: ca.certPath });
  });
  after(async () => {
    for (const c of closers.splice(0)) c();
    if (b) await b.stop();
    if (ca) fs.rmSync(ca.dir, { recursive: true, force: true });
    if (other) fs.rmSync(other.dir, { recursive: true, force: true });
  });

  it('speaks h2 by ALPN to a client that is not grpc-js, with a client certificate from the CA', async () => {
    const raw = await connectRaw({ port: b.port, tls: { ca: ca.cert, cert: cli.cert, key: cli.key } });
    closers.push(() => raw.destroy());
    assert.equal(raw.alpnProtocol, 'h2');
    const st = await rawPing(raw);
    assert.equal(st.messages[0].Version, 'stand-in');
    assert.equal((await b.stats()).settings.tls, 'mutual');
  });

  it('refuses clients without a certificate or with one the CA did not sign', async () => {
    const f0 = (await b.stats()).connections.tlsFailures;
    // TLS 1.3: the client may finish its handshake before the server refuses its (missing)
    // certificate; the refusal then ends the connection before any answer.
    for (const t of [{ ca: ca.cert }, { ca: ca.cert, cert: other.cert, key: other.key }]) {
      const raw = await connectRaw({ port: b.port, tls: t }).catch((e) => e);
      if (raw instanceof Error) continue;
      closers.push(() => raw.destroy());
      const id = raw.request('Ping', {});
      const how = await raw.closed;
      assert.equal(raw.stream(id).messages.length, 0, 'no answer');
      assert.ok(how.how === 'error' || how.how === 'end');
    }
    const none = rawClient(b.address, grpc.credentials.createSsl(Buffer.from(ca.cert)));
    const wrong = rawClient(b.address, grpc.credentials.createSsl(Buffer.from(ca.cert), Buffer.from(other.key), Buffer.from(other.cert)));
    const good = rawClient(b.address, grpc.credentials.createSsl(Buffer.from(ca.cert), Buffer.from(cli.key), Buffer.from(cli.cert)));
    closers.push(() => [none, wrong, good].forEach((c) => c.close()));
    for (const c of [none, wrong]) {
      await assert.rejects(rawCall(c, 'Ping', {}, 3000), (e) => [grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED].includes(e.code));
    }
    assert.equal((await rawCall(good, 'Ping', {})).Version, 'stand-in');
    assert.ok((await b.stats()).connections.tlsFailures >= f0 + 4);
  });

  it('serves kubemq-js with a client certificate', async () => {
    // kubemq-js 1.2.3 trusts only the default roots: a child process points them at our CA.
    const script = `
      const kubemq = require('kubemq-js');
      const fs = require('fs');
      const c = new kubemq.QueriesClient({ address: process.argv[1], clientId: 'mtls-js',
        credentials: { cert: fs.readFileSync(process.argv[2]), key: fs.readFileSync(process.argv[3]) } });
      c.ping().then((p) => { console.log(JSON.stringify(p)); c.close(); }, (e) => { console.error(e.message); process.exit(1); });`;
    const child = spawn(process.execPath, ['-e', script, b.address, cli.certPath, cli.keyPath], {
      cwd: RIG,
      env: { ...process.env, GRPC_DEFAULT_SSL_ROOTS_FILE_PATH: ca.certPath },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let errText = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (errText += d));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    assert.equal(code, 0, errText);
    assert.equal(JSON.parse(out).version, 'stand-in');
  });
});
