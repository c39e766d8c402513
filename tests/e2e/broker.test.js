// broker.test.js - the stand-in KubeMQ broker checked with the real client kubemq-js 1.2.3
// (plus a raw @grpc/grpc-js client on our proto where kubemq-js cannot express a case).
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { createRequire } = require('node:module');

const RIG = path.join(__dirname, '..', 'rig');
const rigRequire = createRequire(path.join(RIG, 'package.json'));
const kubemq = rigRequire('kubemq-js');
const grpc = rigRequire('@grpc/grpc-js');
const protoLoader = rigRequire('@grpc/proto-loader');
const rig = require(path.join(RIG, 'lib.js'));

const { startBroker, KUBEMQ_PROTO: PROTO, KUBEMQ_LOADER_OPTS: LOADER_OPTS } = rig;

const { Utils, EventStoreType } = kubemq;
const bytes = (s) => Utils.stringToBytes(s);
const text = (u8) => Buffer.from(u8).toString();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const SETTLE_MS = 500; // kubemq-js resolves subscribe() before the stream is live

async function until(pred, timeoutMs = 10000, what = 'condition') {
  const end = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

// Every client and subscription a test opens, closed at the end (or the process hangs).
function tracker() {
  const subs = [];
  const clients = [];
  return {
    client(Kind, b, clientId, extra = {}) {
      const c = new kubemq[Kind]({ address: b.address, clientId, ...extra });
      clients.push(c);
      return c;
    },
    async sub(p) {
      const s = await p;
      subs.push(s);
      return s;
    },
    closeAll() {
      for (const s of subs.splice(0)) s.unsubscribe();
      for (const c of clients.splice(0)) c.close();
    },
  };
}

function rawClient(address) {
  const def = protoLoader.loadSync(PROTO, LOADER_OPTS);
  const Ctor = grpc.loadPackageDefinition(def).kubemq.kubemq;
  return new Ctor(address, grpc.credentials.createInsecure());
}
const rawCall = (client, method, req, md = new grpc.Metadata()) =>
  new Promise((resolve, reject) => client[method](req, md, (err, res) => (err ? reject(err) : resolve(res))));

// Opens a raw server-streaming subscription; resolves with the final status (error or OK).
function rawSubscribe(client, method, req, onData = () => {}) {
  const call = client[method](req);
  const done = new Promise((resolve) => {
    call.on('data', onData);
    call.on('error', (e) => resolve(e));
    call.on('end', () => resolve(null));
  });
  return { call, done };
}

describe('stand-in broker with kubemq-js 1.2.3', () => {
  let b;
  const t = tracker();

  before(async () => {
    b = await startBroker({ port: 0 });
  });
  after(async () => {
    t.closeAll();
    if (b) {
      const r = await b.stop();
      assert.equal(r.code, 0, `broker exit status ${JSON.stringify(r)}; stderr: ${b.stderr()}`);
    }
  });

  it('answers Ping', async () => {
    const c = t.client('QueriesClient', b, 'ping-client');
    const info = await c.ping();
    assert.equal(info.version, 'stand-in');
    assert.ok(info.host.length > 0);
    const now = Math.floor(Date.now() / 1000);
    assert.ok(Math.abs(info.serverStartTime - now) < 600, `serverStartTime ${info.serverStartTime} is Unix seconds`);
    assert.ok(info.serverUpTimeSeconds >= 0);
  });

  it('round-trips a query with body and metadata', async () => {
    const responder = t.client('QueriesClient', b, 'q-responder');
    const requester = t.client('QueriesClient', b, 'q-requester');
    const seen = [];
    await t.sub(
      responder.subscribe({ channel: 'q.roundtrip' }, (err, msg) => {
        if (err || !msg) return;
        seen.push(msg);
        responder.response({
          id: msg.id,
          replyChannel: msg.replyChannel,
          clientId: 'q-responder',
          executed: true,
          error: '',
          metadata: 'answer-meta',
          body: bytes(`echo:${text(msg.body)}`),
        });
      }),
    );
    await b.waitForSubscribers('queries', 'q.roundtrip');
    const res = await requester.send({ channel: 'q.roundtrip', body: bytes('hello'), metadata: 'ask-meta', timeout: 5000, id: 'req-1' });
    assert.equal(res.executed, true);
    assert.equal(res.error, '');
    assert.equal(res.id, 'req-1');
    assert.equal(res.clientId, 'q-responder');
    assert.equal(res.metadata, 'answer-meta');
    assert.equal(text(res.body), 'echo:hello');
    assert.equal(seen.length, 1);
    assert.equal(seen[0].metadata, 'ask-meta');
    assert.match(seen[0].replyChannel, /^_INBOX\.[0-9A-Za-z]{22}$/);
    const s = await b.stats();
    assert.ok(s.requests.queries >= 1 && s.responsesDelivered >= 1);
  });

  it('times out a query nobody answers with Error 301', async () => {
    const silent = t.client('QueriesClient', b, 'q-silent');
    const requester = t.client('QueriesClient', b, 'q-requester2');
    let got = 0;
    await t.sub(silent.subscribe({ channel: 'q.silent' }, (err, msg) => msg && got++));
    await b.waitForSubscribers('queries', 'q.silent');
    const timeouts0 = (await b.stats()).timeouts;
    await assert.rejects(requester.send({ channel: 'q.silent', body: bytes('x'), timeout: 300 }), (e) => {
      assert.equal(e.code, grpc.status.INTERNAL);
      assert.equal(e.details, 'Error 301: timeout for request message');
      return true;
    });
    assert.equal(got, 1, 'the subscriber saw the request');
    assert.equal((await b.stats()).timeouts, timeouts0 + 1);
  });

  it('times out a query without subscriber with Error 301', async () => {
    const requester = t.client('QueriesClient', b, 'q-requester3');
    const t0 = Date.now();
    await assert.rejects(requester.send({ channel: 'q.nobody', body: bytes('x'), timeout: 400 }), (e) => {
      assert.equal(e.code, grpc.status.INTERNAL);
      assert.equal(e.details, 'Error 301: timeout for request message');
      return true;
    });
    assert.ok(Date.now() - t0 >= 350, 'waited for the timeout, no fast fail');
  });

  it('rejects invalid requests with the documented errors', async () => {
    const requester = t.client('QueriesClient', b, 'q-invalid');
    const expectErr = (p, text) =>
      assert.rejects(p, (e) => {
        assert.equal(e.code, grpc.status.INTERNAL);
        assert.equal(e.details, text);
        return true;
      });
    await expectErr(requester.send({ channel: '', body: bytes('x'), timeout: 1000 }), 'Error 102: invalid channel value, cannot be empty');
    await expectErr(requester.send({ channel: 'a.', body: bytes('x'), timeout: 1000 }), 'Error 119: invalid channel value, cannot end with `.`');
    await expectErr(requester.send({ channel: 'a b', body: bytes('x'), timeout: 1000 }), 'Error 108: invalid channel value, no white spaces are allowed');
    await expectErr(requester.send({ channel: 'a.*', body: bytes('x'), timeout: 1000 }), 'Error 107: invalid channel value, no wildcards are allowed');
    await expectErr(requester.send({ channel: 'a', body: bytes(''), timeout: 1000 }), 'Error 115: invalid request, cannot be empty');
    await expectErr(requester.send({ channel: 'a', body: bytes('x'), timeout: 1000, cacheKey: 'k' }), 'Error 116: invalid cache ttl value, cannot be 0 or negative');
  });

  it('gives each query to exactly one member of a group', async () => {
    const requester = t.client('QueriesClient', b, 'g-requester');
    const counts = { m1: 0, m2: 0 };
    for (const name of ['m1', 'm2']) {
      const c = t.client('QueriesClient', b, `g-${name}`);
      await t.sub(
        c.subscribe({ channel: 'q.group', group: 'workers' }, (err, msg) => {
          if (!msg) return;
          counts[name]++;
          c.response({ id: msg.id, replyChannel: msg.replyChannel, executed: true, error: '', body: bytes(name), metadata: '' });
        }),
      );
    }
    await b.waitForSubscribers('queries', 'q.group', { group: 'workers', count: 2 });
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await requester.send({ channel: 'q.group', body: bytes(`n${i}`), timeout: 5000 }));
    assert.equal(counts.m1 + counts.m2, 6, 'each query delivered to exactly one member');
    assert.ok(counts.m1 > 0 && counts.m2 > 0, `both members served: ${JSON.stringify(counts)}`);
    assert.deepEqual(answers.map((a) => a.executed), Array(6).fill(true));
  });

  it('gives every ungrouped subscriber its own copy; the first answer wins', async () => {
    const requester = t.client('QueriesClient', b, 'u-requester');
    const seen = { a: 0, b: 0 };
    for (const name of ['a', 'b']) {
      const c = t.client('QueriesClient', b, `u-${name}`);
      await t.sub(
        c.subscribe({ channel: 'q.broadcast' }, (err, msg) => {
          if (!msg) return;
          seen[name]++;
          c.response({ id: msg.id, replyChannel: msg.replyChannel, executed: true, error: '', body: bytes(name), metadata: '' });
        }),
      );
    }
    await b.waitForSubscribers('queries', 'q.broadcast', { count: 2 });
    const late0 = (await b.stats()).responsesLate;
    const res = await requester.send({ channel: 'q.broadcast', body: bytes('all'), timeout: 5000 });
    assert.ok(['a', 'b'].includes(text(res.body)));
    await until(async () => (await b.stats()).responsesLate === late0 + 1, 5000, 'the second (late) response');
    assert.deepEqual(seen, { a: 1, b: 1 });
  });

  it('delivers to wildcard subscriptions', async () => {
    const sub = t.client('QueriesClient', b, 'w-sub');
    const requester = t.client('QueriesClient', b, 'w-requester');
    await t.sub(
      sub.subscribe({ channel: 'wild.*.x' }, (err, msg) => {
        if (msg) sub.response({ id: msg.id, replyChannel: msg.replyChannel, executed: true, error: '', body: bytes(msg.channel), metadata: '' });
      }),
    );
    await b.waitForSubscribers('queries', 'wild.*.x');
    const res = await requester.send({ channel: 'wild.abc.x', body: bytes('w'), timeout: 5000 });
    assert.equal(text(res.body), 'wild.abc.x');
    await assert.rejects(requester.send({ channel: 'wild.abc.y', body: bytes('w'), timeout: 300 }), /Error 301/);
  });

  it('round-trips commands (executed and error)', async () => {
    const responder = t.client('CommandsClient', b, 'c-responder');
    const requester = t.client('CommandsClient', b, 'c-requester');
    await t.sub(
      responder.subscribe({ channel: 'c.exec' }, (err, msg) => {
        if (!msg) return;
        const ok = text(msg.body) === 'good';
        responder.response({ id: msg.id, replyChannel: msg.replyChannel, executed: ok, error: ok ? '' : 'boom' });
      }),
    );
    await b.waitForSubscribers('commands', 'c.exec');
    const ok = await requester.send({ channel: 'c.exec', body: bytes('good'), timeout: 5000 });
    assert.equal(ok.executed, true);
    assert.equal(ok.error, '');
    assert.equal(ok.clientId, 'c-responder');
    const bad = await requester.send({ channel: 'c.exec', body: bytes('bad'), timeout: 5000 });
    assert.equal(bad.executed, false);
    assert.equal(bad.error, 'boom');
    // A query subscriber on the same channel does not see commands.
    await assert.rejects(t.client('QueriesClient', b, 'c-q').send({ channel: 'c.exec', body: bytes('q'), timeout: 300 }), /Error 301/);
  });

  it('clears body and metadata of command responses (raw client)', async () => {
    const raw = rawClient(b.address);
    try {
      const got = [];
      const sub = rawSubscribe(raw, 'SubscribeToRequests', { SubscribeTypeData: 3, ClientID: 'raw-sub', Channel: 'c.raw' }, (req) => {
        got.push(req);
        rawCall(raw, 'SendResponse', {
          ClientID: 'raw-sub',
          RequestID: req.RequestID,
          ReplyChannel: req.ReplyChannel,
          Executed: true,
          Body: Buffer.from('should-vanish'),
          Metadata: 'gone',
          CacheHit: true,
          Timestamp: 42,
        });
      });
      await b.waitForSubscribers('commands', 'c.raw');
      const res = await rawCall(raw, 'SendRequest', { RequestTypeData: 1, ClientID: 'raw-req', Channel: 'c.raw', Body: Buffer.from('b'), Timeout: 5000, Tags: { k: 'v' } });
      assert.equal(res.Executed, true);
      assert.equal(res.Body.length, 0);
      assert.equal(res.Metadata, '');
      assert.equal(res.CacheHit, false);
      assert.equal(res.ReplyChannel, '');
      assert.equal(res.Timestamp, '42');
      assert.equal(got.length, 1);
      assert.ok(got[0].RequestID.length > 0, 'server filled the empty RequestID');
      assert.deepEqual(got[0].Tags, { k: 'v' });
      assert.equal(got[0].Timeout, 5000);
      await assert.rejects(rawCall(raw, 'SendRequest', { RequestTypeData: 0, ClientID: 'x', Channel: 'c', Body: Buffer.from('b'), Timeout: 1 }), /Error 206: invalid request type/);
      await assert.rejects(rawCall(raw, 'SendResponse', { ClientID: 'x', ReplyChannel: '_INBOX.x' }), /Error 117: invalid request id, cannot be empty/);
      await assert.rejects(rawCall(raw, 'SendResponse', { ClientID: 'x', RequestID: 'r' }), /Error 102: invalid channel value, cannot be empty/);
      await assert.rejects(rawCall(raw, 'SendRequest', { RequestTypeData: 2, Channel: 'c', Body: Buffer.from('b'), Timeout: 1 }), /Error 101: invalid clientID value, cannot be empty/);
      await assert.rejects(rawCall(raw, 'SendRequest', { RequestTypeData: 2, ClientID: 'x', Channel: 'c', Body: Buffer.from('b') }), /Error 109: invalid set timeout value, cannot be 0 or negative/);
      await rawCall(raw, 'SendResponse', { ClientID: 'x', RequestID: 'r', ReplyChannel: '_INBOX.nobody' });
      sub.call.cancel();
    } finally {
      raw.close();
    }
  });

  it('ends invalid subscriptions with the documented errors (raw client)', async () => {
    const raw = rawClient(b.address);
    try {
      const cases = [
        ['SubscribeToRequests', { SubscribeTypeData: 1, ClientID: 'x', Channel: 'c' }, 'Error 207: invalid subscribe type'],
        ['SubscribeToRequests', { SubscribeTypeData: 4, ClientID: '', Channel: 'c' }, 'Error 101: invalid clientID value, cannot be empty'],
        ['SubscribeToEvents', { SubscribeTypeData: 3, ClientID: 'x', Channel: 'c' }, 'Error 207: invalid subscribe type'],
        ['SubscribeToEvents', { SubscribeTypeData: 1, ClientID: 'x', Channel: 'c', EventsStoreTypeData: 2 }, 'Error 118: event store parameters were set but subscribe type is not event store'],
        ['SubscribeToEvents', { SubscribeTypeData: 2, ClientID: 'x', Channel: 'c.*' }, 'Error 107: invalid channel value, no wildcards are allowed'],
        ['SubscribeToEvents', { SubscribeTypeData: 2, ClientID: 'x', Channel: 'c' }, 'Error 111: invalid subscription type, cannot be undefined or 0'],
        ['SubscribeToEvents', { SubscribeTypeData: 2, ClientID: 'x', Channel: 'c', EventsStoreTypeData: 4 }, 'Error 112: invalid subscription type start at sequence value, cannot by 0 or negative'],
        ['SubscribeToEvents', { SubscribeTypeData: 2, ClientID: 'x', Channel: 'c', EventsStoreTypeData: 5 }, 'Error 113: invalid subscription type start at time value, cannot by 0 or negative'],
        ['SubscribeToEvents', { SubscribeTypeData: 2, ClientID: 'x', Channel: 'c', EventsStoreTypeData: 6, EventsStoreTypeValue: -1 }, 'Error 114: invalid subscription type start at time delta value, cannot by 0 or negative'],
      ];
      for (const [method, req, text] of cases) {
        const err = await rawSubscribe(raw, method, req).done;
        assert.ok(err, `${method} ${JSON.stringify(req)} should fail`);
        assert.equal(err.code, grpc.status.INTERNAL);
        assert.equal(err.details, text);
      }
      await assert.rejects(rawCall(raw, 'SendEvent', { ClientID: 'x', Channel: 'c' }), /Error 110: invalid message, cannot be empty/);
    } finally {
      raw.close();
    }
  });

  it('publishes events to subscribers and groups', async () => {
    const pub = t.client('EventsClient', b, 'e-pub');
    const got = { solo: [], g1: [], g2: [] };
    for (const name of Object.keys(got)) {
      const c = t.client('EventsClient', b, `e-${name}`);
      await t.sub(c.subscribe({ channel: 'ev.a', group: name === 'solo' ? '' : 'grp' }, (err, msg) => msg && got[name].push(msg)));
    }
    await b.waitForSubscribers('events', 'ev.a', { count: 3 });
    for (let i = 0; i < 4; i++) {
      const r = await pub.send({ channel: 'ev.a', body: bytes(`e${i}`), metadata: `m${i}` });
      assert.equal(r.sent, true);
    }
    await until(() => got.solo.length === 4 && got.g1.length + got.g2.length === 4, 5000, 'events');
    assert.deepEqual(got.solo.map((m) => text(m.body)), ['e0', 'e1', 'e2', 'e3']);
    assert.equal(got.solo[1].metadata, 'm1');
    assert.ok(got.g1.length > 0 && got.g2.length > 0);
    await sleep(200);
    assert.equal(got.g1.length + got.g2.length, 4, 'no duplicates inside the group');
    await assert.rejects(pub.send({ channel: '', body: bytes('x') }), /Error 102/);
  });

  it('stores events with sequences and replays from start positions', async () => {
    const pub = t.client('EventsStoreClient', b, 'es-pub');
    const ch = 'es.store';
    for (let i = 1; i <= 3; i++) assert.equal((await pub.send({ channel: ch, body: bytes(`s${i}`), metadata: '' })).sent, true);
    const open = async (name, requestType, requestTypeValue = 0) => {
      const list = [];
      const c = t.client('EventsStoreClient', b, `es-${name}`);
      await t.sub(c.subscribe({ channel: ch, requestType, requestTypeValue }, (err, msg) => msg && list.push(msg)));
      return list;
    };
    const first = await open('first', EventStoreType.StartFromFirst);
    const atSeq = await open('atseq', EventStoreType.StartAtSequence, 2);
    const last = await open('last', EventStoreType.StartFromLast);
    const fresh = await open('new', EventStoreType.StartNewOnly);
    const delta = await open('delta', EventStoreType.StartAtTimeDelta, 3600);
    await b.waitForSubscribers('events_store', ch, { count: 5 });
    await until(() => first.length === 3 && atSeq.length === 2 && last.length === 1 && delta.length === 3, 5000, 'replays');
    assert.deepEqual(first.map((m) => m.sequence), [1, 2, 3]);
    assert.deepEqual(first.map((m) => text(m.body)), ['s1', 's2', 's3']);
    assert.deepEqual(atSeq.map((m) => m.sequence), [2, 3]);
    assert.deepEqual(last.map((m) => m.sequence), [3]);
    assert.equal(fresh.length, 0);
    const ts = first.map((m) => BigInt(m.timestamp));
    const nowNs = BigInt(Date.now()) * 1000000n;
    assert.ok(ts[0] < ts[1] && ts[1] < ts[2], 'timestamps increase');
    assert.ok(nowNs - ts[0] < 600n * 1000000000n && ts[0] <= nowNs + 1000000000n, 'timestamps are Unix ns');
    // kubemq-js turns the value into a JS number (ns lose precision), so aim between two events.
    const atTime = await open('attime', EventStoreType.StartAtTime, ((ts[0] + ts[1]) / 2n).toString());
    await until(() => atTime.length === 2, 5000, 'StartAtTime replay');
    assert.deepEqual(atTime.map((m) => m.sequence), [2, 3]);
    await pub.send({ channel: ch, body: bytes('s4'), metadata: '' });
    await until(() => first.length === 4 && fresh.length === 1 && atTime.length === 3, 5000, 'live event');
    assert.equal(fresh[0].sequence, 4);
  });

  it('streams events with SendEventsStream (events and events_store)', async () => {
    const es = t.client('EventsStoreClient', b, 'st-pub');
    const results = [];
    const stream = await es.stream((err, r) => r && results.push(r));
    stream.write({ channel: 'es.stream', body: bytes('a'), metadata: '' });
    stream.write({ channel: 'es.stream', body: bytes('b'), metadata: '' });
    stream.write({ channel: '', body: bytes('c'), metadata: '' });
    await until(() => results.length === 3, 5000, 'a result per store event');
    stream.end();
    assert.deepEqual(results.map((r) => r.sent), [true, true, false]);
    assert.equal(results[2].error, 'Error 102: invalid channel value, cannot be empty');
    assert.equal((await b.stats()).stores['es.stream'].lastSequence, 2);

    const sub = t.client('EventsClient', b, 'st-sub');
    const got = [];
    await t.sub(sub.subscribe({ channel: 'ev.stream' }, (err, msg) => msg && got.push(text(msg.body))));
    await b.waitForSubscribers('events', 'ev.stream');
    const pub = t.client('EventsClient', b, 'st-epub');
    const s2 = await pub.stream(() => {});
    for (const x of ['x1', 'x2', 'x3']) s2.write({ channel: 'ev.stream', body: bytes(x), metadata: '' });
    await until(() => got.length === 3, 5000, 'streamed events');
    s2.end();
    assert.deepEqual(got, ['x1', 'x2', 'x3']);
  });

  it('tolerates clients that send keepalive pings often', async () => {
    const raw = new (grpc.loadPackageDefinition(protoLoader.loadSync(PROTO, LOADER_OPTS)).kubemq.kubemq)(
      b.address,
      grpc.credentials.createInsecure(),
      { 'grpc.keepalive_time_ms': 100, 'grpc.keepalive_timeout_ms': 1000, 'grpc.keepalive_permit_without_calls': 1 },
    );
    try {
      await rawCall(raw, 'Ping', {});
      const s0 = await b.stats();
      await sleep(1500); // ~15 pings on an idle connection
      const ch = raw.getChannel();
      assert.equal(ch.getConnectivityState(false), grpc.connectivityState.READY, 'connection not sent away');
      await rawCall(raw, 'Ping', {});
      const s = await b.stats();
      assert.equal(s.connections.accepted, s0.connections.accepted, 'still the same connection');
      assert.equal(s.connections.tooManyPings, 0);
      assert.equal(s.settings.minPingIntervalMs, 0, 'no ping policy by default');
    } finally {
      raw.close();
    }
  });

  it('sends, peeks, pulls and acks queue messages', async () => {
    const q = t.client('QueuesClient', b, 'qu-client');
    const ch = 'qu.basic';
    for (let i = 1; i <= 3; i++) {
      const r = await q.send({ channel: ch, body: bytes(`m${i}`), metadata: `meta${i}` });
      assert.equal(r.isError, false);
      assert.ok(BigInt(r.sentAt) > 0n);
    }
    const peek = await q.peek({ channel: ch, maxNumberOfMessages: 3, waitTimeoutSeconds: 1 });
    assert.equal(peek.messages.length, 3);
    const pull = await q.pull({ channel: ch, maxNumberOfMessages: 2, waitTimeoutSeconds: 1 });
    assert.equal(pull.isError, false);
    assert.equal(pull.messagesReceived, 2);
    assert.deepEqual(pull.messages.map((m) => text(m.body)), ['m1', 'm2']);
    assert.deepEqual(pull.messages.map((m) => m.attributes.sequence), [1, 2]);
    assert.deepEqual(pull.messages.map((m) => m.attributes.receiveCount), [1, 1]);
    assert.equal(pull.messages[0].metadata, 'meta1');
    assert.ok(BigInt(pull.messages[0].attributes.timestamp) > 0n);
    const rest = await q.pull({ channel: ch, maxNumberOfMessages: 10, waitTimeoutSeconds: 1 });
    assert.deepEqual(rest.messages.map((m) => text(m.body)), ['m3']);
    const empty = await q.pull({ channel: ch, maxNumberOfMessages: 1, waitTimeoutSeconds: 1 });
    assert.equal(empty.messages.length, 0);
    assert.equal(empty.isError, false);
    const bad = await q.pull({ channel: ch, maxNumberOfMessages: 2000, waitTimeoutSeconds: 1 });
    assert.equal(bad.isError, true);
    assert.equal(bad.error, 'Error 122: max messages should be between 1 and max message setting in kubemq config  ');
    const badName = await q.send({ channel: 'bad name', body: bytes('x') });
    assert.equal(badName.isError, true);
    assert.match(badName.error, /^Error 120: /);
    // A waiting pull returns as soon as a message arrives.
    const waiting = q.pull({ channel: 'qu.wait', maxNumberOfMessages: 1, waitTimeoutSeconds: 30 });
    await sleep(200);
    await q.send({ channel: 'qu.wait', body: bytes('late') });
    assert.deepEqual((await waiting).messages.map((m) => text(m.body)), ['late']);
    // Batch send and ack-all.
    const results = await q.batch([1, 2, 3].map((i) => ({ channel: 'qu.ack', body: bytes(`b${i}`) })));
    assert.equal(results.length, 3);
    assert.ok(results.every((r) => !r.isError));
    const ack = await q.ackAll({ channel: 'qu.ack', waitTimeoutSeconds: 1 });
    assert.equal(Number(ack.affectedMessages), 3);
    assert.equal((await q.peek({ channel: 'qu.ack', maxNumberOfMessages: 1, waitTimeoutSeconds: 1 })).messages.length, 0);
  });

  it('runs queue transactions: ack, reject with requeue and dead-letter', async () => {
    const q = t.client('QueuesClient', b, 'tx-client');
    const ch = 'qu.tx';
    await q.send({ channel: ch, body: bytes('t1'), policy: { maxReceiveCount: 2, maxReceiveQueue: 'qu.dlq' } });
    const seen = [];
    const errors = [];
    let reject = true;
    const sub = await t.sub(
      q.transactionStream({ channel: ch, visibilitySeconds: 10, waitTimeoutSeconds: 1 }, (err, tm) => {
        if (err) return errors.push(err.message);
        if (!tm) return;
        seen.push(tm.message);
        if (reject) tm.reject();
        else tm.ack();
      }),
    );
    // Delivered, rejected, redelivered (count 2), rejected again -> dead-letter queue.
    await until(async () => (await b.stats()).queues['qu.dlq']?.waiting === 1, 15000, 'dead-lettered message');
    sub.unsubscribe();
    assert.deepEqual(seen.map((m) => m.attributes.receiveCount), [1, 2]);
    assert.ok(seen[1].attributes.sequence > seen[0].attributes.sequence, 'requeued with a new sequence');
    const dl = await q.pull({ channel: 'qu.dlq', maxNumberOfMessages: 1, waitTimeoutSeconds: 1 });
    assert.equal(text(dl.messages[0].body), 't1');
    assert.equal(dl.messages[0].attributes.reRouted, true);
    assert.equal(dl.messages[0].attributes.reRoutedFromQueue, ch);
    assert.ok(errors.every((e) => e === 'Error 138: no new message in queue, wait time expired'), JSON.stringify(errors));

    // Ack path.
    reject = false;
    await q.send({ channel: 'qu.tx2', body: bytes('t2') });
    const acked = [];
    const sub2 = await t.sub(
      q.transactionStream({ channel: 'qu.tx2', visibilitySeconds: 10, waitTimeoutSeconds: 1 }, (err, tm) => {
        if (tm) {
          acked.push(tm.message);
          tm.ack();
        }
      }),
    );
    await until(async () => (await b.stats()).queues['qu.tx2']?.acked === 1, 10000, 'ack');
    sub2.unsubscribe();
    assert.equal(acked.length, 1);
    assert.equal(text(acked[0].body), 't2');
    const s = (await b.stats()).queues['qu.tx2'];
    assert.equal(s.waiting, 0);
    assert.equal(s.inflight, 0);
  });

  it('requeues when the visibility expires (raw stream)', async () => {
    const raw = rawClient(b.address);
    try {
      await rawCall(raw, 'SendQueueMessage', { ClientID: 'v', Channel: 'qu.vis', Body: Buffer.from('v1') });
      const call = raw.StreamQueueMessage();
      const got = [];
      const ended = new Promise((resolve) => {
        call.on('data', (r) => got.push(r));
        call.on('error', resolve);
        call.on('end', () => resolve(null));
      });
      call.write({ ClientID: 'v', StreamRequestTypeData: 1, Channel: 'qu.vis', VisibilitySeconds: 3, WaitTimeSeconds: 5, RequestID: 'r1' });
      await until(() => got.length === 1, 5000, 'message');
      call.write({ ClientID: 'v', StreamRequestTypeData: 2, RefSequence: 999 });
      call.write({ ClientID: 'v', StreamRequestTypeData: 1, Channel: 'qu.vis' });
      assert.equal(await ended, null, 'server ends the stream with OK');
      const kinds = got.map((r) => [r.StreamRequestTypeData, r.IsError, r.Error]);
      assert.deepEqual(kinds, [
        [1, false, ''],
        [2, true, 'Error 125: ack sequence cannot be 0 or negative'],
        [1, true, 'Error 128: subscription to queue is already active'],
        [1, true, 'Error 129: current visibility timer expired'],
      ]);
      assert.equal(got[0].RequestID, 'r1');
      assert.equal(got[0].Message.Body.toString(), 'v1');
      const again = await rawCall(raw, 'ReceiveQueueMessages', { ClientID: 'v', Channel: 'qu.vis', MaxNumberOfMessages: 1, WaitTimeSeconds: 1 });
      assert.equal(again.Messages.length, 1);
      assert.equal(again.Messages[0].Attributes.ReceiveCount, 2);
    } finally {
      raw.close();
    }
  });

  it('ends streams with UNAVAILABLE when the listener stops, and comes back on the same port', async () => {
    const raw = rawClient(b.address);
    try {
      await rawCall(raw, 'SendQueueMessage', { ClientID: 'r', Channel: 'qu.persist', Body: Buffer.from('p') });
      const sub = rawSubscribe(raw, 'SubscribeToRequests', { SubscribeTypeData: 4, ClientID: 'r', Channel: 'q.restart' });
      await b.waitForSubscribers('queries', 'q.restart');
      await b.stopListener();
      const err = await sub.done;
      assert.equal(err && err.code, grpc.status.UNAVAILABLE);
      assert.equal((await b.stats()).listening, false);
      assert.equal((await b.startListener()).port, b.port);
      const c = t.client('QueuesClient', b, 'restart-client');
      const got = await c.pull({ channel: 'qu.persist', maxNumberOfMessages: 1, waitTimeoutSeconds: 1 });
      assert.equal(got.messages.length, 1, 'queue content survived');
      assert.equal((await b.stats()).subscribers.queries['q.restart'], undefined);
    } finally {
      raw.close();
    }
  });
});

