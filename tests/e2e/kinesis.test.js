'use strict';
// aws.kinesis through `kubemq-kinesis invoke` -> SigV4 gate -> kinesalite, and
// the same against kinesis-local (absent members written as null): the
// acceptance story, every data-plane method, records read back byte-exact,
// the examples of kubemq-targets' aws.kinesis README and of the older
// connector style (put/create), timestamps as kubemq-targets' Go connector
// wrote them, and the gate's signature check on every request.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('child_process');
const rig = require('../rig/lib');
const {
  PEERS, start, dataOf, ok, fails, b64, req, allBytes, readAll, sameTime,
} = require('./kinesis_lib');

for (const P of PEERS) describe(`aws.kinesis against ${P.name} through the gate`, () => {
  let k;
  before(async () => {
    k = await start({ local: P.local, extraBindings: [{ name: 'epoch', props: { timestamp_format: 'epoch' } }] });
  });
  // The two word "not found" their own way.
  const notFound = (stream) => (P.local
    ? new RegExp(`^ResourceNotFoundException: Stream arn arn:aws:kinesis:us-east-1:\\d+:stream/${stream.replace('.', '\\.')} not found$`)
    : new RegExp(`^ResourceNotFoundException: Stream ${stream.replace('.', '\\.')} under account \\d+ not found\\.$`));
  after(async () => {
    if (!k) return;
    try {
      const s = await k.gate.stats();
      assert.equal(s.sigFailures, 0, 'every request passed the signature check');
      assert.ok(s.total > 0);
    } finally {
      await k.stop();
    }
  });

  it('acceptance: create_stream from a shell pipe, then put/list/iterate/get byte-exact', async () => {
    const body = '{"metadata":{"method":"create_stream","stream_name":"s1","shard_count":"2"}}';
    const sh = spawnSync('sh', ['-c', `echo '${body}' | "$KK" invoke --config "$CFG" --binding kinesis`], {
      env: { ...process.env, ...k.env, KK: rig.binPath(), CFG: k.cfg }, encoding: 'utf8', timeout: 60000,
    });
    assert.equal(sh.status, 0, sh.stderr);
    assert.match(sh.stdout, /"result":"ok"/);
    const created = JSON.parse(sh.stdout);
    assert.deepEqual(created, { metadata: { result: 'ok' }, data: null, is_error: false, error: '' });

    const bytes = allBytes();
    const put = ok(await k.call(req({ method: 'put_record', stream_name: 's1', partition_key: 'pk-1' }, b64(bytes))));
    assert.match(put.metadata.shard_id, /^shardId-\d+$/);
    assert.match(put.metadata.sequence_number, /^\d+$/);
    const putData = dataOf(put);
    assert.equal(putData.ShardId, put.metadata.shard_id);
    assert.equal(putData.SequenceNumber, put.metadata.sequence_number);

    const streams = ok(await k.call(req({ method: 'list_streams' })));
    assert.ok(dataOf(streams).StreamNames.includes('s1'));

    const shards = dataOf(ok(await k.call(req({ method: 'list_shards', stream_name: 's1' }))));
    assert.deepEqual(shards.Shards.map((s) => s.ShardId), ['shardId-000000000000', 'shardId-000000000001']);

    const it1 = ok(await k.call(req({
      method: 'get_shard_iterator', stream_name: 's1', shard_id: put.metadata.shard_id,
      shard_iterator_type: 'TRIM_HORIZON',
    })));
    assert.ok(it1.metadata.shard_iterator.length > 20);
    assert.equal(dataOf(it1).ShardIterator, it1.metadata.shard_iterator);

    const got = ok(await k.call(req({ method: 'get_records', shard_iterator_id: it1.metadata.shard_iterator, limit: '10' })));
    const recs = dataOf(got).Records;
    assert.equal(recs.length, 1);
    assert.ok(Buffer.from(recs[0].Data, 'base64').equals(bytes), 'record comes back byte-exact');
    assert.equal(recs[0].PartitionKey, 'pk-1');
    assert.equal(recs[0].SequenceNumber, put.metadata.sequence_number);
    assert.ok(got.metadata.next_shard_iterator.length > 20);
    assert.equal(got.metadata.millis_behind_latest, '0');
  });

  it('describe_stream, list_streams paging, delete_stream', async () => {
    ok(await k.call(req({ method: 'create_stream', stream_name: 'pg.a' })));
    ok(await k.call(req({ method: 'create_stream', stream_name: 'pg.b', shard_count: '3' })));
    const d = dataOf(ok(await k.call(req({ method: 'describe_stream', stream_name: 'pg.b' }))));
    assert.equal(d.StreamDescriptionSummary.StreamName, 'pg.b');
    assert.equal(d.StreamDescriptionSummary.OpenShardCount, 3);
    assert.equal(d.StreamDescriptionSummary.StreamStatus, 'ACTIVE');

    const p1 = dataOf(ok(await k.call(req({ method: 'list_streams', limit: '1' }))));
    assert.equal(p1.StreamNames.length, 1);
    assert.equal(p1.HasMoreStreams, true);
    const p2 = dataOf(ok(await k.call(req({ method: 'list_streams', limit: '1', exclusive_start_stream_name: 'pg.a' }))));
    assert.deepEqual(p2.StreamNames, ['pg.b']);

    const del = ok(await k.call(req({ method: 'delete_stream', stream_name: 'pg.a' })));
    assert.equal(del.data, null);
    const gone = await k.call(req({ method: 'describe_stream', stream_name: 'pg.a' }));
    fails(gone, notFound('pg.a'));
  });

  it('put_records: kubemq-targets\' map format and the ordered array format, read back exactly once', async () => {
    ok(await k.call(req({ method: 'create_stream', stream_name: 'batch', shard_count: '2' })));
    // kubemq-targets' map: JSON object partition key -> base64 record, the whole object base64'd.
    const map = { a: b64('rec-a'), b: b64(Buffer.from([0, 255, 1, 254])) };
    const r1 = ok(await k.call(req({ method: 'put_records', stream_name: 'batch' }, b64(JSON.stringify(map)))));
    assert.equal(r1.metadata.failed_record_count, '0');
    const d1 = dataOf(r1);
    assert.equal(d1.FailedRecordCount, 0);
    assert.equal(d1.Records.length, 2);
    // Array format: several records per key, in order, with an explicit hash key.
    const arr = [];
    for (let i = 0; i < 20; i++) arr.push({ partition_key: `k${i % 3}`, data: b64(`arr-${i}`) });
    arr.push({ partition_key: 'x', data: b64(allBytes()), explicit_hash_key: '0' });
    const r2 = ok(await k.call(req({ method: 'put_records', stream_name: 'batch' }, b64(JSON.stringify(arr)))));
    const d2 = dataOf(r2);
    assert.equal(d2.Records.length, 21);
    assert.equal(d2.Records[20].ShardId, 'shardId-000000000000', 'hash key 0 lands on the first shard');
    // A JSON object straight in `data` (not base64'd) works too.
    ok(await k.call(req({ method: 'put_records', stream_name: 'batch' }, { c: b64('rec-c') })));

    const all = await readAll(k.call, 'batch');
    const texts = all.map((r) => Buffer.from(r.Data, 'base64'));
    assert.equal(all.length, 24, 'each record exactly once');
    const seqs = new Set(all.map((r) => r.SequenceNumber));
    assert.equal(seqs.size, 24);
    for (let i = 0; i < 20; i++) {
      assert.equal(texts.filter((t) => t.toString() === `arr-${i}`).length, 1, `arr-${i} once`);
    }
    assert.ok(texts.some((t) => t.equals(allBytes())));
    assert.ok(texts.some((t) => t.equals(Buffer.from([0, 255, 1, 254]))));
    // Order per partition key is kept.
    for (const key of ['k0', 'k1', 'k2']) {
      const mine = all.filter((r) => r.PartitionKey === key).map((r) => Number(Buffer.from(r.Data, 'base64').toString().slice(4)));
      assert.deepEqual(mine, [...mine].sort((x, y) => x - y), `order of ${key}`);
    }
    for (const r of all) assert.match(r.ShardId, /^shardId-00000000000[01]$/);
  });

  it('put_records over 500 records is split into several PutRecords calls', async () => {
    ok(await k.call(req({ method: 'create_stream', stream_name: 'big' })));
    await k.gate.reset();
    const arr = [];
    for (let i = 0; i < 1100; i++) arr.push({ partition_key: `p${i}`, data: b64(`r${i}`) });
    const r = ok(await k.call(req({ method: 'put_records', stream_name: 'big' }, b64(JSON.stringify(arr)))));
    assert.equal(dataOf(r).Records.length, 1100);
    const s = await k.gate.stats();
    assert.equal(s.byOp.PutRecords, 3);
    const log = (await k.gate.log()).filter((e) => e.op === 'PutRecords');
    assert.deepEqual(log.map((e) => e.body.Records.length), [500, 500, 100]);
    const back = await readAll(k.call, 'big');
    assert.deepEqual(back.map((x) => Buffer.from(x.Data, 'base64').toString()), arr.map((_, i) => `r${i}`));
  });

  it('get_records: iterator types, stream+shard form, stream-only form across shards', async () => {
    ok(await k.call(req({ method: 'create_stream', stream_name: 'it', shard_count: '2' })));
    const before = new Date(Date.now() - 2000).toISOString();
    const seqs = [];
    let between;
    for (let i = 0; i < 4; i++) {
      if (i === 2) {
        // Epoch seconds with a fraction, between the second and third put.
        await rig.sleep(1100);
        between = (Date.now() / 1000).toFixed(3);
        await rig.sleep(100);
      }
      const r = ok(await k.call(req({ method: 'put_record', stream_name: 'it', partition_key: 'same', explicit_hash_key: '0' }, b64(`v${i}`))));
      assert.equal(r.metadata.shard_id, 'shardId-000000000000');
      seqs.push(r.metadata.sequence_number);
    }
    ok(await k.call(req({ method: 'put_record', stream_name: 'it', partition_key: 'other',
      explicit_hash_key: '340282366920938463463374607431768211455' }, b64('last-shard'))));
    const values = (reply) => dataOf(reply).Records.map((r) => Buffer.from(r.Data, 'base64').toString());
    const shard0 = { method: 'get_records', stream_name: 'it', shard_id: 'shardId-000000000000', limit: '100' };

    assert.deepEqual(values(ok(await k.call(req(shard0)))), ['v0', 'v1', 'v2', 'v3']);
    assert.deepEqual(values(ok(await k.call(req({ ...shard0, shard_iterator_type: 'AT_SEQUENCE_NUMBER', starting_sequence_number: seqs[1] })))), ['v1', 'v2', 'v3']);
    assert.deepEqual(values(ok(await k.call(req({ ...shard0, shard_iterator_type: 'AFTER_SEQUENCE_NUMBER', starting_sequence_number: seqs[1] })))), ['v2', 'v3']);
    assert.deepEqual(values(ok(await k.call(req({ ...shard0, shard_iterator_type: 'AT_TIMESTAMP', timestamp: before })))), ['v0', 'v1', 'v2', 'v3']);
    assert.deepEqual(values(ok(await k.call(req({ ...shard0, shard_iterator_type: 'AT_TIMESTAMP', timestamp: between })))), ['v2', 'v3']);
    const latest = ok(await k.call(req({ ...shard0, shard_iterator_type: 'LATEST' })));
    assert.deepEqual(values(latest), []);
    assert.ok(latest.metadata.next_shard_iterator);

    // get_shard_iterator with AT_SEQUENCE_NUMBER, then get_records by iterator (alias shard_iterator).
    const gi = ok(await k.call(req({ method: 'get_shard_iterator', stream_name: 'it', shard_id: 'shardId-000000000000',
      shard_iterator_type: 'AT_SEQUENCE_NUMBER', starting_sequence_number: seqs[3] })));
    assert.deepEqual(values(ok(await k.call(req({ method: 'get_records', shard_iterator: gi.metadata.shard_iterator, limit: '5' })))), ['v3']);

    // Stream-only form: every shard in ListShards order until `limit` records in all.
    const all = ok(await k.call(req({ method: 'get_records', stream_name: 'it', limit: '100' })));
    const d = dataOf(all);
    assert.deepEqual(d.Records.map((r) => Buffer.from(r.Data, 'base64').toString()), ['v0', 'v1', 'v2', 'v3', 'last-shard']);
    assert.deepEqual(d.Records.map((r) => r.ShardId), ['shardId-000000000000', 'shardId-000000000000',
      'shardId-000000000000', 'shardId-000000000000', 'shardId-000000000001']);
    assert.deepEqual(d.Shards.map((s) => s.ShardId), ['shardId-000000000000', 'shardId-000000000001']);
    for (const s of d.Shards) assert.ok(s.NextShardIterator.length > 20);
    assert.equal(all.metadata.millis_behind_latest, '0');
    // The next iterator from the data continues where the read stopped.
    const more = ok(await k.call(req({ method: 'get_records', shard_iterator_id: d.Shards[1].NextShardIterator })));
    assert.deepEqual(values(more), []);

    // limit 3 stops inside the first shard; the default limit is 1.
    const three = dataOf(ok(await k.call(req({ method: 'get_records', stream_name: 'it', limit: '3' }))));
    assert.equal(three.Records.length, 3);
    assert.equal(three.Shards.length, 1);
    assert.equal(dataOf(ok(await k.call(req({ method: 'get_records', stream_name: 'it' })))).Records.length, 1);
  });

  it('the examples of kubemq-targets\' aws.kinesis README work as written (names adapted)', async () => {
    ok(await k.call({ metadata: { method: 'list_streams' }, data: null }));
    ok(await k.call({ metadata: { method: 'create_stream', stream_name: 'my_stream', shard_count: '1' }, data: null }));
    const shards = dataOf(ok(await k.call({ metadata: { method: 'list_shards', stream_name: 'my_stream' }, data: null })));
    const shardId = shards.Shards[0].ShardId;
    const gi = ok(await k.call({ metadata: { method: 'get_shard_iterator', shard_iterator_type: 'LATEST', stream_name: 'my_stream', shard_id: shardId }, data: null }));
    const put = ok(await k.call({ metadata: { method: 'put_record', partition_key: '0356', stream_name: 'my_stream' }, data: 'eyJteV9yZXN1bHQiOiJvayJ9' }));
    assert.equal(put.metadata.shard_id, shardId);
    const puts = ok(await k.call({ metadata: { method: 'put_records', stream_name: 'my_stream' },
      data: 'eyIxIjoiZXlKdGVWOXlaWE4xYkhRaU9pSnZheUo5IiwiMiI6ImV5SnRlVjl5WlhOMWJIUXlJam9pYjJzaEluMD0ifQ==' }));
    assert.equal(puts.metadata.failed_record_count, '0');
    // That README's get_records example names put_records by mistake; as get_records it reads the stream.
    const got = ok(await k.call({ metadata: { method: 'get_records', stream_name: 'my_stream', limit: '1' }, data: null }));
    assert.deepEqual(dataOf(got).Records.map((r) => Buffer.from(r.Data, 'base64').toString()), ['{"my_result":"ok"}']);
    // The LATEST iterator taken before the puts sees all three records.
    const after = ok(await k.call({ metadata: { method: 'get_records', shard_iterator_id: gi.metadata.shard_iterator, limit: '10' }, data: null }));
    assert.deepEqual(dataOf(after).Records.map((r) => Buffer.from(r.Data, 'base64').toString()),
      ['{"my_result":"ok"}', '{"my_result":"ok"}', '{"my_result2":"ok!"}']);
  });

  it('the older connector style\'s put/create examples work as written', async () => {
    const created = ok(await k.call({ metadata: { stream: 'test', method: 'create', partition_key: '1' }, data: null }));
    assert.equal(created.data, null);
    const put = ok(await k.call({ metadata: { stream: 'test', method: 'put', shard_count: '1' }, data: 'eyJtZXNzYWdlIjoidGVzdCJ9' }));
    assert.match(put.metadata.sequence_number, /^\d+$/);
    // No method at all: put is the default.
    ok(await k.call({ metadata: { stream: 'test', partition_key: 'p2' }, data: b64('second') }));
    const all = await readAll(k.call, 'test');
    assert.deepEqual(all.map((r) => Buffer.from(r.Data, 'base64').toString()), ['{"message":"test"}', 'second']);
    assert.match(all[0].PartitionKey, /^[0-9a-f]{32}$/, 'a random partition key');
    assert.equal(all[1].PartitionKey, 'p2');
  });

  it('timestamps: Go RFC 3339 in every reply, the values the service answered; epoch on request', async () => {
    ok(await k.call(req({ method: 'create_stream', stream_name: 'ts', shard_count: '2' })));
    const p = [];
    for (let i = 0; i < 6; i++) {
      p.push(ok(await k.call(req({ method: 'put_record', stream_name: 'ts', partition_key: `t${i}` }, b64(`t${i}`)))));
    }
    // describe_stream: StreamCreationTimestamp.
    const d = dataOf(ok(await k.call(req({ method: 'describe_stream', stream_name: 'ts' }))));
    const dd = await k.direct('DescribeStreamSummary', { StreamName: 'ts' });
    sameTime(d.StreamDescriptionSummary.StreamCreationTimestamp, dd.StreamDescriptionSummary.StreamCreationTimestamp,
      'StreamCreationTimestamp');
    // get_records, all three forms: each record's ApproximateArrivalTimestamp.
    const arrival = new Map();
    for (const s of (await k.direct('ListShards', { StreamName: 'ts' })).Shards) {
      const it = (await k.direct('GetShardIterator', { StreamName: 'ts', ShardId: s.ShardId, ShardIteratorType: 'TRIM_HORIZON' })).ShardIterator;
      for (const r of (await k.direct('GetRecords', { ShardIterator: it, Limit: 100 })).Records) {
        arrival.set(r.SequenceNumber, r.ApproximateArrivalTimestamp);
      }
    }
    assert.equal(arrival.size, 6);
    const check = (records) => {
      assert.ok(records.length > 0);
      for (const r of records) sameTime(r.ApproximateArrivalTimestamp, arrival.get(r.SequenceNumber), `record ${r.SequenceNumber}`);
    };
    check(dataOf(ok(await k.call(req({ method: 'get_records', stream_name: 'ts', limit: '100' })))).Records);
    check(dataOf(ok(await k.call(req({ method: 'get_records', stream_name: 'ts', shard_id: p[0].metadata.shard_id, limit: '100' })))).Records);
    const gi = ok(await k.call(req({ method: 'get_shard_iterator', stream_name: 'ts', shard_id: p[0].metadata.shard_id, shard_iterator_type: 'TRIM_HORIZON' })));
    check(dataOf(ok(await k.call(req({ method: 'get_records', shard_iterator_id: gi.metadata.shard_iterator, limit: '100' })))).Records);
    // timestamp_format: epoch gives the service's seconds as they came.
    const e = dataOf(ok(await k.call(req({ method: 'get_records', stream_name: 'ts', limit: '100' }), 'epoch')));
    for (const r of e.Records) assert.equal(r.ApproximateArrivalTimestamp, arrival.get(r.SequenceNumber));
    const de = dataOf(ok(await k.call(req({ method: 'describe_stream', stream_name: 'ts' }), 'epoch')));
    assert.equal(de.StreamDescriptionSummary.StreamCreationTimestamp, dd.StreamDescriptionSummary.StreamCreationTimestamp);
  });

  it('AWS errors come back as "<Type>: <message>"', async () => {
    fails(await k.call(req({ method: 'create_stream', stream_name: 's1' })), /^ResourceInUseException: /);
    fails(await k.call(req({ method: 'put_record', stream_name: 'nope', partition_key: 'k' }, b64('x'))),
      notFound('nope'));
    // kinesis-local answers a malformed iterator with an empty HTTP 500 (its bug),
    // retried and then reported as it came.
    fails(await k.call(req({ method: 'get_records', shard_iterator_id: 'not-an-iterator' })),
      P.local ? 'HTTP500: HTTP status 500 with an empty body' : /^InvalidArgumentException: /);
  });
});
