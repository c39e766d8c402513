'use strict';
// aws.kinesis under faults injected by the gate (throttling, partial
// PutRecords failures, 5xx, dropped connections, expired iterators) and with
// a wrong secret, against both stand-ins (kinesis-local writes absent members
// as null, "ErrorCode":null on every written entry); with nothing listening,
// and with bad requests that must be answered without any network call.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const rig = require('../rig/lib');
const {
  PEERS, start, dataOf, ok, fails, b64, req, readAll, AK,
} = require('./kinesis_lib');

for (const P of PEERS) describe(`aws.kinesis faults against ${P.name}`, () => {
  let k;
  before(async () => {
    k = await start({
      local: P.local,
      extraBindings: [
        { name: 'wrong-secret', props: { aws_secret_key: 'not-the-secret' } },
        { name: 'one-attempt', props: { max_attempts: '1' } },
      ],
    });
    ok(await k.call(req({ method: 'create_stream', stream_name: 'f1' })));
  });
  after(async () => {
    if (!k) return;
    try {
      // The wrong-secret test resets the gate after its one expected failure.
      assert.equal((await k.gate.stats()).sigFailures, 0, 'every other request passed the signature check');
    } finally {
      await k.stop();
    }
  });

  it('a throttled PutRecord is retried and then succeeds; the record is written once', async () => {
    ok(await k.call(req({ method: 'create_stream', stream_name: 'thr' })));
    await k.gate.reset();
    await k.gate.fault({ op: 'PutRecord', kind: 'throttle', count: 2 });
    const r = ok(await k.call(req({ method: 'put_record', stream_name: 'thr', partition_key: 'k' }, b64('once'))));
    assert.match(r.metadata.sequence_number, /^\d+$/);
    const s = await k.gate.stats();
    assert.equal(s.byOp.PutRecord, 3);
    assert.equal(s.faultsApplied, 2);
    assert.equal(s.sigFailures, 0);
    const all = await readAll(k.call, 'thr');
    assert.deepEqual(all.map((x) => Buffer.from(x.Data, 'base64').toString()), ['once']);
  });

  it('throttling past max_attempts is reported with the AWS error', async () => {
    await k.gate.reset();
    await k.gate.fault({ op: 'PutRecord', kind: 'throttle', count: 3 });
    const r = await k.call(req({ method: 'put_record', stream_name: 'f1', partition_key: 'k' }, b64('x')));
    fails(r, /^ProvisionedThroughputExceededException: /);
    assert.equal((await k.gate.stats()).byOp.PutRecord, 3);
  });

  it('partial PutRecords failure: only the failed entries are resent, each record is stored once', async () => {
    ok(await k.call(req({ method: 'create_stream', stream_name: 'part' })));
    await k.gate.reset();
    await k.gate.fault({ op: 'PutRecords', kind: 'partial', fail: [1, 3], count: 1 });
    const arr = [];
    for (let i = 0; i < 6; i++) arr.push({ partition_key: `k${i}`, data: b64(`p${i}`) });
    const r = ok(await k.call(req({ method: 'put_records', stream_name: 'part' }, b64(JSON.stringify(arr)))));
    assert.equal(r.metadata.failed_record_count, '0');
    const d = dataOf(r);
    assert.equal(d.FailedRecordCount, 0);
    assert.equal(d.Records.length, 6);
    for (const rec of d.Records) assert.match(rec.SequenceNumber, /^\d+$/);
    const log = (await k.gate.log()).filter((e) => e.op === 'PutRecords');
    assert.equal(log.length, 2);
    assert.deepEqual(log[0].body.Records.map((x) => x.PartitionKey), ['k0', 'k1', 'k2', 'k3', 'k4', 'k5']);
    assert.deepEqual(log[1].body.Records.map((x) => x.PartitionKey), ['k1', 'k3'], 'exactly the failed entries');
    const all = await readAll(k.call, 'part');
    const got = all.map((x) => Buffer.from(x.Data, 'base64').toString()).sort();
    assert.deepEqual(got, ['p0', 'p1', 'p2', 'p3', 'p4', 'p5']);
    assert.equal((await k.gate.stats()).sigFailures, 0);
  });

  it('partial failure that persists is reported per record, never as result=ok', async () => {
    ok(await k.call(req({ method: 'create_stream', stream_name: 'part2' })));
    await k.gate.reset();
    await k.gate.fault({ op: 'PutRecords', kind: 'partial', fail: [1], code: 'InternalFailure', count: 1 });
    await k.gate.fault({ op: 'PutRecords', kind: 'partial', fail: [0], code: 'InternalFailure', count: 2 });
    const arr = [0, 1, 2, 3].map((i) => ({ partition_key: `k${i}`, data: b64(`q${i}`) }));
    const r = await k.call(req({ method: 'put_records', stream_name: 'part2' }, b64(JSON.stringify(arr))));
    fails(r, 'put_records: 1 of 4 records failed (InternalFailure)');
    assert.equal(r.metadata.failed_record_count, '1');
    assert.equal(r.metadata.result, undefined);
    const d = dataOf(r);
    assert.equal(d.FailedRecordCount, 1);
    assert.equal(d.Records[1].ErrorCode, 'InternalFailure');
    for (const i of [0, 2, 3]) assert.match(d.Records[i].SequenceNumber, /^\d+$/);
    const log = (await k.gate.log()).filter((e) => e.op === 'PutRecords');
    assert.deepEqual(log.map((e) => e.body.Records.length), [4, 1, 1]);
    const all = await readAll(k.call, 'part2');
    assert.deepEqual(all.map((x) => Buffer.from(x.Data, 'base64').toString()), ['q0', 'q2', 'q3']);
  });

  it('5xx answers are retried; when they persist the error says so', async () => {
    await k.gate.reset();
    await k.gate.fault({ op: 'DescribeStreamSummary', kind: 'status', status: 500, count: 2 });
    ok(await k.call(req({ method: 'describe_stream', stream_name: 'f1' })));
    assert.equal((await k.gate.stats()).byOp.DescribeStreamSummary, 3);

    await k.gate.reset();
    await k.gate.fault({ op: 'DescribeStreamSummary', kind: 'status', status: 503, count: 5 });
    fails(await k.call(req({ method: 'describe_stream', stream_name: 'f1' })), /^ServiceUnavailable/);
    assert.equal((await k.gate.stats()).byOp.DescribeStreamSummary, 3);
    await k.gate.reset();
  });

  it('max_attempts 1 turns AWS-level retries off', async () => {
    await k.gate.reset();
    await k.gate.fault({ op: 'ListStreams', kind: 'status', status: 500, count: 1 });
    fails(await k.call(req({ method: 'list_streams' }), 'one-attempt'), /^InternalFailure/);
    assert.equal((await k.gate.stats()).byOp.ListStreams, 1);
  });

  it('a dropped connection is retried', async () => {
    await k.gate.reset();
    await k.gate.fault({ op: 'ListShards', kind: 'drop', count: 1 });
    const r = ok(await k.call(req({ method: 'list_shards', stream_name: 'f1' })));
    assert.equal(dataOf(r).Shards.length, 1);
    assert.equal((await k.gate.stats()).byOp.ListShards, 2);
  });

  it('an expired iterator is reported as ExpiredIteratorException', async () => {
    const gi = ok(await k.call(req({ method: 'get_shard_iterator', stream_name: 'f1', shard_id: 'shardId-000000000000', shard_iterator_type: 'TRIM_HORIZON' })));
    await k.gate.fault({ op: 'GetRecords', kind: 'expired_iterator', count: 1 });
    fails(await k.call(req({ method: 'get_records', shard_iterator_id: gi.metadata.shard_iterator })), /^ExpiredIteratorException: /);
  });

  it('a wrong secret is rejected by the gate and reported clearly (not retried)', async () => {
    await k.gate.reset();
    const r = await k.call(req({ method: 'list_streams' }), 'wrong-secret');
    fails(r, /^InvalidSignatureException: The request signature we calculated does not match/);
    const s = await k.gate.stats();
    assert.equal(s.sigFailures, 1);
    assert.equal(s.total, 1);
    await k.gate.reset();
  });

});