describe('stand-in broker with an auth token', () => {
  let b;
  const t = tracker();
  before(async () => {
    b = await startBroker({ port: 0, authToken: 'sekret-token' });
  });
  after(async () => {
    t.closeAll();
    if (b) await b.stop();
  });

  it('accepts calls carrying the token', async () => {
    const responder = t.client('QueriesClient', b, 'a-resp', { authToken: 'sekret-token' });
    const requester = t.client('QueriesClient', b, 'a-req', { authToken: 'sekret-token' });
    await t.sub(
      responder.subscribe({ channel: 'auth.q' }, (err, msg) => {
        if (msg) responder.response({ id: msg.id, replyChannel: msg.replyChannel, executed: true, error: '', body: bytes('ok'), metadata: '' });
      }),
    );
    await b.waitForSubscribers('queries', 'auth.q');
    const res = await requester.send({ channel: 'auth.q', body: bytes('x'), timeout: 5000 });
    assert.equal(text(res.body), 'ok');
  });

  it('rejects calls without or with a wrong token', async () => {
    const none = t.client('QueriesClient', b, 'a-none');
    const wrong = t.client('EventsClient', b, 'a-wrong', { authToken: 'nope' });
    const isUnauth = (e) => {
      assert.equal(e.code, grpc.status.UNAUTHENTICATED);
      assert.match(e.details, /authentication verification failed/);
      return true;
    };
    await assert.rejects(none.send({ channel: 'auth.q', body: bytes('x'), timeout: 1000 }), isUnauth);
    await assert.rejects(wrong.send({ channel: 'auth.e', body: bytes('x') }), isUnauth);
    // kubemq-js 1.2.3 sends Ping without metadata, so it is refused too.
    await assert.rejects(t.client('QueriesClient', b, 'a-ping', { authToken: 'sekret-token' }).ping(), isUnauth);
    const errs = [];
    await t.sub(none.subscribe({ channel: 'auth.sub' }, (err) => err && errs.push(err)));
    await until(() => errs.length === 1, 5000, 'subscription refusal');
    isUnauth(errs[0]);
    const s = await b.stats();
    assert.ok(s.authFailures >= 4);
    assert.deepEqual(s.subscribers.queries['auth.sub'], undefined);
  });
});

