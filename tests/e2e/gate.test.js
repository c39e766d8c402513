'use strict';
// Self-test of the rig: kinesalite and kinesis-local on loopback, the SigV4
// gate in front (signature checks, every fault kind, counters), and the
// helpers that run our binary (exercised here with stand-in executables).
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const fs = require('fs');
const https = require('https');
const path = require('path');
const rig = require('../rig/lib');

const AK = 'AKIDRIGTEST';
const SK = 'rig/secret+KEY/0123456789';
const CREDS = { accessKey: AK, secretKey: SK };

// Runs fn({kinesalite, gate, call, track}) with fresh peers; stops every
// process it started and checks that their PIDs are gone.
function withRig(fn, { gateOpts = {}, kinesalite = true } = {}) {
  return async (t) => {
    const handles = [];
    const track = (h) => { handles.push(h); return h; };
    try {
      const k = kinesalite ? track(await rig.startKinesalite()) : null;
      const gate = k ? track(await rig.startGate({ upstream: k.url, ...CREDS, ...gateOpts })) : null;
      const call = (op, payload, o = {}) => rig.kinesisCall(gate.url, op, payload, { ...CREDS, ...o });
      await fn({ kinesalite: k, gate, call, track, t });
    } finally {
      for (const h of handles.reverse()) await h.stop();
      for (const h of handles) assert.equal(rig.pidAlive(h.pid), false, `pid ${h.pid} still alive`);
    }
  };
}

async function createStream(call, name, shards = 1) {
  const r = await call('CreateStream', { StreamName: name, ShardCount: shards });
  assert.equal(r.status, 200, r.text);
}

// All records of one shard, from TRIM_HORIZON.
async function readShard(call, stream, shardId = 'shardId-000000000000') {
  const it = await call('GetShardIterator', { StreamName: stream, ShardId: shardId, ShardIteratorType: 'TRIM_HORIZON' });
  assert.equal(it.status, 200, it.text);
  const r = await call('GetRecords', { ShardIterator: it.json.ShardIterator, Limit: 10000 });
  assert.equal(r.status, 200, r.text);
  return r.json.Records;
}

const b64 = (s) => Buffer.from(s).toString('base64');
const dataOf = (recs) => recs.map((r) => Buffer.from(r.Data, 'base64').toString('utf8'));

test('kinesalite and gate listen on loopback only and stop cleanly', withRig(async ({ kinesalite, gate }) => {
  assert.deepEqual(rig.listeningAddrs(kinesalite.pid), [`127.0.0.1:${kinesalite.port}`]);
  assert.deepEqual(rig.listeningAddrs(gate.pid), [`127.0.0.1:${gate.port}`]);
  assert.match(gate.url, /^http:\/\/127\.0\.0\.1:\d+$/);
}));

test('signed requests are forwarded: CreateStream, PutRecord, PutRecords, GetRecords byte-exact',
  withRig(async ({ gate, call }) => {
    await createStream(call, 'rt');
    const blob = crypto.randomBytes(4096);
    const p1 = await call('PutRecord', { StreamName: 'rt', PartitionKey: 'k1', Data: blob.toString('base64') });
    assert.equal(p1.status, 200, p1.text);
    assert.equal(p1.json.ShardId, 'shardId-000000000000');
    const p2 = await call('PutRecords', {
      StreamName: 'rt',
      Records: [{ PartitionKey: 'a', Data: b64('one') }, { PartitionKey: 'b', Data: b64('two') }],
    });
    assert.equal(p2.status, 200, p2.text);
    assert.equal(p2.json.FailedRecordCount, 0);
    const recs = await readShard(call, 'rt');
    assert.equal(recs.length, 3);
    assert.ok(Buffer.from(recs[0].Data, 'base64').equals(blob), 'binary record differs');
    assert.equal(recs[0].SequenceNumber, p1.json.SequenceNumber);
    assert.deepEqual(dataOf(recs.slice(1)), ['one', 'two']);
    assert.deepEqual(recs.map((r) => r.PartitionKey), ['k1', 'a', 'b']);

    const st = await gate.stats();
    assert.equal(st.total, 5);
    assert.deepEqual(st.byOp, { CreateStream: 1, PutRecord: 1, PutRecords: 1, GetShardIterator: 1, GetRecords: 1 });
    assert.equal(st.sigFailures, 0);
    assert.equal(st.inFlight, 0);
    const log = await gate.log();
    assert.deepEqual(log.map((e) => [e.op, e.status]), [['CreateStream', 200], ['PutRecord', 200], ['PutRecords', 200],
      ['GetShardIterator', 200], ['GetRecords', 200]]);
    assert.equal(log[1].body.Data, blob.toString('base64'));
    assert.equal(log[2].body.Records.length, 2);
    assert.equal(log[0].body, undefined, 'bodies are kept for PutRecord(s) only');
    assert.equal(log[0].region, 'us-east-1');
  }));

