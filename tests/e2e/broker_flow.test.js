// broker_flow.test.js - the stand-in broker's slow-consumer drop and events_store durables,
// checked with the real client kubemq-js 1.2.3 and, for subscribers that stop reading, a
// bare HTTP/2 client (tests/rig/h2-raw.js) that never opens its stream's window again
// while it keeps reading the socket, as a probe of the real server did.
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { createRequire } = require('node:module');

const RIG = path.join(__dirname, '..', 'rig');
const rigRequire = createRequire(path.join(RIG, 'package.json'));
const kubemq = rigRequire('kubemq-js');
const rig = require(path.join(RIG, 'lib.js'));

const { startBroker, connectRaw } = rig;
const { Utils, EventStoreType } = kubemq;
const bytes = (s) => Utils.stringToBytes(s);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const BODY = 'x'.repeat(2000); // 32 whole EventReceive messages fit a 65,535-byte stream window

async function until(pred, timeoutMs = 10000, what = 'condition') {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const range = (from, n) => Array.from({ length: n }, (_, i) => from + i);

function subOf(stats, clientId, kind) {
  return stats.subscriptions.find((s) => s.clientId === clientId && (!kind || s.kind === kind));
}

// Until the subscription of clientId holds a full buffer, grpc-js refuses more and
// nothing more has been written for 300 ms (a replay can fill the buffer before the
// first bytes leave).
async function stalled(b, clientId, total, timeoutMs = 15000) {
  let last = null;
  let since = 0;
  const s = await b.waitFor(
    (st) => {
      const sub = subOf(st, clientId);
      const full = sub && !sub.writable && sub.buffered === st.settings.subBuffer && sub.pending + sub.written + sub.buffered + sub.dropped === total;
      if (!full || !last || last.written !== sub.written) {
        last = full ? sub : null;
        since = Date.now();
        return false;
      }
      return Date.now() - since >= 300;
    },
    { timeoutMs, what: `${clientId} stalled with a full buffer` },
  );
  return subOf(s, clientId);
}

// The stream took exactly its 65,535-byte window and no whole message more.
function stoppedAtWindow(stream) {
  assert.equal(stream.dataBytes, 65535, 'the stream stopped at its 64 KiB window');
  assert.ok(stream.messages.length >= 30 && stream.messages.length <= 32, `${stream.messages.length} whole messages`);
}

function tracker() {
  const subs = [];
  const clients = [];
  return {
    client(Kind, b, clientId) {
      const c = new kubemq[Kind]({ address: b.address, clientId });
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

describe('stand-in broker: slow consumers (defaults: buffer 100, 2 s wait)', () => {
  let b;
  const t = tracker();
  const raws = [];
  before(async () => {
    b = await startBroker({ port: 0 });
  });
  after(async () => {
    t.closeAll();
    for (const r of raws) r.destroy();
    if (b) await b.stop();
  });

  it('holds a stalled events subscriber, then drops one message per 2 s; the rest arrive in order after it reads again', async () => {
    const ch = 'ev.slow';
    const raw = await connectRaw({ port: b.port });
    raws.push(raw);
    const sid = raw.request('SubscribeToEvents', { SubscribeTypeData: 1, ClientID: 'stalled', Channel: ch }, { autoWindow: false });
    const healthy = [];
    const hc = t.client('EventsClient', b, 'healthy');
    await t.sub(hc.subscribe({ channel: ch }, (err, msg) => msg && healthy.push(Number(msg.metadata))));
    await b.waitForSubscribers('events', ch, { count: 2 });
    assert.deepEqual((await b.stats()).settings, { subBuffer: 100, slowConsumerWaitMs: 2000, minPingIntervalMs: 0, maxPingStrikes: 0, tls: 'off' });

    const pub = t.client('EventsClient', b, 'slow-pub');
    for (let i = 0; i < 300; i++) await pub.send({ channel: ch, body: bytes(BODY), metadata: String(i) });
    await until(() => healthy.length === 300, 15000, 'the reading subscriber gets all 300');
    assert.deepEqual(healthy, range(0, 300), 'a stalled subscriber does not hold up another one');

    const sub = await stalled(b, 'stalled', 300);
    const held = sub.written + sub.buffered;
    const got = raw.stream(sid);
    stoppedAtWindow(got);
    // 31 or 32 in the window + what grpc-js takes before write() returns false + 100 (the
    // real server, grpc-go: about 166).
    assert.ok(sub.written > got.messages.length && sub.written <= 80, `written to grpc-js: ${sub.written}`);
    assert.ok(held >= 130 && held <= 200, `held ${held}`);

    // The connection is not stalled: a Ping on it answers.
    const pid = raw.request('Ping', {});
    await until(() => raw.stream(pid).ended, 5000, 'Ping answer on the stalled connection');
    assert.equal(raw.stream(pid).messages[0].Version, 'stand-in');

    // One drop per 2 s, never faster.
    const seen = [];
    await until(async () => {
      const s = subOf(await b.stats(), 'stalled');
      if (!seen.length || s.dropped > seen[seen.length - 1].n) seen.push({ n: s.dropped, at: Date.now() });
      return s.dropped >= 2;
    }, 20000, 'two drops');
    const first = seen.find((x) => x.n >= 1);
    const second = seen.find((x) => x.n >= 2);
    assert.ok(second.at - first.at >= 1800, `drops ${second.at - first.at} ms apart`);
    assert.equal(first.n, 1, 'one drop at a time');
    assert.match(b.stderr(), /events message dropped due to slow consumer: channel ev\.slow, client_id stalled/);

    raw.setAutoWindow(sid, true);
    const done = await b.waitFor((st) => {
      const s = subOf(st, 'stalled');
      return s.pending === 0 && s.buffered === 0 && s.written + s.dropped === 300 ? s : null;
    }, { timeoutMs: 15000, what: 'the stalled subscriber catching up' }).then((st) => subOf(st, 'stalled'));
    await until(() => got.messages.length === 300 - done.dropped, 10000, 'every message not dropped');
    const ids = got.messages.map((m) => Number(m.Metadata));
    const missing = range(0, 300).filter((i) => !ids.includes(i));
    assert.deepEqual(missing, range(held, done.dropped), 'exactly the messages after the held ones were dropped');
    assert.deepEqual(ids, [...ids].sort((x, y) => x - y), 'in order');
    const st = await b.stats();
    assert.equal(st.dropped.events[ch], done.dropped);
    assert.equal(st.dropped.events[ch] >= 2, true);
  });
});

describe('stand-in broker: slow consumers with --sub-buffer 10 --slow-consumer-wait-ms 400', () => {
  let b;
  const t = tracker();
  const raws = [];
  before(async () => {
    b = await startBroker({ port: 0, subBuffer: 10, slowConsumerWaitMs: 400 });
  });
  after(async () => {
    t.closeAll();
    for (const r of raws) r.destroy();
    if (b) await b.stop();
  });

  // A stalled responder (kind 'queries' or 'commands'); `extra` requests beyond what it
  // holds are dropped, one per wait, and time out at their senders.
  async function stalledResponder(kind, extra) {
    const ch = `${kind}.slow`;
    const who = `${kind}-responder`;
    const raw = await connectRaw({ port: b.port });
    raws.push(raw);
    const sid = raw.request('SubscribeToRequests', { SubscribeTypeData: kind === 'queries' ? 4 : 3, ClientID: who, Channel: ch }, { autoWindow: false });
    await b.waitForSubscribers(kind, ch);
    const requester = t.client(kind === 'queries' ? 'QueriesClient' : 'CommandsClient', b, `${kind}-sender`);
    const sends = [];
    const routed0 = (await b.stats()).delivered[kind];
    // Send until one waits for room, then `extra` - 1 more.
    for (let i = 0, over = 0; over < extra; i++) {
      const body = `${String(i).padStart(4, '0')}${BODY}`;
      sends.push(requester.send({ channel: ch, body: bytes(body), timeout: 6000 }).then(
        (r) => ({ i, ok: true, r }),
        (e) => ({ i, ok: false, e }),
      ));
      const s = await b.waitFor((st) => st.delivered[kind] === routed0 + i + 1, { what: `request ${i} routed` });
      if (over > 0 || subOf(s, who).pending > 0) over++;
    }
    const n = sends.length;
    const sub = await stalled(b, who, n);
    const held = sub.written + sub.buffered;
    assert.equal(n - held, extra, `${n} sent, ${held} held`);
    await b.waitFor((st) => subOf(st, who).dropped === extra, { timeoutMs: 10000, what: `${extra} drops` });

    // Reads again and answers everything it gets.
    const stream = raw.stream(sid);
    let answered = 0;
    const answer = () => {
      while (answered < stream.messages.length) {
        const q = stream.messages[answered++];
        raw.request('SendResponse', { ClientID: who, RequestID: q.RequestID, ReplyChannel: q.ReplyChannel, Executed: true, Body: q.Body });
      }
    };
    raw.setAutoWindow(sid, true);
    const timer = setInterval(answer, 10);
    const outcomes = await Promise.all(sends).finally(() => clearInterval(timer));
    const failed = outcomes.filter((o) => !o.ok);
    assert.deepEqual(failed.map((o) => o.i), range(held, extra), 'the ones after the held ones');
    for (const o of failed) {
      assert.equal(o.e.code, 13);
      assert.equal(o.e.details, 'Error 301: timeout for request message');
    }
    for (const o of outcomes.filter((x) => x.ok)) assert.equal(o.r.executed, true);
    assert.equal(stream.messages.length, held);
    assert.deepEqual(stream.messages.map((m) => Buffer.from(m.Body).toString().slice(0, 4)), range(0, held).map((i) => String(i).padStart(4, '0')));
    assert.equal((await b.stats()).dropped[kind][ch], extra);
  }

  it('drops queries a stalled responder cannot take; their senders get Error 301 at their timeout', async () => {
    await stalledResponder('queries', 4);
    assert.match(b.stderr(), /query request dropped due to slow consumer: channel queries\.slow/);
  });

  it('drops commands the same way', async () => {
    await stalledResponder('commands', 2);
    assert.match(b.stderr(), /command request dropped due to slow consumer: channel commands\.slow/);
  });

  it('drops events_store messages the same way; a drop counts as handed out for the durable', async () => {
    const ch = 'es.drop';
    const pub = t.client('EventsStoreClient', b, 'es-drop-pub');
    for (let i = 1; i <= 50; i++) await pub.send({ channel: ch, body: bytes(BODY), metadata: String(i) });
    const raw = await connectRaw({ port: b.port });
    raws.push(raw);
    const sid = raw.request('SubscribeToEvents',
      { SubscribeTypeData: 2, ClientID: 'es-dropper', Channel: ch, EventsStoreTypeData: 2 }, { autoWindow: false });
    const sub = await stalled(b, 'es-dropper', 50);
    const held = sub.written + sub.buffered;
    assert.ok(held < 50, `held ${held}`);
    const st = await b.waitFor((s) => subOf(s, 'es-dropper').pending === 0, { timeoutMs: 15000, what: 'the rest dropped' });
    assert.equal(st.dropped.events_store[ch], 50 - held);
    const d = st.durables.find((x) => x.clientId === 'es-dropper');
    assert.deepEqual(d, { clientId: 'es-dropper', channel: ch, group: '', lastSequence: 50, live: 1 });
    raw.setAutoWindow(sid, true);
    await until(() => raw.stream(sid).messages.length === held, 10000, 'the held ones');
    assert.deepEqual(raw.stream(sid).messages.map((m) => Number(m.Sequence)), range(1, held));
    assert.match(b.stderr(), /events store message dropped due to slow consumer: channel es\.drop, client_id es-dropper, id \S+, sequence 50/);
  });
});

describe('stand-in broker: events_store durables', () => {
  let b;
  const t = tracker();
  const raws = [];
  before(async () => {
    b = await startBroker({ port: 0, slowConsumerWaitMs: 600000 }); // no drops here
  });
  after(async () => {
    t.closeAll();
    for (const r of raws) r.destroy();
    if (b) await b.stop();
  });

  const open = async (clientId, channel, requestType, requestTypeValue = 0, group = '') => {
    const list = [];
    const errors = [];
    const c = t.client('EventsStoreClient', b, clientId);
    const s = await t.sub(c.subscribe({ channel, group, requestType, requestTypeValue }, (err, msg) => {
      if (err) errors.push(err);
      else if (msg) list.push(msg.sequence);
    }));
    return { list, errors, unsubscribe: () => s.unsubscribe() };
  };
  const durable = async (clientId, channel) => (await b.stats()).durables.find((d) => d.clientId === clientId && d.channel === channel);

  it('resumes a known ClientID after the last message handed out and ignores its start position', async () => {
    const ch = 'es.dur';
    const pub = t.client('EventsStoreClient', b, 'dur-pub');
    for (const x of ['a', 'b', 'c']) await pub.send({ channel: ch, body: bytes(x), metadata: '' });
    const a1 = await open('dur-a', ch, EventStoreType.StartFromFirst);
    await until(() => a1.list.length === 3, 5000, 'replay 1..3');
    assert.deepEqual(a1.list, [1, 2, 3]);
    assert.deepEqual(await durable('dur-a', ch), { clientId: 'dur-a', channel: ch, group: '', lastSequence: 3, live: 1 });

    // A second live subscription with that ClientID is refused, on any channel.
    for (const other of [ch, 'es.elsewhere']) {
      const dup = await open('dur-a', other, EventStoreType.StartFromFirst);
      await until(() => dup.errors.length === 1, 5000, `refusal on ${other}`);
      assert.equal(dup.errors[0].code, 13);
      assert.equal(dup.errors[0].details, 'stan: clientID already registered');
      dup.unsubscribe();
    }

    a1.unsubscribe();
    await b.waitFor((s) => !s.subscribers.events_store[ch], { what: 'dur-a gone' });
    for (const x of ['d', 'e']) await pub.send({ channel: ch, body: bytes(x), metadata: '' });
    const a2 = await open('dur-a', ch, EventStoreType.StartAtSequence, 1);
    await until(() => a2.list.length === 2, 5000, 'resume after 3');
    await sleep(300);
    assert.deepEqual(a2.list, [4, 5], 'resumed after the last one handed out; StartAtSequence 1 ignored');
    assert.equal((await durable('dur-a', ch)).lastSequence, 5);

    const fresh = await open('dur-b', ch, EventStoreType.StartAtSequence, 2);
    await until(() => fresh.list.length === 4, 5000, 'a new ClientID honours its start');
    assert.deepEqual(fresh.list, [2, 3, 4, 5]);

    // Forgotten durables: the start position counts again.
    a2.unsubscribe();
    await b.waitFor((s) => (s.subscribers.events_store[ch] || {})[''] === 1, { what: 'only dur-b left' });
    await b.resetDurables();
    assert.equal(await durable('dur-a', ch), undefined);
    const a3 = await open('dur-a', ch, EventStoreType.StartAtSequence, 3);
    await until(() => a3.list.length === 3, 5000, 'replay from 3');
    assert.deepEqual(a3.list, [3, 4, 5]);
  });

  it('counts messages in flight as handed out: a subscriber that stopped reading loses them on its ClientID', async () => {
    const ch = 'es.flight';
    const pub = t.client('EventsStoreClient', b, 'flight-pub');
    for (let i = 1; i <= 200; i++) await pub.send({ channel: ch, body: bytes(BODY), metadata: String(i) });
    const raw = await connectRaw({ port: b.port });
    raws.push(raw);
    const sid = raw.request('SubscribeToEvents',
      { SubscribeTypeData: 2, ClientID: 'flight-1', Channel: ch, EventsStoreTypeData: 2 }, { autoWindow: false });
    const sub = await stalled(b, 'flight-1', 200);
    const held = sub.written + sub.buffered;
    stoppedAtWindow(raw.stream(sid));
    assert.equal((await durable('flight-1', ch)).lastSequence, held, 'written to grpc-js or buffered = handed out');

    raw.cancel(sid);
    await b.waitFor((s) => !s.subscribers.events_store[ch], { what: 'flight-1 cancelled' });
    const again = raw.request('SubscribeToEvents',
      { SubscribeTypeData: 2, ClientID: 'flight-1', Channel: ch, EventsStoreTypeData: 4, EventsStoreTypeValue: 33 });
    await until(() => raw.stream(again).messages.length === 200 - held, 10000, 'the rest');
    assert.equal(Number(raw.stream(again).messages[0].Sequence), held + 1, 'StartAtSequence 33 ignored: 33..held are lost for flight-1');

    const other = raw.request('SubscribeToEvents',
      { SubscribeTypeData: 2, ClientID: 'flight-2', Channel: ch, EventsStoreTypeData: 4, EventsStoreTypeValue: 33 });
    await until(() => raw.stream(other).messages.length === 168, 10000, 'a new ClientID from 33');
    assert.deepEqual(raw.stream(other).messages.map((m) => Number(m.Sequence)), range(33, 168));
  });

  it('keeps a group durable per channel and group, whatever the members ClientIDs', async () => {
    const ch = 'es.grp';
    const pub = t.client('EventsStoreClient', b, 'grp-pub');
    for (let i = 0; i < 4; i++) await pub.send({ channel: ch, body: bytes(`g${i}`), metadata: '' });
    const m1 = await open('grp-m1', ch, EventStoreType.StartFromFirst, 0, 'workers');
    await until(() => m1.list.length === 4, 5000, 'group replay');
    m1.unsubscribe();
    await b.waitFor((s) => !s.subscribers.events_store[ch], { what: 'group empty' });
    for (let i = 4; i < 6; i++) await pub.send({ channel: ch, body: bytes(`g${i}`), metadata: '' });
    const m2 = await open('grp-m2', ch, EventStoreType.StartFromFirst, 0, 'workers');
    await until(() => m2.list.length === 2, 5000, 'group resume');
    await sleep(300);
    assert.deepEqual(m2.list, [5, 6], 'a new member with a new ClientID resumes the group');
    const d = (await b.stats()).durables.find((x) => x.channel === ch);
    assert.deepEqual(d, { clientId: null, channel: ch, group: 'workers', lastSequence: 6, live: 1 });
  });
});