describe('stand-in broker over TLS', () => {
  let b;
  let cert;
  before(async () => {
    cert = rig.makeTestCert();
    b = await startBroker({ port: 0, tlsCert: cert.certPath, tlsKey: cert.keyPath });
  });
  after(async () => {
    if (b) await b.stop();
    if (cert) fs.rmSync(cert.dir, { recursive: true, force: true });
  });

  it('serves TLS clients that trust its certificate and refuses plaintext', async () => {
    const Ctor = grpc.loadPackageDefinition(protoLoader.loadSync(PROTO, LOADER_OPTS)).kubemq.kubemq;
    const tls = new Ctor(b.address, grpc.credentials.createSsl(Buffer.from(cert.cert)));
    const plain = new Ctor(b.address, grpc.credentials.createInsecure());
    try {
      const res = await rawCall(tls, 'Ping', {});
      assert.equal(res.Version, 'stand-in');
      await assert.rejects(
        new Promise((resolve, reject) =>
          plain.Ping({}, new grpc.Metadata(), { deadline: Date.now() + 3000 }, (e, r) => (e ? reject(e) : resolve(r))),
        ),
        (e) => [grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED].includes(e.code),
      );
    } finally {
      tls.close();
      plain.close();
    }
  });
});

describe('stand-in broker process', () => {
  it('listens on loopback only and restarts on the same port', async () => {
    let b1 = await startBroker({ port: 0 });
    let b2 = null;
    const q = new kubemq.QueuesClient({ address: b1.address, clientId: 'restart' });
    try {
      const addrs = rig.listeningAddrs(b1.pid);
      assert.ok(addrs.includes(`127.0.0.1:${b1.port}`) && addrs.includes(`127.0.0.1:${b1.control}`), addrs.join(' '));
      assert.ok(addrs.every((a) => a.startsWith('127.0.0.1:')), addrs.join(' '));
      await q.send({ channel: 'restart.q', body: bytes('gone') });
      assert.equal((await b1.stop()).code, 0);
      b1 = null;
      b2 = await startBroker({ port: Number(q.clientOptions.address.split(':')[1]) });
      assert.equal(b2.address, q.clientOptions.address);
      const info = await q.ping(); // the same client reconnects
      assert.equal(info.version, 'stand-in');
      const got = await q.pull({ channel: 'restart.q', maxNumberOfMessages: 1, waitTimeoutSeconds: 1 });
      assert.equal(got.messages.length, 0, 'a new process starts empty');
    } finally {
      q.close();
      if (b1) await b1.stop();
      if (b2) await b2.stop();
    }
  });

  it('refuses bad arguments with a clear error', async () => {
    await assert.rejects(startBroker({ port: 70000 }), /invalid --port 70000/);
    await assert.rejects(startBroker({ tlsCert: '/nonexistent/cert.pem', tlsKey: '/nonexistent/key.pem' }), /ENOENT/);
  });
});