test('bad signatures are rejected with AWS error shapes and never forwarded', withRig(async ({ gate, call }) => {
  const expectErr = (r, type, re) => {
    assert.equal(r.status, 400, r.text);
    assert.equal(r.headers['content-type'], 'application/x-amz-json-1.1');
    assert.equal(r.json.__type, type, r.text);
    if (re) assert.match(r.json.message, re);
  };
  // Wrong secret.
  expectErr(await call('CreateStream', { StreamName: 'nope', ShardCount: 1 }, { secretKey: 'wrong' }),
    'InvalidSignatureException', /^The request signature we calculated does not match the signature you provided\./);
  // Unknown access key.
  expectErr(await call('ListStreams', {}, { accessKey: 'AKIDUNKNOWN' }), 'UnrecognizedClientException',
    /security token included in the request is invalid/);
  // Body changed after signing.
  await createStream(call, 'sig');
  expectErr(await call('PutRecord', { StreamName: 'sig', PartitionKey: 'k', Data: b64('signed') }, {
    tamper: (s) => { s.body = Buffer.from(JSON.stringify({ StreamName: 'sig', PartitionKey: 'k', Data: b64('forged') })); },
  }), 'InvalidSignatureException', /does not match/);
  // Target changed after signing.
  expectErr(await call('ListStreams', {}, {
    tamper: (s) => { s.headers['x-amz-target'] = 'Kinesis_20131202.DeleteStream'; s.body = Buffer.from('{"StreamName":"sig"}'); },
  }), 'InvalidSignatureException');
  // Signed 20 minutes ago, and 20 minutes ahead.
  expectErr(await call('ListStreams', {}, { date: new Date(Date.now() - 20 * 60000) }), 'InvalidSignatureException', /^Signature expired: /);
  expectErr(await call('ListStreams', {}, { date: new Date(Date.now() + 20 * 60000) }), 'InvalidSignatureException', /^Signature not yet current: /);
  // x-amz-content-sha256: right value accepted, wrong value rejected.
  const ok = await call('ListStreams', {}, { applyChecksum: true });
  assert.equal(ok.status, 200, ok.text);
  expectErr(await call('ListStreams', {}, { headers: { 'x-amz-content-sha256': rig.sha256hex('other') } }),
    'InvalidSignatureException', /x-amz-content-sha256/);
  // No Authorization at all, and a malformed one.
  const none = await rig.httpRequest(gate.url, {
    method: 'POST', body: '{}',
    headers: { 'content-type': rig.AMZ_JSON, 'x-amz-target': 'Kinesis_20131202.ListStreams' },
  });
  expectErr(none, 'MissingAuthenticationTokenException', /Missing Authentication Token/);
  expectErr(await call('ListStreams', {}, { tamper: (s) => { s.headers.authorization = 'garbage'; } }),
    'IncompleteSignatureException', /requires 'Credential'/);
  // A signature for another service.
  expectErr(await call('ListStreams', {}, { service: 'dynamodb' }), 'InvalidSignatureException', /correct service/);

  const recs = await readShard(call, 'sig');
  assert.equal(recs.length, 0, 'the tampered PutRecord must not reach kinesalite');
  const streams = await call('ListStreams', {});
  assert.deepEqual(streams.json.StreamNames, ['sig'], 'the wrongly signed CreateStream must not reach kinesalite');
  const st = await gate.stats();
  assert.equal(st.sigFailures, 10);
  const log = await gate.log();
  const mismatch = log.find((e) => e.status === 400 && e.canonicalRequest);
  assert.ok(mismatch, 'a signature mismatch logs the canonical request');
  assert.match(mismatch.canonicalRequest, /^POST\n\/\n\n/);
}));

