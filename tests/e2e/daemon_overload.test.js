'use strict';
// More messages than the binding can run at once. The broker drops messages from a
// subscription that stops reading (the stand-in does it as the real server does: about
// 100 held, then one dropped every slow-consumer wait), so the daemon must keep reading:
// what waits for a slot waits in its own bounded queue (max_pending). Events beyond it
// are dropped and counted, never silently; queries beyond it are answered at once with an
// over-capacity error; an events-store subscription pauses and resumes where it stopped.
const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { createRequire } = require('node:module');
const { cleanups, startPeers, binding, startDaemon, dataOf, ok, b64, req, rig, kubemq } = require('./daemon_lib');

const rigRequire = createRequire(path.join(__dirname, '..', 'rig', 'package.json'));
const { EventsClient, EventsStoreClient } = rigRequire('kubemq-js');

const bytes = (o) => Buffer.from(JSON.stringify(o));

// The value of a metric series of the daemon's /metrics (0 when absent).
async function metric(api, name, binding) {
  const text = (await rig.httpRequest(`${api}/metrics`)).text;
  const re = new RegExp(`^${name}\\{binding="${binding}"[^}]*\\} (\\d+)`, 'm');
  const m = re.exec(text);
  return m ? Number(m[1]) : 0;
}

// Every record of a stream as text, with how often each is there.
async function counts(url, stream) {
  const out = new Map();
  for (const r of await rig.readStream(url, stream)) out.set(r.data, (out.get(r.data) || 0) + 1);
  return out;
}

