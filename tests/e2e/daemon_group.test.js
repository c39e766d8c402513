'use strict';
// Scale-out: two daemon processes subscribed in one group share the queries of a
// channel; each query is handled by exactly one of them.
const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const { cleanups, startPeers, binding, startDaemon, dataOf, ok, b64, req, rig, kubemq } = require('./daemon_lib');

async function requestsCount(api, name) {
  const m = (await rig.httpRequest(`${api}/metrics`)).text;
  const line = m.split('\n').find((l) => l.startsWith(`kubemq_targets_requests_count{binding="${name}",`));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('daemon: two replicas in one group', () => {
  const c = cleanups();
  after(() => c.run());

  it('share 200 queries, every one answered once and written once', async () => {
    const peers = await startPeers(c);
    const client = kubemq.openClient(peers.broker.address, { clientId: 'group-requester' });
    c.add(() => client.close());
    const q = (body) => client.query('q.group', body, { timeoutMs: 30000 });
    const daemons = [];
    for (const name of ['replica-a', 'replica-b']) {
      const apiPort = await rig.freePort();
      const config = {
        apiPort,
        bindings: [binding('kinesis', {
          address: peers.broker.address, channel: 'q.group', group: 'kinesis-workers',
          source: { client_id: name }, target: peers.targetProps,
        })],
      };
      daemons.push(await startDaemon(c, peers.broker, config));
    }
    await peers.broker.waitForSubscribers('queries', 'q.group', { group: 'kinesis-workers', count: 2 });
    ok(await q(req({ method: 'create_stream', stream_name: 'shared', shard_count: '2' })));
    const base = await Promise.all(daemons.map((d) => requestsCount(d.api, 'kinesis')));

    const N = 200;
    const replies = await Promise.all(Array.from({ length: N }, (_, i) =>
      q(req({ method: 'put_record', stream_name: 'shared', partition_key: `k${i}` }, b64(`record-${i}`)))));
    for (const r of replies) ok(r);
    const seqs = new Set(replies.map((r) => r.reply.metadata.sequence_number));
    assert.equal(seqs.size, N, 'every query got its own answer');

    const counts = await Promise.all(daemons.map((d, i) => requestsCount(d.api, 'kinesis').then((n) => n - base[i])));
    assert.equal(counts[0] + counts[1], N, `handled ${counts.join(' + ')}: each query by exactly one replica`);
    assert.ok(counts[0] > 0 && counts[1] > 0, `both replicas took work (${counts.join(', ')})`);

    const recs = dataOf(ok(await q(req({ method: 'get_records', stream_name: 'shared', limit: '10000' })))).Records;
    const payloads = recs.map((r) => Buffer.from(r.Data, 'base64').toString()).sort();
    assert.equal(payloads.length, N, 'each record written once');
    assert.deepEqual(payloads, Array.from({ length: N }, (_, i) => `record-${i}`).sort());
    const stats = await peers.gate.stats();
    assert.equal(stats.byOp.PutRecord, N);

    // Without apiEnableRequest the API runs nothing for its callers.
    const post = await rig.httpRequest(`${daemons[0].api}/bindings/request`, {
      method: 'POST', body: JSON.stringify({ binding: 'kinesis', payload: req({ method: 'list_streams' }) }),
    });
    assert.equal(post.status, 404);
    assert.equal((await peers.gate.stats()).total, stats.total, 'no AWS call made');
  });
});
