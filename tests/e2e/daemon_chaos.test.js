'use strict';
// Faults under load: kubemq-js -> the stand-in broker -> kubemq-kinesis (three bindings:
// queries, queries coalesced, commands) -> the SigV4 gate -> kinesalite, with the gate answering a seeded
// random mix of faults (throttling, 500/503, dropped connections, non-retryable
// errors, partial PutRecords failures, delays) to every call until the mix runs out.
// Every query gets one answer, success or a specific error; a record its caller was
// told went is in the stream exactly once, and one its caller was told failed is not
// there at all (the events source: one reply envelope per event, as many records as
// ok replies; the queue source: in the stream once or dead-lettered); the daemon keeps
// running and exits 0 (under the sanitizers in
// `make test`: a report there fails the test). CHAOS_SHOW=1 prints each failed query's error.
const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { createRequire } = require('node:module');
const { AK, SK, cleanups, startPeers, binding, startDaemon, b64, req, rig, kubemq } = require('./daemon_lib');

const rigRequire = createRequire(path.join(__dirname, '..', 'rig', 'package.json'));
const { QueuesClient, EventsClient } = rigRequire('kubemq-js');

const N_PUT = 150; // put_record queries per binding
const N_PUTS = 30; // put_records queries of 3 records
const N_CMD = 60; // put_record commands
const N_FAULTS = 500;

