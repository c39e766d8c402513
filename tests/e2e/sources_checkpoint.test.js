'use strict';
// events-store checkpoints: a kubemq.events-store binding resumes after a restart where
// the last run stopped. The stand-in broker keeps the server's durable position per client
// id (a known id ignores its start sequence; a second live subscription on it is refused),
// so a reused client id fails these tests. Messages carry their channel sequence in their
// data (`<tag>-<sequence>`: each channel is fresh and published to one message at a time),
// so every record in the stream says which message it was.
const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { createRequire } = require('node:module');
const { cleanups, startPeers, binding, startDaemon, b64, req, rig, linesOf } = require('./daemon_lib');

const rigRequire = createRequire(path.join(__dirname, '..', 'rig', 'package.json'));
const { EventsStoreClient, EventStoreType } = rigRequire('kubemq-js');

const bytes = (o) => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o));
const until = (fn, what, timeoutMs = 60000) => rig.waitFor(fn, { timeoutMs, what });

describe('daemon: events-store checkpoints (resume after a restart)', () => {
  const c = cleanups();
  after(() => c.run());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kk-ckpt-'));
  c.add(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function setup(tag, opts = {}) {
    const peers = await startPeers(c, opts);
    const pub = new EventsStoreClient({ address: peers.broker.address, clientId: `${tag}-pub` });
    c.add(() => pub.close());
    const seqs = new Map(); // channel -> sequences published so far
    // n messages on channel, one at a time: message k is sequence k of the channel.
    const publish = async (channel, stream, n) => {
      for (let i = 0; i < n; i++) {
        const seq = (seqs.get(channel) || 0) + 1;
        seqs.set(channel, seq);
        const r = await pub.send({ channel, metadata: '', body: bytes(req({ method: 'put_record', stream_name: stream, partition_key: `k${seq % 5}` }, b64(`${stream}-${seq}`))) });
        assert.equal(r.sent, true);
      }
    };
    const send = (channel, body) => pub.send({ channel, metadata: '', body: bytes(body) });
    const createStream = async (name) => {
      const r = await rig.kinesisCall(peers.kin.url, 'CreateStream', { StreamName: name, ShardCount: 1 }, { accessKey: 'AKIDCKPT', secretKey: 'ckpt' });
      assert.equal(r.status, 200, r.text);
    };
    // Every record of a stream: sequence -> how often it is there.
    const counts = async (stream) => {
      const out = new Map();
      for (const r of await rig.readStream(peers.kin.url, stream)) {
        const seq = Number(r.data.slice(stream.length + 1));
        out.set(seq, (out.get(seq) || 0) + 1);
      }
      return out;
    };
    return { peers, publish, send, createStream, counts };
  }

  function esBinding(s, name, channel, source = {}) {
    return binding(name, { kind: 'kubemq.events-store', address: s.peers.broker.address, channel, source, target: s.peers.targetProps });
  }

  async function daemon(s, bindings, opts = {}) {
    const apiPort = await rig.freePort();
    return { ...(await startDaemon(c, s.peers.broker, { apiPort, watchConfig: false, bindings }, opts)), apiPort };
  }

  async function metric(api, name, b) {
    const text = (await rig.httpRequest(`${api}/metrics`)).text;
    const m = new RegExp(`^${name}\\{binding="${b}"[^}]*\\} (\\d+)`, 'm').exec(text);
    return m ? Number(m[1]) : -1;
  }

  const readFile = (f) => JSON.parse(fs.readFileSync(f, 'utf8'));
  const seqOf = (f) => (fs.existsSync(f) ? readFile(f).sequence : -1); // -1: none written yet

  // The checkpoints on a channel, oldest first: [{binding, channel, sequence, time}].
  async function checkpointsOn(address, channel, tag) {
    const sub = new EventsStoreClient({ address, clientId: `${tag}-${Date.now()}` });
    const got = [];
    const h = await sub.subscribe({ channel, requestType: EventStoreType.StartFromFirst }, (err, msg) => {
      if (!msg) return;
      const body = JSON.parse(Buffer.from(msg.body).toString());
      if (body.sequence !== undefined) got.push({ seq: Number(msg.sequence), ...body }); // not a start's marker
    });
    let n = -1;
    await until(async () => {
      // Settled: nothing new for a moment.
      const was = n;
      n = got.length;
      await rig.sleep(300);
      return n === got.length && was === n;
    }, `the messages of ${channel}`, 20000);
    h.unsubscribe();
    sub.close();
    return got;
  }

  // Each of 1..n exactly once.
  function exactlyOnce(counts, n, what) {
    const missing = [];
    const twice = [];
    for (let i = 1; i <= n; i++) {
      const k = counts.get(i) || 0;
      if (k === 0) missing.push(i);
      if (k > 1) twice.push(i);
    }
    assert.deepEqual(missing, [], `${what}: none missing`);
    assert.deepEqual(twice, [], `${what}: none twice`);
    assert.equal([...counts.keys()].filter((k) => k < 1 || k > n).length, 0, `${what}: nothing else`);
  }

  const total = (counts) => [...counts.values()].reduce((a, b) => a + b, 0);

  it('checkpoint: file - SIGTERM, messages stored while down, start again: each exactly once', async () => {
    const s = await setup('ckf');
    // A run that sees no message at all still leaves a checkpoint: what is stored after it is sent.
    const idle = path.join(dir, 'idle.json');
    const di = await daemon(s, [esBinding(s, 'idle', 'idle', { checkpoint: 'file', checkpoint_file: idle })]);
    assert.deepEqual(await di.d.stop(), { code: 0, signal: null });
    assert.equal(seqOf(idle), 0, 'nothing answered yet: 0');
    await s.createStream('idle');
    await s.publish('idle', 'idle', 2);
    const di2 = await daemon(s, [esBinding(s, 'idle', 'idle', { checkpoint: 'file', checkpoint_file: idle })]);
    assert.match(di2.d.stderr(), /binding idle: checkpoint: resuming channel 'idle' from the start/);
    await until(async () => total(await s.counts('idle')) >= 2, '2 records');
    assert.deepEqual(await di2.d.stop(), { code: 0, signal: null });
    exactlyOnce(await s.counts('idle'), 2, 'stored after a run that saw none');
    assert.equal(seqOf(idle), 2);
    await s.createStream('ckf');
    const file = path.join(dir, 'ckf.json');
    // The first run writes only when it stops (an interval of an hour): the last write after the drain.
    const cfg = [esBinding(s, 'ckf', 'ckf', { checkpoint: 'file', checkpoint_file: file, checkpoint_interval_ms: '3600000' })];
    const d1 = await daemon(s, cfg);
    await d1.d.waitForStderr(/binding ckf: checkpoint: none yet on file ".*ckf\.json"; starting from start_position new_only \(no message on channel 'ckf' yet\)/, 10000);
    await s.publish('ckf', 'ckf', 10);
    await until(async () => total(await s.counts('ckf')) >= 10, '10 records');
    assert.deepEqual(await d1.d.stop(), { code: 0, signal: null });
    assert.deepEqual({ ...readFile(file), time: 0 }, { binding: 'ckf', channel: 'ckf', sequence: 10, time: 0 }, 'the last checkpoint, written after the drain');
    assert.match(readFile(file).time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    await s.publish('ckf', 'ckf', 10); // while the daemon is down
    cfg[0].source.properties.checkpoint_interval_ms = '200';
    const d2 = await daemon(s, cfg);
    assert.match(d2.d.stderr(), /binding ckf: checkpoint: resuming channel 'ckf' after sequence 10 \(from file ".*ckf\.json"\)/);
    await s.publish('ckf', 'ckf', 10);
    await until(async () => total(await s.counts('ckf')) >= 30, '30 records');
    await until(async () => (await metric(`http://127.0.0.1:${d2.apiPort}`, 'kubemq_kinesis_checkpoint_sequence', 'ckf')) === 30, 'checkpoint gauge 30');
    assert.equal(await metric(`http://127.0.0.1:${d2.apiPort}`, 'kubemq_kinesis_received_sequence', 'ckf'), 30);
    assert.equal(readFile(file).sequence, 30, 'written every interval while it runs');
    await rig.sleep(500);
    exactlyOnce(await s.counts('ckf'), 30, 'after a clean restart');
    assert.deepEqual(await d2.d.stop(), { code: 0, signal: null });
    assert.equal(readFile(file).sequence, 30);
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith('ckf')), ['ckf.json'], 'no temporary file left');
    // Never the server's position: every stream of the binding had a client id of its own.
    const durables = (await s.peers.broker.stats()).durables.filter((x) => x.channel === 'ckf');
    assert.equal(new Set(durables.map((x) => x.clientId)).size, durables.length);
  });

  it('checkpoint: kubemq - two bindings share a checkpoint channel; SIGTERM, stored while down, start again', async () => {
    const s = await setup('ckk');
    await s.createStream('cka');
    await s.createStream('ckb');
    // The first run writes only when it stops (an interval of an hour); the broker's answer is waited for.
    const src = { checkpoint: 'kubemq', checkpoint_channel: 'ck.shared', checkpoint_interval_ms: '3600000' };
    const cfg = [esBinding(s, 'cka', 'cka', src), esBinding(s, 'ckb', 'ckb', { ...src })];
    const d1 = await daemon(s, cfg);
    await s.publish('cka', 'cka', 5);
    await s.publish('ckb', 'ckb', 7);
    await until(async () => total(await s.counts('cka')) >= 5 && total(await s.counts('ckb')) >= 7, '12 records');
    assert.deepEqual(await d1.d.stop(), { code: 0, signal: null });

    const seen = await checkpointsOn(s.peers.broker.address, 'ck.shared', 'ckk-read');
    const last = (b) => seen.filter((x) => x.binding === b).pop();
    assert.equal(last('cka').sequence, 5, JSON.stringify(seen));
    assert.equal(last('cka').channel, 'cka');
    assert.equal(last('ckb').sequence, 7, JSON.stringify(seen));
    assert.equal(last('ckb').channel, 'ckb');
    assert.equal(seen.length, 2, `one write each, at the stop: ${JSON.stringify(seen)}`);

    await s.publish('cka', 'cka', 5);
    await s.publish('ckb', 'ckb', 3);
    for (const b of cfg) b.source.properties.checkpoint_interval_ms = '200';
    const d2 = await daemon(s, cfg);
    assert.match(d2.d.stderr(), /binding cka: checkpoint: resuming channel 'cka' after sequence 5 \(from channel 'ck\.shared'\)/);
    assert.match(d2.d.stderr(), /binding ckb: checkpoint: resuming channel 'ckb' after sequence 7 \(from channel 'ck\.shared'\)/);
    await s.publish('cka', 'cka', 5);
    await s.publish('ckb', 'ckb', 5);
    await until(async () => total(await s.counts('cka')) >= 15 && total(await s.counts('ckb')) >= 15, '30 records');
    await rig.sleep(500);
    exactlyOnce(await s.counts('cka'), 15, 'cka');
    exactlyOnce(await s.counts('ckb'), 15, 'ckb');
    assert.deepEqual(await d2.d.stop(), { code: 0, signal: null });
    const all = await checkpointsOn(s.peers.broker.address, 'ck.shared', 'ckk-read2');
    for (const b of ['cka', 'ckb']) {
      const mine = all.filter((x) => x.binding === b).map((x) => x.sequence);
      assert.deepEqual(mine, [...mine].sort((x, y) => x - y), `${b}: checkpoints only move forward`);
      assert.equal(mine[mine.length - 1], 15, `${b}: the last is 15`);
    }
  });

  it('checkpoint: kubemq - found behind 450 other messages on its channel (read backwards in windows)', async () => {
    const s = await setup('cks');
    await s.createStream('cks');
    await s.publish('cks', 'cks', 12);
    await s.send('cks.checkpoint', { binding: 'cks', channel: 'cks', sequence: 7, time: '2026-01-01T00:00:00Z' });
    await s.send('cks.checkpoint', { binding: 'cks', channel: 'other-channel', sequence: 11 }); // not this channel's
    for (let i = 0; i < 440; i++) await s.send('cks.checkpoint', { binding: `other-${i % 3}`, channel: 'cks', sequence: 1000 + i });
    for (let i = 0; i < 9; i++) await s.send('cks.checkpoint', 'not a checkpoint');
    // start_position first would send 1..7 again: the checkpoint wins.
    const d = await daemon(s, [esBinding(s, 'cks', 'cks', { checkpoint: 'kubemq', start_position: 'first' })]);
    assert.match(d.d.stderr(), /binding cks: checkpoint: resuming channel 'cks' after sequence 7 \(from channel 'cks\.checkpoint'\)/);
    await s.publish('cks', 'cks', 3);
    await until(async () => total(await s.counts('cks')) >= 8, '8 records');
    await rig.sleep(500);
    const got = await s.counts('cks');
    assert.deepEqual([...got.keys()].sort((a, b) => a - b), [8, 9, 10, 11, 12, 13, 14, 15]);
    assert.equal(total(got), 8);
    assert.deepEqual(await d.d.stop(), { code: 0, signal: null });
  });

  it('SIGKILL in a burst of 500: none lost; only the messages after the last checkpoint are sent again', async (t) => {
    const s = await setup('ckb5');
    await s.createStream('ck500');
    const cfg = [esBinding(s, 'ck500', 'ck500', { checkpoint: 'kubemq', concurrency: '2' })];
    const d1 = await daemon(s, cfg);
    await s.peers.gate.fault({ kind: 'delay', op: 'PutRecord', ms: 20, count: 500 });
    const publishing = s.publish('ck500', 'ck500', 500);
    await until(async () => total(await s.counts('ck500')) >= 200, '200 records', 120000);
    const killedAt = Date.now();
    await d1.d.stop('SIGKILL');
    await publishing;
    await until(async () => (await s.peers.gate.stats()).inFlight === 0, 'the gate idle');
    const before = await s.counts('ck500');
    const callsBefore = (await s.peers.gate.stats()).byOp.PutRecord;
    const log = await s.peers.gate.log();
    const mine = (await checkpointsOn(s.peers.broker.address, 'ck500.checkpoint', 'ckb5-read')).filter((x) => x.binding === 'ck500');
    assert.ok(mine.length >= 2, `checkpoints written during the burst: ${JSON.stringify(mine)}`);
    const C = mine[mine.length - 1].sequence;
    assert.ok(C > 0 && C < 500, `killed mid-burst: the last checkpoint is ${C}`);
    // The checkpoint never passed a message that was not written.
    for (let i = 1; i <= C; i++) assert.ok(before.get(i) >= 1, `message ${i} <= checkpoint ${C} is in the stream`);

    await s.peers.gate.reset();
    const d2 = await daemon(s, cfg);
    assert.match(d2.d.stderr(), new RegExp(`resuming channel 'ck500' after sequence ${C} `));
    await until(async () => (await s.counts('ck500')).size === 500, 'all 500 in the stream', 120000);
    await until(async () => (await s.peers.gate.stats()).inFlight === 0, 'the gate idle');
    await rig.sleep(500);
    const got = await s.counts('ck500');
    const missing = [];
    const repeated = [];
    for (let i = 1; i <= 500; i++) {
      if (!got.get(i)) missing.push(i);
      if (got.get(i) > 1) repeated.push(i);
    }
    assert.deepEqual(missing, [], 'none lost');
    assert.ok(repeated.every((i) => i > C), `only messages after the checkpoint ${C} repeat: ${repeated}`);
    assert.equal((await s.peers.gate.stats()).byOp.PutRecord, 500 - C, 'the restart sent exactly the messages after the checkpoint');
    // The repeats are the messages written after the last checkpoint; with a 1 s interval
    // those were sent at most about a second before the kill.
    const afterCkpt = [...before.keys()].filter((i) => i > C).length;
    assert.equal(repeated.length, afterCkpt, 'each message written after the checkpoint once more, no other');
    const recent = log.filter((e) => e.op === 'PutRecord' && Date.parse(e.time) >= killedAt - 2500).length;
    t.diagnostic(`killed after ${callsBefore} calls; checkpoint ${C}; ${repeated.length} repeats; ${recent} calls in the last 2.5 s`);
    assert.ok(repeated.length <= recent, `${repeated.length} repeats <= ${recent} calls of the last 2.5 s (of ${callsBefore})`);
    assert.deepEqual(await d2.d.stop(), { code: 0, signal: null });
  });

  for (const kind of ['file', 'kubemq']) {
    it(`checkpoint: ${kind} - out of order: never past a request held at the gate; after SIGKILL it is sent again`, async () => {
      const s = await setup(`cko${kind}`);
      const name = `cko-${kind}`;
      await s.createStream(name);
      const file = path.join(dir, `${name}.json`);
      const src = kind === 'file'
        ? { checkpoint: 'file', checkpoint_file: file, checkpoint_interval_ms: '100', concurrency: '4' }
        : { checkpoint: 'kubemq', checkpoint_interval_ms: '100', concurrency: '4' };
      const cfg = [esBinding(s, name, name, src)];
      const d1 = await daemon(s, cfg);
      const api = `http://127.0.0.1:${d1.apiPort}`;
      // The fourth PutRecord is held; the others go through.
      await s.peers.gate.fault([{ kind: 'delay', op: 'PutRecord', ms: 1, count: 3 }, { kind: 'hold', op: 'PutRecord', count: 1 }]);
      await s.publish(name, name, 12);
      await until(async () => total(await s.counts(name)) >= 11 && (await s.peers.gate.stats()).held === 1, '11 records, 1 held');
      const first = await s.counts(name);
      const held = [...Array(12).keys()].map((i) => i + 1).find((i) => !first.get(i));
      assert.ok(held <= 5, `held: ${held}`);
      assert.ok([...first.keys()].some((i) => i > held), 'later messages finished while it was held');
      const current = async () => (kind === 'file'
        ? seqOf(file)
        : ((await checkpointsOn(s.peers.broker.address, `${name}.checkpoint`, `${name}-read`)).filter((x) => x.binding === name).pop() || { sequence: -1 }).sequence);
      await until(async () => (await current()) === held - 1, `checkpoint ${held - 1}`);
      await rig.sleep(600); // several intervals: it stays there
      assert.equal(await current(), held - 1, 'the checkpoint never passes the held request');
      assert.equal(await metric(api, 'kubemq_kinesis_checkpoint_sequence', name), held - 1);
      assert.equal(await metric(api, 'kubemq_kinesis_received_sequence', name), 12);

      await d1.d.stop('SIGKILL');
      await s.peers.gate.reset();
      const d2 = await daemon(s, cfg);
      assert.match(d2.d.stderr(), new RegExp(`checkpoint: resuming channel '${name}' after sequence ${held - 1} `));
      await until(async () => (await s.counts(name)).get(held) === 1, `the held message ${held} written`);
      await until(async () => (await s.peers.gate.stats()).byOp.PutRecord >= 12 - held + 1, 'the rest sent again');
      await rig.sleep(500);
      const got = await s.counts(name);
      assert.equal(got.get(held), 1, 'the held one exactly once (it never got through the gate)');
      for (let i = 1; i <= 12; i++) assert.equal(got.get(i), i < held ? 1 : i === held ? 1 : 2, `message ${i}`);
      assert.equal((await s.peers.gate.stats()).byOp.PutRecord, 12 - held + 1, 'sent again: from the held one on');
      assert.deepEqual(await d2.d.stop(), { code: 0, signal: null });
    });
  }

  it('drain timeout at SIGTERM: the checkpoint stays below the request cut short and those never run; the next start sends them', async () => {
    const s = await setup('ckd');
    await s.createStream('ckd');
    const file = path.join(dir, 'ckd.json');
    const cfg = [esBinding(s, 'ckd', 'ckd', { checkpoint: 'file', checkpoint_file: file, checkpoint_interval_ms: '100', concurrency: '1', drain_timeout_seconds: '1' })];
    const d1 = await daemon(s, cfg);
    await s.publish('ckd', 'ckd', 5);
    await until(() => seqOf(file) === 5, 'checkpoint 5');
    await s.peers.gate.fault({ kind: 'hold', op: 'PutRecord', count: 1 });
    await s.publish('ckd', 'ckd', 3); // 6 held at the gate, 7 and 8 wait for the slot
    await until(async () => (await s.peers.gate.stats()).held === 1, '6 held');
    await until(async () => (await metric(`http://127.0.0.1:${d1.apiPort}`, 'kubemq_kinesis_received_sequence', 'ckd')) === 8, '8 taken');
    assert.deepEqual(await d1.d.stop(), { code: 0, signal: null });
    assert.match(d1.d.stderr(), /drain timeout after 1 s: 3 requests still in flight are answered with an error/);
    assert.equal(readFile(file).sequence, 5, 'answered with an error at the stop, never run: not counted');
    const d2 = await daemon(s, cfg);
    assert.match(d2.d.stderr(), /resuming channel 'ckd' after sequence 5 /);
    await until(async () => total(await s.counts('ckd')) >= 8, '8 records');
    await rig.sleep(500);
    exactlyOnce(await s.counts('ckd'), 8, 'sent by the next start');
    assert.deepEqual(await d2.d.stop(), { code: 0, signal: null });
  });

  it('a broken, unreadable or foreign checkpoint file stops the start with an error naming the binding', async () => {
    const s = await setup('ckbad');
    await s.publish('ckbad', 'ckbad', 3);
    const broken = path.join(dir, 'broken.json');
    fs.writeFileSync(broken, '{"binding":"ckbad","channel":"ckbad","sequence":');
    const loop = path.join(dir, 'loop.json');
    fs.symlinkSync(loop, loop); // open() fails: too many levels of symbolic links
    const foreign = path.join(dir, 'foreign.json');
    fs.writeFileSync(foreign, JSON.stringify({ binding: 'orders', channel: 'orders.in', sequence: 42 }));
    const cases = [
      [broken, /cannot start: binding ckbad: source: checkpoint_file: ".*broken\.json" is not a checkpoint \(not JSON.*\); fix or remove it/],
      [loop, /cannot start: binding ckbad: source: checkpoint_file: cannot read ".*loop\.json": Too many levels of symbolic links/],
      [foreign, /cannot start: binding ckbad: source: checkpoint_file: ".*foreign\.json" is the checkpoint of binding "orders" on channel "orders\.in", not of binding "ckbad" on channel "ckbad"; give each binding a file of its own/],
    ];
    for (const [file, re] of cases) {
      const cfg = { bindings: [esBinding(s, 'ckbad', 'ckbad', { checkpoint: 'file', checkpoint_file: file, start_position: 'first' })] };
      const d = rig.startDaemon(rig.writeConfig(cfg), { env: {} });
      c.add(async () => { if (rig.pidAlive(d.pid)) await d.stop('SIGKILL'); });
      const { code } = await d.waitExit();
      assert.equal(code, 1, d.stderr());
      assert.match(d.stderr(), re);
      assert.doesNotMatch(d.stderr(), /subscribed to events_store on channel 'ckbad'/, 'no fallback to start_position first');
    }
    assert.equal(fs.readFileSync(broken, 'utf8'), '{"binding":"ckbad","channel":"ckbad","sequence":', 'left as it was');
    assert.equal((await s.peers.broker.stats()).durables.filter((x) => x.channel === 'ckbad').length, 0, 'never subscribed');
  });

  it('checkpoint channel unreachable at start: a warning naming the binding, then it resumes (not from start_position)', async () => {
    const s = await setup('ckr');
    await s.createStream('ckr');
    const cfg = [esBinding(s, 'ckr', 'ckr', { checkpoint: 'kubemq', start_position: 'first' })];
    const d1 = await daemon(s, cfg);
    await s.publish('ckr', 'ckr', 5);
    await until(async () => total(await s.counts('ckr')) >= 5, '5 records');
    assert.deepEqual(await d1.d.stop(), { code: 0, signal: null });
    await s.publish('ckr', 'ckr', 3);
    await s.peers.broker.stopListener();
    const d2 = await daemon(s, cfg, { waitReady: false });
    await d2.d.waitForStderr(/binding ckr: checkpoint: cannot read the checkpoint on channel 'ckr\.checkpoint' yet: the broker at 127\.0\.0\.1:\d+ is not reachable; still trying/, 20000);
    assert.equal((await rig.httpRequest(`http://127.0.0.1:${d2.apiPort}/ready`)).status, 503);
    assert.ok(rig.pidAlive(d2.d.pid), 'the daemon keeps running');
    await s.peers.broker.startListener();
    await rig.waitHttp(`http://127.0.0.1:${d2.apiPort}/ready`, { status: 200, timeoutMs: 30000 });
    assert.match(d2.d.stderr(), /binding ckr: checkpoint: resuming channel 'ckr' after sequence 5 /);
    await until(async () => total(await s.counts('ckr')) >= 8, '8 records');
    await rig.sleep(500);
    exactlyOnce(await s.counts('ckr'), 8, 'after the broker came back');
    assert.deepEqual(await d2.d.stop(), { code: 0, signal: null });
  });

  it('a checkpoint beyond the channel\'s last message (its store was cleaned): a warning, then start_position', async () => {
    const s = await setup('ckc');
    await s.createStream('ckc');
    await s.publish('ckc', 'ckc', 3);
    const file = path.join(dir, 'ckc.json');
    fs.writeFileSync(file, JSON.stringify({ binding: 'ckc', channel: 'ckc', sequence: 100 }));
    const d = await daemon(s, [esBinding(s, 'ckc', 'ckc', { checkpoint: 'file', checkpoint_file: file, start_position: 'first' })]);
    assert.match(d.d.stderr(), /binding ckc: checkpoint: sequence 100 \(from file ".*ckc\.json"\) is beyond the last message of channel 'ckc' \(sequence 3\): its store was cleaned or it is another one; starting from start_position first/);
    await until(async () => total(await s.counts('ckc')) >= 3, '3 records');
    assert.deepEqual(await d.d.stop(), { code: 0, signal: null });
    exactlyOnce(await s.counts('ckc'), 3, 'from the start');
    assert.equal(readFile(file).sequence, 3);
  });

  it('a reload that replaces the binding in a burst: the new one takes over the position; nothing lost or repeated', async () => {
    const s = await setup('ckl');
    await s.createStream('ckl');
    const file = path.join(dir, 'ckl.json');
    const cfg = [esBinding(s, 'ckl', 'ckl', { checkpoint: 'file', checkpoint_file: file, checkpoint_interval_ms: '100', concurrency: '2' })];
    const d = await daemon(s, cfg);
    await s.peers.gate.fault({ kind: 'delay', op: 'PutRecord', ms: 15, count: 300 });
    const publishing = s.publish('ckl', 'ckl', 300);
    await until(async () => total(await s.counts('ckl')) >= 60, '60 records');
    // A changed binding (its target's retries): replaced, the old one drains.
    cfg[0].target.properties.max_attempts = '5';
    fs.writeFileSync(d.path, JSON.stringify({ apiPort: d.apiPort, watchConfig: false, bindings: cfg }));
    process.kill(d.d.pid, 'SIGHUP');
    await d.d.waitForStderr(/reloaded: 1 binding \(0 kept, 0 started, 1 replaced, 0 stopped\) after SIGHUP/, 30000);
    assert.match(d.d.stderr(), /binding ckl: checkpoint: going on after sequence \d+, where the binding it replaces is/);
    await publishing;
    await until(async () => total(await s.counts('ckl')) >= 300, '300 records', 120000);
    await rig.sleep(800);
    exactlyOnce(await s.counts('ckl'), 300, 'across the reload');
    await until(() => seqOf(file) === 300, 'checkpoint 300');
    assert.deepEqual(await d.d.stop(), { code: 0, signal: null });
    assert.equal(readFile(file).sequence, 300);
    assert.deepEqual(linesOf(d.d, /checkpoint: could not write/), []);
  });

  it('a reload while the old binding still runs a request: the checkpoint stays below it until it is answered', async () => {
    const s = await setup('ckh');
    await s.createStream('ckh');
    const file = path.join(dir, 'ckh.json');
    const cfg = [esBinding(s, 'ckh', 'ckh', { checkpoint: 'file', checkpoint_file: file, checkpoint_interval_ms: '100', concurrency: '4' })];
    const d = await daemon(s, cfg);
    const api = `http://127.0.0.1:${d.apiPort}`;
    await s.publish('ckh', 'ckh', 5);
    await until(() => seqOf(file) === 5, 'checkpoint 5');
    await s.peers.gate.fault({ kind: 'hold', op: 'PutRecord', count: 1 });
    await s.publish('ckh', 'ckh', 1); // 6: held, in the old binding
    await until(async () => (await s.peers.gate.stats()).held === 1, '6 held');
    cfg[0].target.properties.max_attempts = '5';
    fs.writeFileSync(d.path, JSON.stringify({ apiPort: d.apiPort, watchConfig: false, bindings: cfg }));
    process.kill(d.d.pid, 'SIGHUP');
    await d.d.waitForStderr(/draining: 1 request in flight/, 30000);
    await s.publish('ckh', 'ckh', 4); // 7..10: the new binding runs them
    await until(async () => total(await s.counts('ckh')) >= 9, '9 records');
    await rig.sleep(600);
    assert.equal(readFile(file).sequence, 5, 'not past 6, still running in the old binding');
    assert.equal(await metric(api, 'kubemq_kinesis_checkpoint_sequence', 'ckh'), 5);
    assert.match(d.d.stderr(), /binding ckh: checkpoint: going on after sequence 6, where the binding it replaces is/);
    await s.peers.gate.release();
    await d.d.waitForStderr(/reloaded: 1 binding \(0 kept, 0 started, 1 replaced, 0 stopped\) after SIGHUP/, 30000);
    await until(() => seqOf(file) === 10, 'checkpoint 10 once 6 is answered');
    exactlyOnce(await s.counts('ckh'), 10, 'across the reload');
    assert.deepEqual(await d.d.stop(), { code: 0, signal: null });
    assert.equal(readFile(file).sequence, 10);
  });

  it('config: checkpoint with a group, with sources > 1, on another kind, file without checkpoint_file', async () => {
    const mk = (kind, source) => binding('b', { kind, address: '127.0.0.1:1', channel: 'x', source, target: { aws_key: 'a', aws_secret_key: 'b', region: 'us-east-1' } });
    const d = rig.startDaemon(rig.writeConfig({
      bindings: [
        { ...mk('kubemq.events-store', { checkpoint: 'kubemq', group: 'g' }), name: 'g1' },
        { ...mk('kubemq.events-store', { checkpoint: 'kubemq', sources: '2' }), name: 's2' },
        { ...mk('kubemq.query', { checkpoint: 'file' }), name: 'q1' },
        { ...mk('kubemq.events-store', { checkpoint: 'file' }), name: 'f1' },
      ],
    }), { args: ['--check'], env: {} });
    c.add(async () => { if (rig.pidAlive(d.pid)) await d.stop('SIGKILL'); });
    const { code } = await d.waitExit();
    assert.equal(code, 2);
    const err = d.stderr();
    assert.match(err, /binding "g1": source: checkpoint: cannot be used with a group/);
    assert.match(err, /binding "s2": source: checkpoint: needs sources: 1, got 2/);
    assert.match(err, /binding "q1": source: checkpoint: only applies to kubemq\.events-store \(this source is kubemq\.query/);
    assert.doesNotMatch(err, /binding "q1": source: checkpoint: unknown property/);
    assert.match(err, /binding "f1": source: checkpoint_file: is required with checkpoint: file/);
    assert.match(err, /config invalid: 4 problems/);
  });
});
