'use strict';
// Binding limits through the running daemon: the concurrency bound across
// connections, the rate limit and the retry middleware.
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { cleanups, startPeers, binding, startDaemon, dataOf, ok, b64, req, rig, kubemq } = require('./daemon_lib');

async function setup(c, { source = {}, target = {}, props = {} } = {}) {
  const peers = await startPeers(c);
  const config = {
    apiPort: 0,
    bindings: [binding('kinesis', {
      address: peers.broker.address, channel: 'q.limits', source,
      target: { ...peers.targetProps, ...target }, props,
    })],
  };
  const daemon = await startDaemon(c, peers.broker, config);
  const client = kubemq.openClient(peers.broker.address, { clientId: 'limits-requester' });
  c.add(() => client.close());
  const q = (body) => client.query('q.limits', body, { timeoutMs: 60000 });
  ok(await q(req({ method: 'create_stream', stream_name: 'l' })));
  await peers.gate.reset();
  return { peers, daemon, q };
}

const puts = (q, n, tag) => Array.from({ length: n }, (_, i) =>
  q(req({ method: 'put_record', stream_name: 'l', partition_key: `k${i}` }, b64(`${tag}-${i}`))));

describe('daemon: binding limits', () => {
  it('concurrency 4 (over 2 connections) never has more than 4 AWS calls in flight', async (t) => {
    const c = cleanups();
    t.after(() => c.run());
    const { peers, q } = await setup(c, { source: { concurrency: '4', sources: '2' } });
    await peers.gate.fault({ kind: 'delay', op: 'PutRecord', ms: 150, count: 40 });
    const replies = await Promise.all(puts(q, 40, 'bounded'));
    for (const r of replies) ok(r);
    const s = await peers.gate.stats();
    assert.equal(s.byOp.PutRecord, 40);
    assert.ok(s.maxInFlight <= 4, `at most 4 in flight, saw ${s.maxInFlight}`);
    assert.equal(s.maxInFlight, 4, 'the bound is reached');
  });

  it('rate_per_second 20 spreads 100 queries over about 5 s', async (t) => {
    const c = cleanups();
    t.after(() => c.run());
    const { peers, q } = await setup(c, { props: { rate_per_second: '20' } });
    const t0 = Date.now();
    const replies = await Promise.all(puts(q, 100, 'rated'));
    const took = (Date.now() - t0) / 1000;
    for (const r of replies) ok(r);
    assert.equal((await peers.gate.stats()).byOp.PutRecord, 100);
    // 99 intervals of 50 ms: not faster than the limit allows; loose above.
    assert.ok(took >= 4, `100 queries at 20/s took ${took} s`);
    assert.ok(took < 30, `100 queries at 20/s took ${took} s`);
  });

  it('retry_attempts 3 with target max_attempts 1 gets past two throttles', async (t) => {
    const c = cleanups();
    t.after(() => c.run());
    const { peers, q } = await setup(c, {
      target: { max_attempts: '1' },
      props: { retry_attempts: '3', retry_delay_milliseconds: '50', retry_delay_type: 'fixed' },
    });
    await peers.gate.fault({ kind: 'throttle', op: 'PutRecord', count: 2 });
    const r = ok(await q(req({ method: 'put_record', stream_name: 'l', partition_key: 'p' }, b64('retried'))));
    assert.match(r.metadata.sequence_number, /^\d+$/);
    const s = await peers.gate.stats();
    assert.equal(s.byOp.PutRecord, 3, 'two throttled attempts, then the one that worked');
    assert.equal(s.faultsApplied, 2);
    const all = dataOf(ok(await q(req({ method: 'get_records', stream_name: 'l', limit: '100' })))).Records;
    assert.deepEqual(all.map((x) => Buffer.from(x.Data, 'base64').toString()), ['retried']);
  });
});