test('session tokens: right token accepted, missing or wrong token rejected', withRig(async ({ call }) => {
  const token = 'FQoGZXIvYXdzE//token+/=' + 'x'.repeat(600);
  const ok = await call('ListStreams', {}, { sessionToken: token });
  assert.equal(ok.status, 200, ok.text);
  for (const o of [{}, { sessionToken: 'other' }]) {
    const r = await call('ListStreams', {}, o);
    assert.equal(r.status, 400);
    assert.equal(r.json.__type, 'UnrecognizedClientException');
  }
  // Token sent but left out of SignedHeaders.
  const r = await call('ListStreams', {}, { headers: { 'x-amz-security-token': token }, tamper: (s) => {
    s.headers.authorization = s.headers.authorization.replace(';x-amz-security-token', '');
  } });
  assert.equal(r.json.__type, 'UnrecognizedClientException');
}, { gateOpts: { sessionToken: 'FQoGZXIvYXdzE//token+/=' + 'x'.repeat(600) } }));

test('throttle and kms_throttle faults: count honoured, then requests pass', withRig(async ({ gate, call }) => {
  await createStream(call, 'thr');
  await gate.fault({ op: 'PutRecord', kind: 'throttle', count: 2 });
  await gate.fault({ op: 'PutRecord', kind: 'kms_throttle' });
  const put = (d) => call('PutRecord', { StreamName: 'thr', PartitionKey: 'k', Data: b64(d) });
  // Another operation is not affected by a PutRecord fault.
  assert.equal((await call('ListStreams', {})).status, 200);
  for (const d of ['a', 'b']) {
    const r = await put(d);
    assert.equal(r.status, 400);
    assert.equal(r.json.__type, 'ProvisionedThroughputExceededException');
    assert.match(r.json.message, /Rate exceeded/);
  }
  const k = await put('c');
  assert.equal(k.status, 400);
  assert.equal(k.json.__type, 'KMSThrottlingException');
  assert.equal((await put('d')).status, 200);
  assert.deepEqual(dataOf(await readShard(call, 'thr')), ['d'], 'throttled puts must not be written');
  const st = await gate.stats();
  assert.equal(st.faultsApplied, 3);
  assert.equal(st.faultsPending, 0);
}));

test('partial PutRecords: failed entries are not written, the others exactly once', withRig(async ({ gate, call }) => {
  await createStream(call, 'part');
  const records = ['r0', 'r1', 'r2', 'r3', 'r4'].map((d, i) => ({ PartitionKey: `pk${i}`, Data: b64(d) }));
  await gate.fault({ kind: 'partial', fail: [1, 3] });
  const r = await call('PutRecords', { StreamName: 'part', Records: records });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.FailedRecordCount, 2);
  assert.equal(r.json.Records.length, 5);
  for (const i of [1, 3]) {
    assert.equal(r.json.Records[i].ErrorCode, 'ProvisionedThroughputExceededException');
    assert.match(r.json.Records[i].ErrorMessage, /Rate exceeded for shard/);
    assert.equal(r.json.Records[i].SequenceNumber, undefined);
  }
  for (const i of [0, 2, 4]) assert.match(r.json.Records[i].SequenceNumber, /^\d+$/);
  let recs = await readShard(call, 'part');
  assert.deepEqual(dataOf(recs), ['r0', 'r2', 'r4']);
  assert.deepEqual(recs.map((x) => x.SequenceNumber), [0, 2, 4].map((i) => r.json.Records[i].SequenceNumber));

  // Retry only the failed ones, with an InternalFailure on one of them.
  await gate.fault({ kind: 'partial', fail: [0], code: 'InternalFailure' });
  const r2 = await call('PutRecords', { StreamName: 'part', Records: [records[1], records[3]] });
  assert.equal(r2.json.FailedRecordCount, 1);
  assert.equal(r2.json.Records[0].ErrorCode, 'InternalFailure');
  assert.equal(r2.json.Records[0].ErrorMessage, 'Internal service failure.');
  // Everything fails: nothing reaches kinesalite.
  await gate.fault({ kind: 'partial', fail: [0, 1] });
  const r3 = await call('PutRecords', { StreamName: 'part', Records: [records[1], records[1]] });
  assert.equal(r3.json.FailedRecordCount, 2);
  recs = await readShard(call, 'part');
  assert.deepEqual(dataOf(recs), ['r0', 'r2', 'r4', 'r3']);
  const log = await gate.log();
  const partial = log.filter((e) => e.fault === 'partial');
  assert.deepEqual(partial.map((e) => e.failedIndices), [[1, 3], [0], [0, 1]]);
  assert.equal(partial[0].body.Records.length, 5, 'the log keeps the request as the client sent it');
}));

