'use strict';
// Events and events-store sources: the real client (kubemq-js) publishes envelopes, the
// daemon runs them against kinesalite (behind the gate), and the reply envelope comes back
// on response_channel.
const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { createRequire } = require('node:module');
const { cleanups, startPeers, binding, startDaemon, dataOf, ok, b64, req, rig, kubemq } = require('./daemon_lib');

const rigRequire = createRequire(path.join(__dirname, '..', 'rig', 'package.json'));
const { EventsClient, EventsStoreClient, EventStoreType } = rigRequire('kubemq-js');

const bytes = (o) => Buffer.from(JSON.stringify(o));
const until = (fn, what, timeoutMs = 20000) => rig.waitFor(fn, { timeoutMs, what });

// The records of a stream, as text, sorted.
async function records(q, stream) {
  const r = ok(await q(req({ method: 'get_records', stream_name: stream, limit: '10000' })));
  return dataOf(r).Records.map((x) => Buffer.from(x.Data, 'base64').toString()).sort();
}

async function setup(c, bindings, name) {
  const peers = await startPeers(c);
  const client = kubemq.openClient(peers.broker.address, { clientId: `${name}-requester` });
  c.add(() => client.close());
  const q = (body) => client.query('q.setup', body, { timeoutMs: 30000 });
  const all = [binding('setup', { address: peers.broker.address, channel: 'q.setup', target: peers.targetProps })];
  for (const b of bindings) all.push(binding(b.name, { address: peers.broker.address, target: peers.targetProps, ...b }));
  return { peers, q, bindings: all };
}

