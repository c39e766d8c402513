'use strict';
// Binding middleware end to end: `kubemq-kinesis invoke` -> middleware chain
// -> aws.kinesis -> SigV4 gate (fault injection, call counts) -> kinesalite.
// Retry of throttled calls (the AWS client's own retry is off:
// max_attempts 1), exhaustion, no retry of validation or non-retryable AWS
// errors, metadata defaults (the caller's values win), per-binding log lines.
// The rate limit needs several requests through one process: it is tested
// against the daemon, not here (one request per invoke).
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const rig = require('../rig/lib');

const AK = 'AKIDMIDDLEWAREE2E';
const SK = 'middleware/e2e+SECRET/0123456789abcdef';

const b64 = (s) => Buffer.from(s).toString('base64');

function binding(name, props, sourceProps = {}) {
  return {
    name,
    source: {
      kind: 'kubemq.query',
      name: 'q',
      properties: { address: '127.0.0.1:50000', channel: `query.${name}`, ...sourceProps },
    },
    target: {
      kind: 'aws.kinesis',
      name: 'k',
      properties: null, // filled in before()
    },
    properties: props,
  };
}

describe('binding middleware through invoke, the gate and kinesalite', () => {
  let peer;
  let gate;
  let cfg;
  const env = { AWS_REGION: '', AWS_ENDPOINT_URL: '', AWS_ENDPOINT_URL_KINESIS: '' };

  const call = async (name, envelope, args = []) => {
    const r = await rig.invoke(cfg, name, envelope, { env, args });
    assert.equal(r.code, 0, `invoke exit ${r.code}\n${r.stderr}`);
    assert.equal(r.signal, null);
    assert.ok(r.reply, `no reply JSON on stdout: ${r.stdout}\n${r.stderr}`);
    return r;
  };
  const putCount = async () => (await gate.stats()).byOp.PutRecord || 0;

  before(async () => {
    peer = await rig.startKinesalite();
    try {
      gate = await rig.startGate({ upstream: peer.url, accessKey: AK, secretKey: SK });
    } catch (e) {
      await peer.stop();
      throw e;
    }
    const target = {
      aws_key: AK, aws_secret_key: SK, region: 'us-east-1', endpoint: gate.url,
      max_attempts: '1', // no retry inside the AWS client: the middleware's alone
    };
    const fast = { retry_delay_milliseconds: '20', retry_max_jitter_milliseconds: '10' };
    const bindings = [
      binding('plain', {}),
      binding('retry3', { ...fast, retry_attempts: '3', log_level: 'info' }),
      binding('retry2', { ...fast, retry_attempts: '2', retry_delay_type: 'fixed', log_level: 'error' }),
      binding('defaults', {
        metadata: '{"method":"put_record","stream_name":"s1","partition_key":"pk-default"}',
        log_level: 'debug',
      }),
      binding('raw', { metadata: '{"method":"put_record","stream_name":"s1","partition_key":"pk-raw"}' },
        { do_not_parse_payload: 'true' }),
    ];
    for (const b of bindings) b.target.properties = target;
    cfg = rig.writeConfig({ apiPort: 0, bindings });
    const r = await call('plain', { metadata: { method: 'create_stream', stream_name: 's1' } });
    assert.equal(r.reply.is_error, false, r.reply.error);
  });

  after(async () => {
    try {
      if (gate) assert.equal((await gate.stats()).sigFailures, 0, 'every request signed correctly');
    } finally {
      if (gate) await gate.stop();
      if (peer) await peer.stop();
      for (const h of [gate, peer]) if (h) assert.equal(rig.pidAlive(h.pid), false);
    }
  });

  it('retry_attempts 3 rides out two throttles: the third PutRecord succeeds', async () => {
    await gate.reset();
    await gate.fault({ op: 'PutRecord', kind: 'throttle', count: 2 });
    const r = await call('retry3', {
      metadata: { method: 'put_record', stream_name: 's1', partition_key: 'pk-retry' },
      data: b64('retried-once-written'),
    }, ['--log-level', 'info']);
    assert.equal(r.reply.is_error, false, r.reply.error);
    assert.equal(r.reply.metadata.result, 'ok');
    assert.match(r.reply.metadata.sequence_number, /^\d+$/);
    const s = await gate.stats();
    assert.equal(s.byOp.PutRecord, 3, 'two throttled calls, then the one that went through');
    assert.equal(s.faultsApplied, 2);
    // the retry log lines and the success line, carrying the binding name
    const warns = r.stderr.split('\n').filter((l) => /warn +\[retry3\] attempt \d of 3 failed/.test(l));
    assert.equal(warns.length, 2, r.stderr);
    assert.match(warns[0], /ProvisionedThroughputExceededException/);
    assert.match(r.stderr, /info +\[retry3\] request ok: method=put_record stream=s1 after 3 attempts \(\d+ ms\)/);
    assert.ok(!r.stderr.includes('retried-once-written') && !r.stderr.includes(b64('retried-once-written')),
      'record data is not logged at info');
    assert.ok(!r.stderr.includes(SK), 'no secret in the log');

    // written exactly once
    const it = await call('plain', {
      metadata: { method: 'get_records', stream_name: 's1', limit: '1000' },
    });
    const recs = JSON.parse(Buffer.from(it.reply.data, 'base64')).Records;
    const mine = recs.filter((x) => Buffer.from(x.Data, 'base64').toString() === 'retried-once-written');
    assert.equal(mine.length, 1);
  });

  it('retry_attempts 2 against two throttles fails with the throttling error (after 2 attempts)', async () => {
    await gate.reset();
    await gate.fault({ op: 'PutRecord', kind: 'throttle', count: 2 });
    const r = await call('retry2', {
      metadata: { method: 'put_record', stream_name: 's1', partition_key: 'pk' },
      data: b64('never-written'),
    }, ['--log-level', 'info']);
    assert.equal(r.reply.is_error, true);
    assert.match(r.reply.error, /^ProvisionedThroughputExceededException: .+ \(after 2 attempts\)$/);
    assert.doesNotMatch(r.reply.error, /All attempts fail/);
    assert.equal(await putCount(), 2);
    // log_level error: the failure line only, no retry warnings
    assert.match(r.stderr, /error \[retry2\] request failed: method=put_record stream=s1 \(\d+ ms\): ProvisionedThroughputExceededException/);
    assert.doesNotMatch(r.stderr, /attempt 1 of 2/);
    assert.doesNotMatch(r.stderr, /request ok/);
  });

  it('put_records: a throttled PutRecords call (nothing written) is retried, records written once', async () => {
    await gate.reset();
    await gate.fault({ op: 'PutRecords', kind: 'throttle', count: 2 });
    const recs = [{ partition_key: 'a', data: b64('batch-rec-1') }, { partition_key: 'b', data: b64('batch-rec-2') }];
    const r = await call('retry3', {
      metadata: { method: 'put_records', stream_name: 's1' },
      data: b64(JSON.stringify(recs)),
    });
    assert.equal(r.reply.is_error, false, r.reply.error);
    assert.equal(r.reply.metadata.failed_record_count, '0');
    assert.equal((await gate.stats()).byOp.PutRecords, 3);
    const it = await call('plain', { metadata: { method: 'get_records', stream_name: 's1', limit: '1000' } });
    const texts = JSON.parse(Buffer.from(it.reply.data, 'base64')).Records
      .map((x) => Buffer.from(x.Data, 'base64').toString());
    assert.equal(texts.filter((t) => t === 'batch-rec-1').length, 1);
    assert.equal(texts.filter((t) => t === 'batch-rec-2').length, 1);
  });

  it('a validation error is answered at once, without calling AWS or retrying', async () => {
    await gate.reset();
    const r = await call('retry3', { metadata: { method: 'put_record', partition_key: 'pk' }, data: b64('x') });
    assert.equal(r.reply.is_error, true);
    assert.match(r.reply.error, /stream_name/);
    assert.doesNotMatch(r.reply.error, /after \d+ attempts/);
    assert.equal((await gate.stats()).total, 0, 'the gate saw no request');
  });

  it('a non-retryable AWS error (unknown stream) is not retried', async () => {
    await gate.reset();
    const r = await call('retry3', {
      metadata: { method: 'put_record', stream_name: 'no-such-stream', partition_key: 'pk' },
      data: b64('x'),
    });
    assert.equal(r.reply.is_error, true);
    assert.match(r.reply.error, /^ResourceNotFoundException: /);
    assert.doesNotMatch(r.reply.error, /after \d+ attempts/);
    assert.equal(await putCount(), 1);
  });

  it('metadata defaults fill method, stream_name and partition_key; the caller\'s values win', async () => {
    await gate.reset();
    const r1 = await call('defaults', { data: b64('from-defaults') }, ['--log-level', 'info']);
    assert.equal(r1.reply.is_error, false, r1.reply.error);
    const r2 = await call('defaults', { metadata: { partition_key: 'pk-mine' }, data: b64('mine') });
    assert.equal(r2.reply.is_error, false, r2.reply.error);
    const puts = (await gate.log()).filter((e) => e.op === 'PutRecord');
    assert.equal(puts.length, 2);
    const bodies = puts.map((e) => (typeof e.body === 'string' ? JSON.parse(e.body) : e.body));
    assert.equal(bodies[0].StreamName, 's1');
    assert.equal(bodies[0].PartitionKey, 'pk-default');
    assert.equal(Buffer.from(bodies[0].Data, 'base64').toString(), 'from-defaults');
    assert.equal(bodies[1].StreamName, 's1');
    assert.equal(bodies[1].PartitionKey, 'pk-mine');
    // log_level debug: metadata, sizes and (only here) the data
    assert.match(r1.stderr, /info +\[defaults\] request ok: method=put_record stream=s1 \(\d+ ms\); request metadata \{"method":"put_record","partition_key":"pk-default","stream_name":"s1"\}, 13 bytes of data \(base64\) /);
    assert.ok(r1.stderr.includes(b64('from-defaults')));
  });

  it('do_not_parse_payload: the whole body is the record, method and stream from the binding', async () => {
    await gate.reset();
    const body = 'raw body, not JSON {';
    const r = await call('raw', body);
    assert.equal(r.reply.is_error, false, r.reply.error);
    const puts = (await gate.log()).filter((e) => e.op === 'PutRecord');
    assert.equal(puts.length, 1);
    const sent = typeof puts[0].body === 'string' ? JSON.parse(puts[0].body) : puts[0].body;
    assert.equal(sent.StreamName, 's1');
    assert.equal(Buffer.from(sent.Data, 'base64').toString(), body);
  });

  it('log_level "" writes no per-request line', async () => {
    const r = await call('plain', { metadata: { method: 'list_streams' } }, ['--log-level', 'info']);
    assert.equal(r.reply.is_error, false, r.reply.error);
    assert.doesNotMatch(r.stderr, /request ok|request failed/);
  });
});
