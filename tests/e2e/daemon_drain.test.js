'use strict';
// SIGTERM: the daemon stops taking queries, answers every one it took, then exits 0.
// A second SIGTERM while draining exits at once; past drain_timeout_seconds what is
// left is answered with an error.
const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const { cleanups, startPeers, binding, startDaemon, ok, fails, b64, req, linesOf, rig, kubemq } = require('./daemon_lib');

async function setup(c, source = {}) {
  const peers = await startPeers(c);
  const apiPort = await rig.freePort();
  const config = {
    apiPort,
    bindings: [binding('kinesis', { address: peers.broker.address, channel: 'q.drain', source, target: peers.targetProps })],
  };
  const daemon = await startDaemon(c, peers.broker, config);
  const client = kubemq.openClient(peers.broker.address, { clientId: 'drain-requester' });
  c.add(() => client.close());
  const q = (body) => client.query('q.drain', body, { timeoutMs: 60000 });
  ok(await q(req({ method: 'create_stream', stream_name: 'd' })));
  return { peers, daemon, q };
}

// n put_record queries parked in the gate (not awaited).
async function park(peers, q, n) {
  await peers.gate.fault({ kind: 'hold', op: 'PutRecord', count: n });
  const pending = Array.from({ length: n }, (_, i) =>
    q(req({ method: 'put_record', stream_name: 'd', partition_key: `k${i}` }, b64(`in-flight-${i}`))));
  pending.forEach((p) => p.catch(() => {})); // awaited later; no unhandled rejection meanwhile
  await rig.waitFor(async () => (await peers.gate.stats()).held === n, { timeoutMs: 20000, what: `${n} requests held` });
  return pending;
}