test('status 500/503 faults answer AWS-shaped errors for `count` requests', withRig(async ({ gate, call }) => {
  await gate.fault({ op: 'ListStreams', kind: 'status', status: 500, count: 2 });
  await gate.fault({ op: 'ListStreams', kind: 'status', status: 503 });
  for (let i = 0; i < 2; i++) {
    const r = await call('ListStreams', {});
    assert.equal(r.status, 500);
    assert.deepEqual(r.json, { __type: 'InternalFailure', message: 'Internal service failure.' });
  }
  const r503 = await call('ListStreams', {});
  assert.equal(r503.status, 503);
  assert.equal(r503.json.__type, 'ServiceUnavailable');
  assert.equal((await call('ListStreams', {})).status, 200);
  // A generic error fault.
  await gate.fault({ kind: 'error', status: 400, type: 'LimitExceededException', message: 'too many' });
  const le = await call('CreateStream', { StreamName: 'x', ShardCount: 1 });
  assert.deepEqual([le.status, le.json.__type, le.json.message], [400, 'LimitExceededException', 'too many']);
  assert.deepEqual((await call('ListStreams', {})).json.StreamNames, []);
  const st = await gate.stats();
  assert.equal(st.byStatus['500'], 2);
  assert.equal(st.byStatus['503'], 1);
}));

test('delay, drop and expired_iterator faults', withRig(async ({ gate, call }) => {
  await createStream(call, 'dd');
  await gate.fault({ op: 'ListStreams', kind: 'delay', ms: 400 });
  const t0 = Date.now();
  const d = await call('ListStreams', {});
  assert.equal(d.status, 200);
  assert.ok(Date.now() - t0 >= 390, 'the delayed answer came too early');

  await gate.fault({ op: 'PutRecord', kind: 'drop' });
  await assert.rejects(call('PutRecord', { StreamName: 'dd', PartitionKey: 'k', Data: b64('lost') }),
    (e) => /socket hang up|ECONNRESET/.test(e.message + e.code));
  assert.equal((await call('PutRecord', { StreamName: 'dd', PartitionKey: 'k', Data: b64('kept') })).status, 200);

  const it = await call('GetShardIterator', { StreamName: 'dd', ShardId: 'shardId-000000000000', ShardIteratorType: 'TRIM_HORIZON' });
  await gate.fault({ kind: 'expired_iterator' });
  const ex = await call('GetRecords', { ShardIterator: it.json.ShardIterator });
  assert.equal(ex.status, 400);
  assert.equal(ex.json.__type, 'ExpiredIteratorException');
  assert.match(ex.json.message, /^Iterator expired/);
  const ok = await call('GetRecords', { ShardIterator: it.json.ShardIterator });
  assert.equal(ok.status, 200);
  assert.deepEqual(dataOf(ok.json.Records), ['kept'], 'the dropped PutRecord must not be written');
  const log = await gate.log();
  assert.ok(log.some((e) => e.op === 'PutRecord' && e.dropped && e.body.Data === b64('lost')));
  assert.deepEqual(log.filter((e) => e.fault).map((e) => e.fault), ['delay', 'drop', 'expired_iterator']);
}));

test('stats: totals and max in-flight under 8 concurrent held requests; reset', withRig(async ({ gate, call }) => {
  await gate.fault({ op: 'ListStreams', kind: 'hold', count: 8 });
  const pending = Promise.all(Array.from({ length: 8 }, () => call('ListStreams', {})));
  await rig.waitFor(async () => (await gate.stats()).held === 8, { what: '8 held requests' });
  let st = await gate.stats();
  assert.equal(st.inFlight, 8);
  assert.equal(st.maxInFlight, 8);
  assert.equal((await gate.log()).length, 0, 'nothing answered yet');
  assert.deepEqual(await gate.release(3), { released: 3, held: 5 });
  await rig.waitFor(async () => (await gate.stats()).inFlight === 5, { what: '3 answered' });
  assert.deepEqual(await gate.release(), { released: 5, held: 0 });
  const rs = await pending;
  assert.deepEqual(rs.map((r) => r.status), Array(8).fill(200));
  st = await gate.stats();
  assert.equal(st.total, 8);
  assert.equal(st.byOp.ListStreams, 8);
  assert.equal(st.maxInFlight, 8);
  assert.equal(st.inFlight, 0);
  assert.equal(st.faultsApplied, 8);
  assert.equal((await gate.log()).length, 8);
  // Control API errors, reset.
  const bad = await rig.httpRequest(`${gate.url}/_gate/fault`, { method: 'POST', body: '{"kind":"explode"}' });
  assert.equal(bad.status, 400);
  assert.match(bad.json.error, /fault kind must be one of/);
  await assert.rejects(gate.fault({ kind: 'partial', op: 'PutRecord', fail: [0] }), /PutRecords only/);
  assert.equal((await rig.httpRequest(`${gate.url}/_gate/nope`)).status, 404);
  await gate.fault({ kind: 'throttle', count: 3 });
  assert.equal((await gate.faults()).length, 1);
  await gate.reset();
  st = await gate.stats();
  assert.deepEqual([st.total, st.maxInFlight, st.sigFailures, st.faultsPending], [0, 0, 0, 0]);
  assert.deepEqual(await gate.log(), []);
  assert.equal((await call('ListStreams', {})).status, 200, 'reset also clears pending faults');

  // The same with delayed (not held) requests.
  await gate.reset();
  await gate.fault({ op: 'ListStreams', kind: 'delay', ms: 3000, count: 8 });
  const delayed = await Promise.all(Array.from({ length: 8 }, () => call('ListStreams', {})));
  assert.deepEqual(delayed.map((r) => r.status), Array(8).fill(200));
  st = await gate.stats();
  assert.deepEqual([st.total, st.maxInFlight, st.inFlight, st.faultsApplied], [8, 8, 0, 8]);
}));