// xorshift32: the same fault mix on every run, so a failure reproduces.
function prng(seed) {
  let x = seed >>> 0;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

function faultMix(seed, { partial = true } = {}) {
  const rnd = prng(seed);
  const out = [];
  for (let i = 0; i < N_FAULTS; i++) {
    const r = rnd();
    if (r < 0.55) out.push({ kind: 'delay', ms: Math.floor(rnd() * 20) }); // passes
    else if (r < 0.65) out.push({ kind: 'throttle' });
    else if (r < 0.70) out.push({ kind: 'kms_throttle' });
    else if (r < 0.77) out.push({ kind: 'status', status: rnd() < 0.5 ? 500 : 503 });
    else if (r < 0.84) out.push({ kind: 'drop' });
    else if (r < 0.87) out.push({ kind: 'error', status: 400, type: 'ValidationException', message: 'chaos: refused' });
    else if (!partial) out.push({ kind: 'throttle' });
    else out.push({ kind: 'partial', fail: [0, 2, 5].filter(() => rnd() < 0.6), code: rnd() < 0.5 ? 'InternalFailure' : 'ProvisionedThroughputExceededException' });
  }
  // A partial fault needs at least one index; an empty one is a pass.
  return out.map((f) => (f.kind === 'partial' && !f.fail.length ? { kind: 'delay', ms: 0 } : f));
}

async function createStream(kin, stream) {
  const created = await rig.kinesisCall(kin.url, 'CreateStream', { StreamName: stream, ShardCount: 2 },
    { accessKey: AK, secretKey: SK });
  assert.equal(created.status, 200, created.text);
  for (let i = 0; i < 100; i++) {
    const s = await rig.kinesisCall(kin.url, 'DescribeStreamSummary', { StreamName: stream }, { accessKey: AK, secretKey: SK });
    if (s.json.StreamDescriptionSummary.StreamStatus === 'ACTIVE') return;
    await rig.sleep(100);
  }
  assert.fail(`${stream} never became ACTIVE`);
}

// Every record of the stream, read straight from kinesalite: data -> count.
async function readAll(url, stream) {
  const seen = new Map();
  for (const { data } of await rig.readStream(url, stream)) seen.set(data, (seen.get(data) || 0) + 1);
  return seen;
}

describe('daemon: faults under load', () => {
  const c = cleanups();
  after(() => c.run());

  it('answers every query once; records arrive exactly when their callers were told so', async () => {
    const { kin, gate, broker, targetProps } = await startPeers(c);
    const stream = 'chaos-e2e';
    await createStream(kin, stream);

    const apiPort = await rig.freePort();
    const config = {
      apiPort,
      apiAddress: '127.0.0.1',
      bindings: [
        // Two attempts: more of the mix gets through to the callers.
        binding('chaos-plain', { address: broker.address, channel: 'chaos.plain', source: { concurrency: '32' }, target: { ...targetProps, max_attempts: '2' } }),
        binding('chaos-coalesce', {
          address: broker.address,
          channel: 'chaos.coalesce',
          source: { concurrency: '64' },
          target: { ...targetProps, coalesce: 'true', coalesce_linger_ms: '5' },
        }),
        binding('chaos-command', { kind: 'kubemq.command', address: broker.address, channel: 'chaos.command', target: targetProps }),
      ],
    };
    const { d, api } = await startDaemon(c, broker, config);
    await gate.fault(faultMix(0xc4a05));

    const client = kubemq.openClient(broker.address);
    c.add(() => client.close());
    const jobs = [];
    for (let i = 0; i < N_PUT; i++) {
      for (const ch of ['plain', 'coalesce']) {
        const data = `${ch}-${i}`;
        jobs.push({ kind: 'put_record', records: [data], p: client.query(`chaos.${ch}`, req({ method: 'put_record', stream_name: stream, partition_key: `k${i % 7}` }, b64(data)), { timeoutMs: 60000 }) });
      }
    }
    for (let i = 0; i < N_CMD; i++) {
      const data = `command-${i}`;
      jobs.push({ kind: 'command', records: [data], p: client.command('chaos.command', req({ method: 'put_record', stream_name: stream, partition_key: `c${i % 3}` }, b64(data)), { timeoutMs: 60000 }) });
    }
    for (let i = 0; i < N_PUTS; i++) {
      const recs = [0, 1, 2].map((j) => `batch-${i}-${j}`);
      const body = recs.map((r, j) => ({ partition_key: `b${j}`, data: b64(r) }));
      jobs.push({ kind: 'put_records', records: recs, p: client.query('chaos.plain', req({ method: 'put_records', stream_name: stream }, b64(JSON.stringify(body))), { timeoutMs: 60000 }) });
    }
    const replies = await Promise.all(jobs.map((j) => j.p));

    // Each answer: success, or an error that names what went wrong.
    const told = new Map(); // record -> true (went) / false (did not)
    let failures = 0;
    replies.forEach((r, i) => {
      const job = jobs[i];
      const what = `${job.kind} ${job.records[0]}`;
      if (job.kind === 'command') {
        // A command's answer: executed, or not with the error.
        assert.equal(typeof r.executed, 'boolean', what);
        if (!r.executed) {
          failures += 1;
          assert.ok(r.error.length > 0, `${what}: not executed, without an error`);
        }
        told.set(job.records[0], r.executed);
        return;
      }
      assert.ok(r.reply, `${what}: no reply envelope: ${r.body} (KubeMQ error: ${r.error})`);
      if (!r.reply.is_error) {
        assert.equal(r.reply.metadata.result, 'ok', what);
        for (const rec of job.records) told.set(rec, true);
        return;
      }
      failures += 1;
      if (process.env.CHAOS_SHOW) console.log(what, '->', r.reply.error);
      assert.ok(r.reply.error.length > 0, `${what}: an error without a message`);
      assert.equal(r.error, r.reply.error, `${what}: the KubeMQ-level error is the envelope error`);
      assert.match(r.reply.error, /Throttl|Rate exceeded|ProvisionedThroughput|InternalFailure|Internal service|ServiceUnavailable|Service Unavailable|chaos: refused|ValidationException|connection|transport|Empty reply|records failed/i, what);
      if (job.kind === 'put_records' && r.reply.data) {
        // Per record: what went and what did not.
        const results = JSON.parse(Buffer.from(r.reply.data, 'base64').toString()).Records;
        assert.equal(results.length, job.records.length, `${what}: one result per record`);
        results.forEach((res, j) => told.set(job.records[j], !res.ErrorCode));
      } else {
        for (const rec of job.records) told.set(rec, false);
      }
    });
    const total = 2 * N_PUT + N_CMD + 3 * N_PUTS;
    assert.equal(told.size, total);
    assert.ok(failures > 0, 'the fault mix made some requests fail');
    assert.ok(failures < jobs.length / 3, `${failures} of ${jobs.length} failed`);
    console.log(`chaos: ${failures} of ${jobs.length} queries and commands failed`);

    // The stream holds what the callers were told went, once each, and nothing else.
    const seen = await readAll(kin.url, stream);
    for (const [rec, went] of told) {
      const n = seen.get(rec) || 0;
      assert.equal(n, went ? 1 : 0, `${rec}: told ${went ? 'it went' : 'it failed'}, found ${n} time(s)`);
    }
    assert.equal([...seen.keys()].filter((k) => !told.has(k)).length, 0, 'records nobody sent');

    const st = await gate.stats();
    assert.equal(st.sigFailures, 0);
    assert.ok(st.faultsApplied >= 150, `faults applied: ${st.faultsApplied}`);

    // Still serving: health, and a clean query after the mix ran out.
    const h = await rig.httpRequest(`${api}/health`);
    assert.equal(h.status, 200);
    await gate.reset(); // drops what is left of the mix
    const last = await client.query('chaos.plain', req({ method: 'put_record', stream_name: stream, partition_key: 'k' }, b64('after')), { timeoutMs: 30000 });
    assert.equal(last.reply && last.reply.is_error, false, last.reply && last.reply.error);

    const exit = await d.stop();
    assert.equal(exit.code, 0, d.stderr());
    assert.doesNotMatch(d.stderr(), /AddressSanitizer|LeakSanitizer|runtime error/);
  });

  it('events source: one reply envelope per event; as many records in the stream as replies said ok', async () => {
    const { kin, gate, broker, targetProps } = await startPeers(c);
    const stream = 'chaos-events';
    await createStream(kin, stream);
    const N = 100;
    const { d } = await startDaemon(c, broker, {
      apiPort: await rig.freePort(),
      apiAddress: '127.0.0.1',
      bindings: [binding('chaos-events', {
        address: broker.address,
        kind: 'kubemq.events',
        channel: 'chaos.events',
        source: { response_channel: 'chaos.events.replies' },
        target: { ...targetProps, max_attempts: '2' },
      })],
    });
    const replies = [];
    const sub = new EventsClient({ address: broker.address, clientId: 'chaos-replies' });
    c.add(() => sub.close());
    const h = await sub.subscribe({ channel: 'chaos.events.replies' }, (err, msg) => msg && replies.push(JSON.parse(Buffer.from(msg.body).toString())));
    c.add(() => h.unsubscribe());
    await broker.waitForSubscribers('events', 'chaos.events.replies');
    await rig.sleep(300);
    await gate.fault(faultMix(0xe7e, { partial: false }));

    const pub = new EventsClient({ address: broker.address, clientId: 'chaos-pub' });
    c.add(() => pub.close());
    for (let i = 0; i < N; i++) {
      const body = Buffer.from(JSON.stringify(req({ method: 'put_record', stream_name: stream, partition_key: `e${i % 5}` }, b64(`ev-${i}`))));
      assert.equal((await pub.send({ channel: 'chaos.events', metadata: '', body })).sent, true);
    }
    await rig.waitFor(() => replies.length >= N, { timeoutMs: 60000, what: `${N} reply envelopes` });
    await rig.sleep(1000); // a reply too many would show now
    assert.equal(replies.length, N, 'one reply per event');
    const good = replies.filter((r) => !r.is_error);
    for (const r of replies.filter((x) => x.is_error)) assert.ok(r.error.length > 0, 'an error envelope without a message');
    const seen = await readAll(kin.url, stream);
    assert.ok([...seen.values()].every((n) => n === 1), 'no event written twice');
    assert.equal(seen.size, good.length, `${good.length} replies said ok, the stream holds ${seen.size} events`);
    console.log(`chaos: ${N - good.length} of ${N} events failed`);
    assert.ok(good.length < N, 'the mix failed some events');
    const exit = await d.stop();
    assert.equal(exit.code, 0, d.stderr());
    assert.doesNotMatch(d.stderr(), /AddressSanitizer|LeakSanitizer|runtime error/);
  });

  it('queue source: each message ends in the stream exactly once or in the dead-letter queue', async () => {
    const { kin, gate, broker, targetProps } = await startPeers(c);
    const stream = 'chaos-queue';
    await createStream(kin, stream);
    const N = 100;
    const dlq = 'chaos.dlq';
    // One attempt per delivery, one requeue: a message the mix fails twice is dead-lettered.
    const { d } = await startDaemon(c, broker, {
      apiPort: await rig.freePort(),
      apiAddress: '127.0.0.1',
      bindings: [binding('chaos-queue', {
        address: broker.address,
        kind: 'kubemq.queue',
        channel: 'chaos.queue',
        source: { batch_size: '8', wait_timeout: '1', max_requeue: '1', dead_letter_queue: dlq },
        target: { ...targetProps, max_attempts: '1' },
      })],
    });
    await gate.fault(faultMix(0x9e1, { partial: false }));
    const queues = new QueuesClient({ address: broker.address, clientId: 'chaos-queues' });
    c.add(() => queues.close());
    for (let i = 0; i < N; i++) {
      const body = Buffer.from(JSON.stringify(req({ method: 'put_record', stream_name: stream, partition_key: `k${i % 5}` }, b64(`q-${i}`))));
      const r = await queues.send({ channel: 'chaos.queue', metadata: '', body });
      assert.equal(r.isError, false);
    }

    // Settled: every message is in the stream or waits in the dead-letter queue.
    const dlqWaiting = async () => ((await broker.stats()).queues[dlq] || {}).waiting || 0;
    let seen;
    await rig.waitFor(async () => {
      seen = await readAll(kin.url, stream);
      return seen.size + (await dlqWaiting()) >= N;
    }, { timeoutMs: 60000, what: 'every message settled' });
    await rig.sleep(1500); // anything still moving would show now
    seen = await readAll(kin.url, stream);
    const dead = await queues.pull({ channel: dlq, maxNumberOfMessages: N, waitTimeoutSeconds: 1 });
    const deadData = new Set(dead.messages.map((m) => Buffer.from(JSON.parse(Buffer.from(m.body).toString()).data, 'base64').toString()));
    assert.equal(deadData.size, dead.messages.length, 'no message dead-lettered twice');
    for (let i = 0; i < N; i++) {
      const d = `q-${i}`;
      const inStream = seen.get(d) || 0;
      assert.ok(inStream <= 1, `${d} is in the stream ${inStream} times`);
      assert.equal(inStream + (deadData.has(d) ? 1 : 0), 1, `${d}: in the stream ${inStream} time(s), dead-lettered: ${deadData.has(d)}`);
    }
    console.log(`chaos: ${deadData.size} of ${N} queue messages dead-lettered`);
    assert.ok(deadData.size > 0, 'the mix dead-lettered some messages');
    assert.ok(deadData.size < N / 2, `${deadData.size} of ${N} dead-lettered`);
    const main = (await broker.stats()).queues['chaos.queue'] || {};
    assert.equal(main.waiting || 0, 0, 'nothing left in the queue');
    assert.equal((await gate.stats()).sigFailures, 0);
    const exit = await d.stop();
    assert.equal(exit.code, 0, d.stderr());
    assert.doesNotMatch(d.stderr(), /AddressSanitizer|LeakSanitizer|runtime error/);
  });
});
