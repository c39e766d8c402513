'use strict';
// Queue source: messages are acknowledged only after the target succeeded; failures are
// requeued and, after max_requeue, moved to the dead-letter queue; a stop loses nothing.
const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { createRequire } = require('node:module');
const { cleanups, startPeers, binding, startDaemon, dataOf, ok, b64, req, rig, kubemq } = require('./daemon_lib');

const rigRequire = createRequire(path.join(__dirname, '..', 'rig', 'package.json'));
const { QueuesClient } = rigRequire('kubemq-js');

const bytes = (o) => Buffer.from(JSON.stringify(o));
const until = (fn, what, timeoutMs = 30000) => rig.waitFor(fn, { timeoutMs, what });

async function records(q, stream) {
  const r = ok(await q(req({ method: 'get_records', stream_name: stream, limit: '10000' })));
  return dataOf(r).Records.map((x) => Buffer.from(x.Data, 'base64').toString()).sort();
}

async function setup(c, name) {
  const peers = await startPeers(c);
  const client = kubemq.openClient(peers.broker.address, { clientId: `${name}-requester` });
  c.add(() => client.close());
  const q = (body) => client.query('q.setup', body, { timeoutMs: 30000 });
  const queues = new QueuesClient({ address: peers.broker.address, clientId: `${name}-queues` });
  c.add(() => queues.close());
  const setupBinding = binding('setup', { address: peers.broker.address, channel: 'q.setup', target: peers.targetProps });
  const queueBinding = (o) => binding('queue', { address: peers.broker.address, kind: 'kubemq.queue', target: peers.targetProps, ...o });
  return { peers, q, queues, setupBinding, queueBinding };
}

const stat = async (broker, ch) => (await broker.stats()).queues[ch] || {};

describe('daemon: kubemq.queue source', () => {
  const c = cleanups();
  after(() => c.run());

  it('processes and acknowledges every message exactly once, replies on response_channel', async () => {
    const s = await setup(c, 'qa');
    const apiPort = await rig.freePort();
    await startDaemon(c, s.peers.broker, {
      apiPort,
      bindings: [s.setupBinding, s.queueBinding({ channel: 'qu.kinesis', source: { batch_size: '4', wait_timeout: '1', response_channel: 'qu.replies' } })],
    });
    ok(await s.q(req({ method: 'create_stream', stream_name: 'qs', shard_count: '1' })));
    const N = 20;
    for (let i = 0; i < N; i++) {
      const r = await s.queues.send({ channel: 'qu.kinesis', metadata: '', body: bytes(req({ method: 'put_record', stream_name: 'qs', partition_key: `k${i}` }, b64(`msg-${i}`))) });
      assert.equal(r.isError, false);
    }
    await until(async () => (await stat(s.peers.broker, 'qu.kinesis')).acked === N, `${N} acks`);
    await rig.sleep(500);
    const st = await stat(s.peers.broker, 'qu.kinesis');
    assert.equal(st.acked, N);
    assert.equal(st.rejected, 0);
    assert.equal(st.waiting, 0);
    assert.deepEqual(await records(s.q, 'qs'), Array.from({ length: N }, (_, i) => `msg-${i}`).sort(), 'each once');
    const replies = await s.queues.pull({ channel: 'qu.replies', maxNumberOfMessages: 100, waitTimeoutSeconds: 2 });
    assert.equal(replies.messages.length, N);
    for (const m of replies.messages) {
      const r = JSON.parse(Buffer.from(m.body).toString());
      assert.equal(r.is_error, false);
      assert.equal(r.metadata.result, 'ok');
    }
  });

  it('requeues a failing message, then moves it to the dead-letter queue', async () => {
    const s = await setup(c, 'qd');
    await startDaemon(c, s.peers.broker, {
      apiPort: await rig.freePort(),
      bindings: [s.setupBinding, s.queueBinding({ channel: 'qu.fail', source: { wait_timeout: '1', max_requeue: '2', dead_letter_queue: 'qu.dlq' } })],
    });
    const body = bytes(req({ method: 'put_record', stream_name: 'missing-stream', partition_key: 'k' }, b64('doomed')));
    await s.queues.send({ channel: 'qu.fail', metadata: 'm', body });
    await until(async () => (await stat(s.peers.broker, 'qu.dlq')).waiting === 1, 'dead-lettered');
    const st = await stat(s.peers.broker, 'qu.fail');
    assert.equal(st.rejected, 2, 'requeued max_requeue times');
    assert.equal(st.acked || 0, 1, 'moved (resend) once');
    assert.equal(st.waiting, 0);
    const dl = await s.queues.pull({ channel: 'qu.dlq', maxNumberOfMessages: 10, waitTimeoutSeconds: 1 });
    assert.equal(dl.messages.length, 1);
    assert.equal(Buffer.from(dl.messages[0].body).toString(), body.toString(), 'the message itself');
  });

  it('SIGTERM mid-batch: taken messages finish and are acked, the rest stay queued; a crash loses nothing', async () => {
    const s = await setup(c, 'qt');
    const cfg = async () => ({
      apiPort: await rig.freePort(),
      bindings: [s.setupBinding, s.queueBinding({ channel: 'qu.stop', source: { batch_size: '3', wait_timeout: '1' } })],
    });
    const first = await startDaemon(c, s.peers.broker, await cfg());
    ok(await s.q(req({ method: 'create_stream', stream_name: 'qstop', shard_count: '1' })));
    await s.peers.gate.fault({ kind: 'hold', op: 'PutRecord', count: 3 });
    const N = 10;
    for (let i = 0; i < N; i++) {
      await s.queues.send({ channel: 'qu.stop', metadata: '', body: bytes(req({ method: 'put_record', stream_name: 'qstop', partition_key: `k${i}` }, b64(`stop-${i}`))) });
    }
    await until(async () => (await s.peers.gate.stats()).held === 3, '3 requests held in the gate');
    const exited = first.d.stop('SIGTERM', { graceMs: 30000 });
    await rig.sleep(500);
    await s.peers.gate.release();
    const { code } = await exited;
    assert.equal(code, 0);
    let st = await stat(s.peers.broker, 'qu.stop');
    assert.equal(st.acked, 3, 'the taken messages finished and were acked');
    assert.equal(st.waiting, N - 3, 'the rest wait in the queue');

    // A crash (SIGKILL) with messages taken: they return to the queue.
    await s.peers.gate.fault({ kind: 'hold', op: 'PutRecord', count: 3 });
    const second = await startDaemon(c, s.peers.broker, await cfg());
    await until(async () => (await s.peers.gate.stats()).held === 3, '3 requests held again');
    await second.d.stop('SIGKILL');
    await s.peers.gate.release();
    await until(async () => (await stat(s.peers.broker, 'qu.stop')).waiting === N - 3, 'unacked messages back in the queue');

    await startDaemon(c, s.peers.broker, await cfg());
    await until(async () => (await stat(s.peers.broker, 'qu.stop')).waiting === 0 && (await stat(s.peers.broker, 'qu.stop')).inflight === 0, 'queue drained');
    st = await stat(s.peers.broker, 'qu.stop');
    const recs = await records(s.q, 'qstop');
    const distinct = [...new Set(recs)].sort();
    assert.deepEqual(distinct, Array.from({ length: N }, (_, i) => `stop-${i}`).sort(), 'every message written');
    assert.equal(st.acked, N, 'every message acked once');
  });
});