describe('daemon: overload (bounded queue, never a stalled subscription)', () => {
  const c = cleanups();
  after(() => c.run());

  // A daemon with one binding (plus 'setup' for create_stream) on fresh peers.
  async function setup(name, b) {
    // The broker's own slow-consumer wait (2 s): a subscription the daemon stopped
    // reading would lose messages within each test.
    const peers = await startPeers(c);
    const client = kubemq.openClient(peers.broker.address, { clientId: `${name}-requester` });
    c.add(() => client.close());
    const bindings = [
      binding('setup', { address: peers.broker.address, channel: `${name}.setup`, target: peers.targetProps }),
      binding(name, { address: peers.broker.address, target: peers.targetProps, ...b }),
    ];
    const apiPort = await rig.freePort();
    const daemon = await startDaemon(c, peers.broker, { apiPort, bindings });
    const q = (body) => client.query(`${name}.setup`, body, { timeoutMs: 30000 });
    return { peers, client, daemon, q, api: `http://127.0.0.1:${apiPort}` };
  }

  async function publishEvents(address, channel, n, stream, tag, store = false) {
    const pub = store ? new EventsStoreClient({ address, clientId: `${tag}-pub` }) : new EventsClient({ address, clientId: `${tag}-pub` });
    c.add(() => pub.close());
    const sends = [];
    for (let i = 0; i < n; i++) {
      sends.push(pub.send({ channel, metadata: '', body: bytes(req({ method: 'put_record', stream_name: stream, partition_key: `k${i % 7}` }, b64(`${tag}-${i}`))) }));
    }
    for (const r of await Promise.all(sends)) assert.equal(r.sent, true);
  }

  it('a burst of 300 events at concurrency 2 against a 200 ms target: all 300 written', async () => {
    const s = await setup('ev300', { kind: 'kubemq.events', channel: 'ev300', source: { concurrency: '2' } });
    ok(await s.q(req({ method: 'create_stream', stream_name: 'ev300' })));
    await s.peers.gate.fault({ kind: 'delay', op: 'PutRecord', ms: 200, count: 300 });
    await publishEvents(s.peers.broker.address, 'ev300', 300, 'ev300', 'burst');
    await rig.waitFor(async () => (await s.peers.gate.stats()).byOp.PutRecord >= 300, { timeoutMs: 120000, what: '300 PutRecord calls' });
    await rig.waitFor(async () => (await s.peers.gate.stats()).inFlight === 0, { timeoutMs: 10000, what: 'calls done' });
    const seen = await counts(s.peers.kin.url, 'ev300');
    for (let i = 0; i < 300; i++) assert.equal(seen.get(`burst-${i}`), 1, `burst-${i} written once`);
    assert.equal(await metric(s.api, 'kubemq_kinesis_source_dropped_total', 'ev300'), 0);
    const stats = await s.peers.broker.stats();
    assert.deepEqual(stats.dropped.events || {}, {}, 'the broker dropped nothing');
  });

  it('with max_pending 50: what does not fit is dropped and counted, none silently', async () => {
    const s = await setup('ev50', { kind: 'kubemq.events', channel: 'ev50', source: { concurrency: '2', max_pending: '50' } });
    ok(await s.q(req({ method: 'create_stream', stream_name: 'ev50' })));
    await s.peers.gate.fault({ kind: 'delay', op: 'PutRecord', ms: 200, count: 300 });
    await publishEvents(s.peers.broker.address, 'ev50', 300, 'ev50', 'b50');
    await rig.waitFor(async () => (await s.peers.broker.stats()).delivered.events >= 300, { timeoutMs: 30000, what: 'all delivered by the broker' });
    // The queue empties at 2 per 200 ms.
    await rig.waitFor(async () => (await s.peers.gate.stats()).byOp.PutRecord >= 52 &&
      (await metric(s.api, 'kubemq_kinesis_source_pending', 'ev50')) === 0 &&
      (await s.peers.gate.stats()).inFlight === 0, { timeoutMs: 60000, what: 'the queue drained' });
    const seen = await counts(s.peers.kin.url, 'ev50');
    const dropped = await metric(s.api, 'kubemq_kinesis_source_dropped_total', 'ev50');
    let written = 0;
    for (let i = 0; i < 300; i++) {
      const n = seen.get(`b50-${i}`) || 0;
      assert.ok(n <= 1, `b50-${i} written at most once`);
      written += n;
    }
    assert.ok(written >= 50 && written <= 54, `50 queued + the 2 in flight (+ a slot freed meanwhile) written, got ${written}`);
    assert.equal(written + dropped, 300, `every event written or counted as dropped (written ${written}, dropped ${dropped})`);
    assert.match(s.daemon.d.stderr(), /events dropped: \d+ requests wait for a slot already \(max_pending 50/);
    assert.deepEqual((await s.peers.broker.stats()).dropped.events || {}, {}, 'the broker dropped nothing');
  });

  it('more queries at once than concurrency + max_pending: each answered, ok or over capacity at once', async () => {
    const s = await setup('q12', { channel: 'q12', source: { concurrency: '2', max_pending: '10' } });
    ok(await s.q(req({ method: 'create_stream', stream_name: 'q12' })));
    await s.peers.gate.fault({ kind: 'delay', op: 'PutRecord', ms: 300, count: 40 });
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) =>
      s.client.query('q12', req({ method: 'put_record', stream_name: 'q12', partition_key: `p${i}` }, b64(`q-${i}`)), { timeoutMs: 30000 })
        .then((r) => ({ r, ms: Date.now() - started }), (e) => ({ failure: e.details || e.message }))));
    const failures = results.filter((x) => x.failure);
    assert.deepEqual(failures, [], 'no query went unanswered');
    const good = results.filter((x) => !x.r.reply.is_error);
    const over = results.filter((x) => x.r.reply.is_error);
    for (const x of over) {
      assert.match(x.r.reply.error, /over capacity: \d+ requests are waiting already \(binding q12, max_pending 10\)/);
      assert.equal(x.r.executed, false);
      assert.ok(x.ms < 5000, `over capacity answered at once (${x.ms} ms)`);
    }
    assert.ok(good.length >= 12, `concurrency + max_pending ran (${good.length})`);
    assert.ok(over.length >= 1, 'some were over capacity');
    assert.equal(good.length + over.length, 40);
    assert.equal(await metric(s.api, 'kubemq_kinesis_source_rejected_total', 'q12'), over.length);
    const seen = await counts(s.peers.kin.url, 'q12');
    let written = 0;
    for (let i = 0; i < 40; i++) written += seen.get(`q-${i}`) || 0;
    assert.equal(written, good.length, 'exactly the queries answered ok were written');
  });

  it('events-store: 2,000 against a slow target with max_pending 50, each written exactly once', async () => {
    const s = await setup('es2k', { kind: 'kubemq.events-store', channel: 'es2k', source: { concurrency: '4', max_pending: '50', start_position: 'first' } });
    ok(await s.q(req({ method: 'create_stream', stream_name: 'es2k', shard_count: '2' })));
    await s.peers.gate.fault({ kind: 'delay', op: 'PutRecord', ms: 20, count: 2000 });
    await publishEvents(s.peers.broker.address, 'es2k', 2000, 'es2k', 'st', true);
    await rig.waitFor(async () => {
      const st = await s.peers.gate.stats();
      return (st.byOp.PutRecord || 0) >= 2000 && st.inFlight === 0;
    }, { timeoutMs: 180000, what: '2000 PutRecord calls' });
    const seen = await counts(s.peers.kin.url, 'es2k');
    const missing = [];
    const twice = [];
    for (let i = 0; i < 2000; i++) {
      const n = seen.get(`st-${i}`) || 0;
      if (n === 0) missing.push(i);
      if (n > 1) twice.push(i);
    }
    assert.deepEqual(missing, [], 'no gap');
    assert.deepEqual(twice, [], 'no repeat');
    assert.equal(await metric(s.api, 'kubemq_kinesis_source_dropped_total', 'es2k'), 0);
    const durables = (await s.peers.broker.stats()).durables.filter((d) => d.channel === 'es2k');
    assert.ok(durables.length > 1, `the subscription paused and resumed on a new client id (${durables.length} ids)`);
    assert.equal(new Set(durables.map((d) => d.clientId)).size, durables.length, 'never a client id twice');
    assert.deepEqual((await s.peers.broker.stats()).dropped.events_store || {}, {}, 'the broker dropped nothing');
  });
});