test('gate over TLS with a test certificate', async () => {
  const cert = rig.makeTestCert();
  const handles = [];
  try {
    const k = await rig.startKinesalite();
    handles.push(k);
    const g = await rig.startGate({ upstream: k.url, ...CREDS, tlsKey: cert.keyPath, tlsCert: cert.certPath });
    handles.push(g);
    assert.match(g.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const signed = await rig.signKinesis({ url: g.url, operation: 'ListStreams', body: {}, ...CREDS });
    const res = await new Promise((resolve, reject) => {
      const u = new URL(g.url);
      const req = https.request({ host: u.hostname, port: u.port, path: '/', method: 'POST', headers: signed.headers, ca: cert.cert }, (r) => {
        let b = '';
        r.on('data', (c) => { b += c; });
        r.on('end', () => resolve({ status: r.statusCode, json: JSON.parse(b) }));
      });
      req.on('error', reject);
      req.end(signed.body);
    });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json.StreamNames, []);
    assert.equal((await g.stats()).total, 1);
  } finally {
    for (const h of handles.reverse()) await h.stop();
    for (const h of handles) assert.equal(rig.pidAlive(h.pid), false);
    fs.rmSync(cert.dir, { recursive: true, force: true });
  }
});

test('kinesis-local through the gate: ListStreams, StreamARN, RegisterStreamConsumer',
  withRig(async ({ track }) => {
    const kl = track(await rig.startKinesisLocal());
    assert.deepEqual(rig.listeningAddrs(kl.pid).sort(), [`127.0.0.1:${kl.port}`, `127.0.0.1:${kl.tlsPort}`].sort());
    const gate = track(await rig.startGate({ upstream: kl.url, ...CREDS }));
    const call = (op, payload) => rig.kinesisCall(gate.url, op, payload, CREDS);
    const ls = await call('ListStreams', {});
    assert.equal(ls.status, 200, ls.text);
    assert.deepEqual(ls.json.StreamNames, []);
    assert.equal((await call('CreateStream', { StreamName: 'kl', ShardCount: 1 })).status, 200);
    const sum = await rig.waitFor(async () => {
      const r = await call('DescribeStreamSummary', { StreamName: 'kl' });
      return r.status === 200 && r.json.StreamDescriptionSummary.StreamStatus === 'ACTIVE' && r.json;
    }, { what: 'stream ACTIVE' });
    const arn = sum.StreamDescriptionSummary.StreamARN;
    assert.equal(arn, 'arn:aws:kinesis:us-east-1:000000000000:stream/kl');
    const reg = await call('RegisterStreamConsumer', { StreamARN: arn, ConsumerName: 'c1' });
    assert.equal(reg.status, 200, reg.text);
    assert.equal(reg.json.Consumer.ConsumerName, 'c1');
    assert.match(reg.json.Consumer.ConsumerARN, /^arn:aws:kinesis:us-east-1:000000000000:stream\/kl\/consumer\/c1:\d+$/);
    const lc = await call('ListStreamConsumers', { StreamARN: arn });
    assert.equal(lc.status, 200, lc.text);
    assert.deepEqual(lc.json.Consumers.map((c) => c.ConsumerName), ['c1']);
    const put = await call('PutRecord', { StreamARN: arn, PartitionKey: 'k', Data: b64('by-arn') });
    assert.equal(put.status, 200, put.text);
    const st = await gate.stats();
    assert.equal(st.sigFailures, 0);
    assert.equal(st.byOp.RegisterStreamConsumer, 1);
  }, { kinesalite: false }));