describe('aws.kinesis: requests refused before any AWS call', () => {
  let k;
  before(async () => {
    k = await start({
      extraBindings: [
        { name: 'wrong-secret', props: { aws_secret_key: 'not-the-secret' } },
        { name: 'one-attempt', props: { max_attempts: '1' } },
      ],
    });
  });
  after(async () => {
    if (k) await k.stop();
  });

  it('connection refused is reported clearly and the process exits normally', async () => {
    const port = await rig.freePort();
    const cfg = rig.writeConfig({
      apiPort: 0,
      bindings: [require('./kinesis_lib').binding('down', {
        aws_key: AK, aws_secret_key: 'x', region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, max_attempts: '2',
      })],
    });
    const r = await rig.invoke(cfg, 'down', req({ method: 'list_streams' }), { env: k.env });
    assert.equal(r.code, 0, r.stderr);
    fails(r.reply, new RegExp(`^TransportError: .*(refused|connect).*127\\.0\\.0\\.1:${port}|^TransportError: .*127\\.0\\.0\\.1:${port}.*(refused|connect)`, 'i'));
    assert.equal(r.reply.metadata.result, undefined);
  });

  it('invoke: unknown binding or unreadable config exit 2; an oversized body gets an error reply', async () => {
    const nb = await rig.invoke(k.cfg, 'no-such-binding', req({ method: 'list_streams' }), { env: k.env });
    assert.equal(nb.code, 2);
    assert.equal(nb.stdout, '');
    assert.match(nb.stderr, /--binding: no binding named "no-such-binding" in .* \(have: kinesis, wrong-secret, one-attempt\)/);
    const nc = await rig.invoke('/nonexistent/kk.yaml', 'kinesis', req({ method: 'list_streams' }), { env: k.env });
    assert.equal(nc.code, 2);
    assert.match(nc.stderr, /nonexistent\/kk\.yaml/);
    await k.gate.reset();
    const huge = Buffer.alloc(100 * 1024 * 1024 + 1, 0x20);
    const r = await rig.invoke(k.cfg, 'kinesis', huge, { env: k.env });
    assert.equal(r.code, 0, r.stderr);
    fails(r.reply, 'request: body on stdin is larger than 104857600 bytes');
    assert.equal((await k.gate.stats()).total, 0);
  });

  it('bad requests: each gets its own specific error and no network call is made', async () => {
    await k.gate.reset();
    const pk257 = 'k'.repeat(257);
    const mib1 = Buffer.alloc(1048576, 0x61);
    const cases = [
      ['not json at all', 'request: the body is not a JSON request envelope; send {"metadata":{"method":"...",...},"data":...}'],
      [req({ method: 'fly' }), /^method: unknown method "fly"; valid methods: list_streams, create_stream, delete_stream, describe_stream, list_shards, list_stream_consumers, create_stream_consumer, get_shard_iterator, put_record, put_records, get_records, put, create$/],
      [req({}), /^stream: is required for put \(the default method when "method" is absent; valid methods: /],
      [req({ method: 'create_stream' }), 'stream_name: is required for create_stream'],
      [req({ method: 'create_stream', stream_name: 'no spaces' }), 'stream_name: may contain only letters, digits, \'_\', \'.\' and \'-\' ([a-zA-Z0-9_.-]{1,128}), got "no spaces"'],
      [req({ method: 'create_stream', stream_name: 's'.repeat(129) }), 'stream_name: must be 1 to 128 characters, got 129'],
      [req({ method: 'create_stream', stream_name: 'ok', shard_count: '0' }), 'shard_count: must be an integer from 1 to 100000, got "0"'],
      [req({ method: 'create_stream', stream_name: 'ok', shard_count: 'two' }), 'shard_count: must be an integer from 1 to 100000, got "two"'],
      [req({ method: 'create', partition_key: '1' }), 'stream: is required for create'],
      [req({ method: 'delete_stream' }), 'stream_name: is required for delete_stream'],
      [req({ method: 'delete_stream', stream_name: 'f1', enforce_consumer_deletion: 'yes please' }), 'enforce_consumer_deletion: must be true or false, got "yes please"'],
      [req({ method: 'describe_stream' }), 'stream_name: is required for describe_stream'],
      [req({ method: 'list_streams', limit: '0' }), 'limit: must be an integer from 1 to 10000, got "0"'],
      [req({ method: 'list_streams', limit: '10001' }), 'limit: must be an integer from 1 to 10000, got "10001"'],
      [req({ method: 'list_shards' }), 'stream_name: is required for list_shards (or stream_arn, or next_token from an earlier page)'],
      [req({ method: 'list_stream_consumers' }), 'stream_arn: is required for list_stream_consumers'],
      [req({ method: 'list_stream_consumers', stream_arn: 'stream/f1' }), 'stream_arn: must be an ARN ("arn:...", at most 2048 characters), got "stream/f1"'],
      [req({ method: 'create_stream_consumer', stream_arn: 'arn:aws:kinesis:us-east-1:000000000000:stream/f1' }), 'consumer_name: is required for create_stream_consumer'],
      [req({ method: 'create_stream_consumer', consumer_name: 'c' }), 'stream_arn: is required for create_stream_consumer'],
      [req({ method: 'get_shard_iterator', stream_name: 'f1', shard_iterator_type: 'LATEST' }), 'shard_id: is required for get_shard_iterator'],
      [req({ method: 'get_shard_iterator', stream_name: 'f1', shard_id: 'shardId-000000000000' }), 'shard_iterator_type: is required for get_shard_iterator'],
      [req({ method: 'get_shard_iterator', stream_name: 'f1', shard_id: 'shardId-000000000000', shard_iterator_type: 'NEWEST' }), 'shard_iterator_type: must be one of AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP, got "NEWEST"'],
      [req({ method: 'get_shard_iterator', stream_name: 'f1', shard_id: 'shardId-000000000000', shard_iterator_type: 'AFTER_SEQUENCE_NUMBER' }), 'starting_sequence_number: is required for get_shard_iterator with shard_iterator_type AFTER_SEQUENCE_NUMBER'],
      [req({ method: 'get_shard_iterator', stream_name: 'f1', shard_id: 'shardId-000000000000', shard_iterator_type: 'AT_SEQUENCE_NUMBER', starting_sequence_number: '12x' }), 'starting_sequence_number: must be a sequence number (digits, 0|[1-9][0-9]{0,128}), got "12x"'],
      [req({ method: 'get_shard_iterator', stream_name: 'f1', shard_id: 'shardId-000000000000', shard_iterator_type: 'AT_TIMESTAMP' }), 'timestamp: is required for get_shard_iterator with shard_iterator_type AT_TIMESTAMP'],
      [req({ method: 'get_shard_iterator', stream_name: 'f1', shard_id: 'shardId-000000000000', shard_iterator_type: 'AT_TIMESTAMP', timestamp: '31/01/2024' }), 'timestamp: must be an RFC 3339 date-time (2024-01-31T12:00:00Z) or epoch seconds, got "31/01/2024"'],
      [req({ method: 'put_record', stream_name: 'f1' }, b64('x')), 'partition_key: is required for put_record'],
      [req({ method: 'put_record', partition_key: 'k' }, b64('x')), 'stream_name: is required for put_record'],
      [req({ method: 'put_record', stream_name: 'f1', partition_key: 'k' }), 'data: is required for put_record (the record bytes, base64 in the envelope\'s "data")'],
      [req({ method: 'put_record', stream_name: 'f1', partition_key: pk257 }, b64('x')), 'partition_key: must be 1 to 256 characters, got 257'],
      [req({ method: 'put_record', stream_name: 'f1', partition_key: 'k' }, b64(mib1)), 'data: a record must be at most 1048576 bytes (data plus partition key), got 1048577'],
      [req({ method: 'put_record', stream_name: 'f1', partition_key: 'k', explicit_hash_key: '2e9' }, b64('x')), /^explicit_hash_key: must be a decimal integer from 0 to 2\^128-1/],
      [req({ method: 'put_record', stream_name: 'f1', stream: 'f2', partition_key: 'k' }, b64('x')), 'stream_name: conflicts with stream ("f1" vs "f2"); they are two spellings of one key'],
      [req({ method: 'put_records', stream_name: 'f1' }), 'data: is required for put_records (a JSON object or array of records)'],
      [req({ method: 'put_records', stream_name: 'f1' }, b64('[{"partition_key":"a","data":"QQ=="},{"partition_key":"b","data":"not base64!"}]')), 'data[1].data: record data is not valid base64 (standard alphabet, padded)'],
      [req({ method: 'put_records', stream_name: 'f1' }, { a: 'QQ==', b: '%%%' }), 'data["b"]: record data is not valid base64 (standard alphabet, padded)'],
      [req({ method: 'put_records', stream_name: 'f1' }, b64('[]')), 'data: put_records needs at least one record'],
      [req({ method: 'put_records', stream_name: 'f1' }, b64('just text')), /^data: put_records needs a JSON object .* or an array .*; not JSON: /],
      [req({ method: 'put_records', stream_name: 'f1' }, b64(JSON.stringify([{ partition_key: pk257, data: 'QQ==' }]))), 'data[0].partition_key: must be 1 to 256 characters, got 257'],
      [req({ method: 'get_records' }), 'shard_iterator_id: is required for get_records (or stream_name, with or without shard_id)'],
      [req({ method: 'get_records', stream_name: 'f1', limit: '0' }), 'limit: must be an integer from 1 to 10000, got "0"'],
      [req({ method: 'get_records', stream_name: 'f1', limit: '10001' }), 'limit: must be an integer from 1 to 10000, got "10001"'],
      [req({ method: 'get_records', stream_name: 'f1', shard_iterator_type: 'AT_SEQUENCE_NUMBER', starting_sequence_number: '1' }), 'shard_id: is required for get_records with shard_iterator_type AT_SEQUENCE_NUMBER (a sequence number belongs to one shard)'],
      ['{"metadata":{"method":"list_streams","limit":5}}', /^invalid request format, /],
    ];
    assert.ok(cases.length >= 20);
    for (const [envelope, error] of cases) {
      const r = await k.call(envelope);
      fails(r, error);
      assert.deepEqual(r.metadata, {});
      assert.equal(r.data, null);
    }
    const s = await k.gate.stats();
    assert.equal(s.total, 0, `no request reached the network: ${JSON.stringify(s.byOp)}`);
  });
});