describe('daemon: drain on SIGTERM', () => {
  it('answers all 50 queries in flight before exiting 0', async (t) => {
    const c = cleanups();
    t.after(() => c.run());
    const { peers, daemon, q } = await setup(c);
    const { d, api } = daemon;
    const pending = await park(peers, q, 50);

    process.kill(d.pid, 'SIGTERM');
    await d.waitForStderr(/SIGTERM received: stopping \(50 requests in flight\)/, 10000);
    // Intake stopped: the subscription is gone from the broker, /ready says stopping.
    await peers.broker.waitFor((s) => !Object.values(s.subscribers.queries['q.drain'] || {}).some((n) => n > 0),
      { what: 'the daemon unsubscribed' });
    const ready = await rig.httpRequest(`${api}/ready`);
    assert.equal(ready.status, 503);
    assert.ok(rig.pidAlive(d.pid), 'still draining');

    await peers.gate.release();
    const replies = await Promise.all(pending);
    for (const r of replies) ok(r);
    const exit = await d.waitExit();
    assert.equal(exit.code, 0, d.stderr());
    assert.equal(linesOf(d, /draining: 50 requests in flight/).length, 1);

    const held = await rig.kinesisCall(peers.kin.url, 'GetShardIterator',
      { StreamName: 'd', ShardId: 'shardId-000000000000', ShardIteratorType: 'TRIM_HORIZON' }, { accessKey: 'x', secretKey: 'y' });
    const recs = await rig.kinesisCall(peers.kin.url, 'GetRecords', { ShardIterator: held.json.ShardIterator, Limit: 1000 },
      { accessKey: 'x', secretKey: 'y' });
    assert.equal(recs.json.Records.length, 50, 'every in-flight record was written');
  });

  it('a second SIGTERM while draining exits at once with status 1', async (t) => {
    const c = cleanups();
    t.after(() => c.run());
    const { peers, daemon, q } = await setup(c);
    const { d } = daemon;
    const pending = await park(peers, q, 5);
    process.kill(d.pid, 'SIGTERM');
    await d.waitForStderr(/SIGTERM received: stopping/, 10000);
    process.kill(d.pid, 'SIGTERM');
    const exit = await d.waitExit();
    assert.equal(exit.code, 1);
    assert.match(d.stderr(), /second SIGTERM while draining: exiting now with 5 requests in flight/);
    // Those 5 are lost with the process: that is what the operator asked for.
    assert.equal(pending.length, 5);
    await peers.gate.release();
  });

  it('past drain_timeout_seconds the requests left are answered with an error, then exit 0', async (t) => {
    const c = cleanups();
    t.after(() => c.run());
    const { peers, daemon, q } = await setup(c, { drain_timeout_seconds: '1' });
    const { d } = daemon;
    const pending = await park(peers, q, 3);
    process.kill(d.pid, 'SIGTERM');
    const replies = await Promise.all(pending);
    for (const r of replies) fails(r, /target stopped before the request finished|TransportError/);
    const exit = await d.waitExit();
    assert.equal(exit.code, 0, d.stderr());
    assert.match(d.stderr(), /drain timeout after 1 s: 3 requests still in flight are answered with an error/);
    await peers.gate.release();
  });

  it('SIGTERM during a reload: the reload finishes, then every request is answered and exit 0', async (t) => {
    const c = cleanups();
    t.after(() => c.run());
    const { peers, daemon, q } = await setup(c);
    const { d, path } = daemon;
    // Ten in flight in the binding the reload replaces.
    const pending = await park(peers, q, 10);
    const cfg = JSON.parse(require('node:fs').readFileSync(path, 'utf8'));
    cfg.bindings[0].properties = { log_level: 'error' }; // changed: the binding is replaced
    require('node:fs').writeFileSync(path, JSON.stringify(cfg));
    process.kill(d.pid, 'SIGHUP');
    await d.waitForStderr(/reload: binding kinesis is changed: starting it anew/, 10000);
    process.kill(d.pid, 'SIGTERM');
    await d.waitForStderr(/SIGTERM received during the reload: stopping after it/, 10000);
    await rig.sleep(300);
    assert.ok(rig.pidAlive(d.pid), 'still draining what the old binding holds');
    await peers.gate.release();
    for (const r of await Promise.all(pending)) ok(r);
    const exit = await d.waitExit();
    assert.equal(exit.code, 0, d.stderr());
    assert.match(d.stderr(), /reloaded: 1 binding/);
  });

  it('coalesced puts still lingering when SIGTERM comes are sent and answered', async (t) => {
    const c = cleanups();
    t.after(() => c.run());
    const peers = await startPeers(c);
    const config = {
      apiPort: await rig.freePort(),
      bindings: [binding('kinesis', {
        address: peers.broker.address,
        channel: 'q.linger',
        target: { ...peers.targetProps, coalesce: 'true', coalesce_linger_ms: '1500' },
      })],
    };
    const { d } = await startDaemon(c, peers.broker, config);
    const client = kubemq.openClient(peers.broker.address, { clientId: 'linger-requester' });
    c.add(() => client.close());
    const q = (body) => client.query('q.linger', body, { timeoutMs: 30000 });
    ok(await q(req({ method: 'create_stream', stream_name: 'l' })));
    // The first batch is held at the gate; the next records linger behind it.
    await peers.gate.fault({ kind: 'hold', op: 'PutRecords', count: 1 });
    const put = (i) => q(req({ method: 'put_record', stream_name: 'l', partition_key: `k${i}` }, b64(`linger-${i}`)));
    const pending = [put(0)];
    await rig.waitFor(async () => (await peers.gate.stats()).held === 1, { what: 'the first batch held' });
    for (let i = 1; i < 20; i++) pending.push(put(i));
    await rig.sleep(300);
    assert.equal((await peers.gate.stats()).byOp.PutRecords, 1, 'the others linger');
    process.kill(d.pid, 'SIGTERM');
    await d.waitForStderr(/SIGTERM received: stopping \(20 requests in flight\)/, 10000);
    await peers.gate.release();
    for (const r of await Promise.all(pending)) ok(r);
    const exit = await d.waitExit();
    assert.equal(exit.code, 0, d.stderr());
    const recs = await rig.kinesisCall(peers.kin.url, 'GetShardIterator',
      { StreamName: 'l', ShardId: 'shardId-000000000000', ShardIteratorType: 'TRIM_HORIZON' }, { accessKey: 'x', secretKey: 'y' });
    const got = await rig.kinesisCall(peers.kin.url, 'GetRecords', { ShardIterator: recs.json.ShardIterator, Limit: 1000 },
      { accessKey: 'x', secretKey: 'y' });
    assert.equal(got.json.Records.length, 20, 'each record once');
  });
});