test('daemon helpers: writeConfig, invoke and startDaemon against stand-in binaries', async () => {
  const dir = rig.tempDir();
  const saved = process.env.KK_BIN;
  const started = [];
  try {
    const cfg = rig.writeConfig({ bindings: [{ name: 'b1' }] });
    assert.ok(cfg.endsWith('.json'));
    assert.deepEqual(JSON.parse(fs.readFileSync(cfg, 'utf8')), { bindings: [{ name: 'b1' }] });
    const yml = rig.writeConfig('bindings: []\n');
    assert.ok(yml.endsWith('.yaml'));
    assert.equal(fs.readFileSync(yml, 'utf8'), 'bindings: []\n');

    // invoke: a stand-in that checks its arguments and echoes stdin into a reply.
    const fakeInvoke = path.join(dir, 'fake-invoke.js');
    fs.writeFileSync(fakeInvoke, `#!${process.execPath}
const a = process.argv.slice(2);
let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  if (a[0] !== 'invoke' || a[1] !== '--config' || a[3] !== '--binding') { console.error('bad args', a); process.exit(2); }
  process.stderr.write('log line\\n');
  process.stdout.write(JSON.stringify({ metadata: { result: 'ok', binding: a[4], cfg: a[2], env: process.env.RIG_X || '' },
    data: Buffer.from(input).toString('base64'), is_error: false, error: '' }) + '\\n');
});
`, { mode: 0o755 });
    process.env.KK_BIN = fakeInvoke;
    const env = { metadata: { method: 'list_streams' }, data: null };
    const r = await rig.invoke(cfg, 'b1', env, { env: { RIG_X: 'y' } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, 'log line\n');
    assert.deepEqual(r.reply.metadata, { result: 'ok', binding: 'b1', cfg, env: 'y' });
    assert.equal(Buffer.from(r.reply.data, 'base64').toString(), JSON.stringify(env));
    const raw = await rig.invoke(cfg, 'b1', 'not json');
    assert.equal(Buffer.from(raw.reply.data, 'base64').toString(), 'not json');

    // startDaemon: a stand-in that logs, drains on SIGTERM and exits 0.
    const fakeDaemon = path.join(dir, 'fake-daemon.js');
    fs.writeFileSync(fakeDaemon, `#!${process.execPath}
process.on('SIGTERM', () => { console.error('draining'); setTimeout(() => process.exit(0), 100); });
console.error('started with ' + process.argv.slice(2).join(' '));
setInterval(() => {}, 1000);
`, { mode: 0o755 });
    process.env.KK_BIN = fakeDaemon;
    const d = rig.startDaemon(cfg, { args: ['--log-level', 'debug'] });
    started.push(d);
    await d.waitForStderr(/started with --config \S+ --log-level debug/);
    assert.equal(rig.pidAlive(d.pid), true);
    const ex = await d.stop();
    assert.deepEqual(ex, { code: 0, signal: null });
    assert.match(d.stderr(), /draining/);
    assert.deepEqual(await d.waitExit(), { code: 0, signal: null });
    assert.equal(rig.pidAlive(d.pid), false);

    // A daemon that ignores SIGTERM is killed after the grace period.
    const stubborn = path.join(dir, 'stubborn.js');
    fs.writeFileSync(stubborn, `#!${process.execPath}
process.on('SIGTERM', () => {}); console.error('up'); setInterval(() => {}, 1000);
`, { mode: 0o755 });
    process.env.KK_BIN = stubborn;
    const s = rig.startDaemon(cfg);
    started.push(s);
    await s.waitForStderr(/up/);
    assert.deepEqual(await s.stop('SIGTERM', { graceMs: 300 }), { code: null, signal: 'SIGKILL' });
    await assert.rejects(s.waitForStderr(/never/, 100), /exited/);

    const port = await rig.freePort();
    assert.ok(port > 0 && port < 65536);
  } finally {
    if (saved === undefined) delete process.env.KK_BIN; else process.env.KK_BIN = saved;
    for (const d of started) await d.stop('SIGKILL');
    for (const d of started) assert.equal(rig.pidAlive(d.pid), false);
  }
});