describe('daemon: kubemq.events and kubemq.events-store sources', () => {
  const c = cleanups();
  after(() => c.run());

  it('events: put_record runs and the reply envelope arrives on response_channel', async () => {
    const s = await setup(c, [
      { name: 'events', kind: 'source.events', channel: 'ev.kinesis', source: { response_channel: 'ev.replies' } },
    ], 'ev');
    const addr = s.peers.broker.address;
    await startDaemon(c, s.peers.broker, { apiPort: await rig.freePort(), bindings: s.bindings });
    ok(await s.q(req({ method: 'create_stream', stream_name: 'ev-stream', shard_count: '1' })));

    const replies = [];
    const sub = new EventsClient({ address: addr, clientId: 'ev-replies' });
    c.add(() => sub.close());
    const h1 = await sub.subscribe({ channel: 'ev.replies' }, (err, msg) => msg && replies.push(JSON.parse(Buffer.from(msg.body).toString())));
    c.add(() => h1.unsubscribe()); // or the process never exits
    await s.peers.broker.waitForSubscribers('events', 'ev.replies');
    await rig.sleep(300);

    const pub = new EventsClient({ address: addr, clientId: 'ev-pub' });
    c.add(() => pub.close());
    for (let i = 0; i < 3; i++) {
      const r = await pub.send({ channel: 'ev.kinesis', metadata: '', body: bytes(req({ method: 'put_record', stream_name: 'ev-stream', partition_key: `k${i}` }, b64(`event-${i}`))) });
      assert.equal(r.sent, true);
    }
    // A failing request: its error envelope is published too.
    await pub.send({ channel: 'ev.kinesis', metadata: '', body: bytes(req({ method: 'put_record', stream_name: 'no-such-stream', partition_key: 'x' }, b64('lost'))) });
    await until(() => replies.length === 4, '4 replies on ev.replies');
    const good = replies.filter((r) => !r.is_error);
    const bad = replies.filter((r) => r.is_error);
    assert.equal(good.length, 3, JSON.stringify(replies));
    for (const r of good) {
      assert.equal(r.metadata.result, 'ok');
      assert.match(r.metadata.sequence_number, /^\d+$/);
    }
    assert.equal(bad.length, 1);
    assert.match(bad[0].error, /ResourceNotFound|not found/i);
    assert.deepEqual(await records(s.q, 'ev-stream'), ['event-0', 'event-1', 'event-2']);
  });

  it('events: two connections in one group take each event once', async () => {
    const s = await setup(c, [
      { name: 'grouped', kind: 'kubemq.events', channel: 'ev.group', group: 'kin', source: { sources: '2' } },
    ], 'evg');
    await startDaemon(c, s.peers.broker, { apiPort: await rig.freePort(), bindings: s.bindings });
    await s.peers.broker.waitForSubscribers('events', 'ev.group', { group: 'kin', count: 2 });
    ok(await s.q(req({ method: 'create_stream', stream_name: 'grp', shard_count: '1' })));
    const pub = new EventsClient({ address: s.peers.broker.address, clientId: 'evg-pub' });
    c.add(() => pub.close());
    const N = 20;
    for (let i = 0; i < N; i++) {
      await pub.send({ channel: 'ev.group', metadata: '', body: bytes(req({ method: 'put_record', stream_name: 'grp', partition_key: `k${i}` }, b64(`g-${i}`))) });
    }
    const want = Array.from({ length: N }, (_, i) => `g-${i}`).sort();
    await until(async () => (await records(s.q, 'grp')).length >= N, `${N} records`);
    await rig.sleep(500);
    assert.deepEqual(await records(s.q, 'grp'), want, 'each event written exactly once');
  });

  it('events-store: every start position replays its part of the history, then live messages', async () => {
    // start_time is set once messages 1 and 2 are stored (the bindings are only read when the
    // daemon starts, after the history is written).
    const peersOnly = await setup(c, [
      { name: 'from-first', kind: 'kubemq.events-store', channel: 'es.first', source: { start_position: 'first', response_channel: 'es.replies' } },
      { name: 'from-seq', kind: 'source.events-store', channel: 'es.seq', source: { start_position: 'sequence', start_sequence: '3' } },
      { name: 'new-only', kind: 'source.kubemq.events-store', channel: 'es.new' },
      { name: 'from-last', kind: 'kubemq.events-store', channel: 'es.last', source: { start_position: 'last' } },
      { name: 'from-delta', kind: 'kubemq.events-store', channel: 'es.delta', source: { start_position: 'time_delta', start_time_delta_seconds: '3600' } },
      { name: 'from-time', kind: 'kubemq.events-store', channel: 'es.time', source: { start_position: 'time', start_time: '' } },
    ], 'es');
    const streams = ['es-first', 'es-seq', 'es-new', 'es-last', 'es-delta', 'es-time'];
    const addr = peersOnly.peers.broker.address;
    const pub = new EventsStoreClient({ address: addr, clientId: 'es-pub' });
    c.add(() => pub.close());
    // History before the daemon starts; the streams are created first.
    const setupDaemon = await startDaemon(c, peersOnly.peers.broker, { apiPort: await rig.freePort(), bindings: [peersOnly.bindings[0]] });
    for (const st of streams) {
      ok(await peersOnly.q(req({ method: 'create_stream', stream_name: st, shard_count: '1' })));
    }
    await setupDaemon.d.stop();
    const put = (ch, stream, i) => pub.send({ channel: ch, metadata: '', body: bytes(req({ method: 'put_record', stream_name: stream, partition_key: 'k' }, b64(`${stream}-${i}`))) });
    for (let i = 1; i <= 4; i++) {
      if (i === 3) {
        await rig.sleep(50);
        peersOnly.bindings.find((b) => b.name === 'from-time').source.properties.start_time = new Date().toISOString();
        await rig.sleep(50);
      }
      for (const st of streams) await put(st.replace('-', '.'), st, i);
    }
    const replies = [];
    const sub = new EventsStoreClient({ address: addr, clientId: 'es-replies' });
    c.add(() => sub.close());
    const h2 = await sub.subscribe({ channel: 'es.replies', requestType: EventStoreType.StartFromFirst }, (err, msg) => msg && replies.push(JSON.parse(Buffer.from(msg.body).toString())));
    c.add(() => h2.unsubscribe());

    await startDaemon(c, peersOnly.peers.broker, { apiPort: await rig.freePort(), bindings: peersOnly.bindings });
    await until(async () => (await records(peersOnly.q, 'es-first')).length >= 4 && (await records(peersOnly.q, 'es-seq')).length >= 2 &&
      (await records(peersOnly.q, 'es-delta')).length >= 4 && (await records(peersOnly.q, 'es-time')).length >= 2 &&
      (await records(peersOnly.q, 'es-last')).length >= 1, 'history processed');
    await rig.sleep(500);
    assert.deepEqual(await records(peersOnly.q, 'es-first'), ['es-first-1', 'es-first-2', 'es-first-3', 'es-first-4']);
    assert.deepEqual(await records(peersOnly.q, 'es-seq'), ['es-seq-3', 'es-seq-4'], 'from sequence 3');
    assert.deepEqual(await records(peersOnly.q, 'es-new'), [], 'new_only skips the history');
    assert.deepEqual(await records(peersOnly.q, 'es-last'), ['es-last-4'], 'last: the last stored message');
    assert.deepEqual(await records(peersOnly.q, 'es-delta'), ['es-delta-1', 'es-delta-2', 'es-delta-3', 'es-delta-4'], 'time_delta of an hour');
    assert.deepEqual(await records(peersOnly.q, 'es-time'), ['es-time-3', 'es-time-4'], 'from start_time');
    await until(() => replies.length === 4, '4 stored replies on es.replies');
    assert.ok(replies.every((r) => r.is_error === false && r.metadata.result === 'ok'), JSON.stringify(replies));
    // Live messages reach all three.
    await put('es.first', 'es-first', 5);
    await put('es.seq', 'es-seq', 5);
    await put('es.new', 'es-new', 5);
    await put('es.time', 'es-time', 5);
    await until(async () => (await records(peersOnly.q, 'es-new')).length === 1 && (await records(peersOnly.q, 'es-seq')).length === 3 &&
      (await records(peersOnly.q, 'es-first')).length === 5 && (await records(peersOnly.q, 'es-time')).length === 3, 'live messages');
    assert.deepEqual(await records(peersOnly.q, 'es-new'), ['es-new-5']);
    assert.deepEqual(await records(peersOnly.q, 'es-time'), ['es-time-3', 'es-time-4', 'es-time-5']);
  });

  it('events-store: a start position without its value is a config error', async () => {
    const bad = {
      bindings: [binding('b', { address: '127.0.0.1:1', channel: 'x', kind: 'kubemq.events-store', source: { start_position: 'time', start_sequence: '2' }, target: { aws_key: 'a', aws_secret_key: 'b', region: 'us-east-1' } })],
    };
    const d = rig.startDaemon(rig.writeConfig(bad), { env: {} });
    c.add(async () => { if (rig.pidAlive(d.pid)) await d.stop('SIGKILL'); });
    const { code } = await d.waitExit();
    assert.notEqual(code, 0);
    assert.match(d.stderr(), /start_time: is required \(RFC 3339\) with start_position: time/);
    assert.match(d.stderr(), /start_sequence: only applies with start_position: sequence/);
  });
});
