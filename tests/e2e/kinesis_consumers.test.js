'use strict';
// aws.kinesis methods that need stream ARNs and consumers, against
// kinesis-local (kinesalite has no consumer API, nor ListShards by ARN)
// through the SigV4 gate. The data-plane methods run against both stand-ins
// in kinesis.test.js.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const {
  start, dataOf, ok, fails, b64, req, allBytes, sameTime,
} = require('./kinesis_lib');

describe('aws.kinesis against kinesis-local: ARNs and consumers', () => {
  let k;
  let arn;
  before(async () => {
    k = await start({ local: true });
    ok(await k.call(req({ method: 'create_stream', stream_name: 'cons', shard_count: '3' })));
    const d = dataOf(ok(await k.call(req({ method: 'describe_stream', stream_name: 'cons' }))));
    arn = d.StreamDescriptionSummary.StreamARN;
    assert.match(arn, /^arn:aws:kinesis:us-east-1:\d{12}:stream\/cons$/);
  });
  after(async () => {
    if (!k) return;
    try {
      assert.equal((await k.gate.stats()).sigFailures, 0, 'every request passed the signature check');
    } finally {
      await k.stop();
    }
  });

  it('list_shards by stream_arn and page by page with next_token', async () => {
    const byArn = dataOf(ok(await k.call(req({ method: 'list_shards', stream_arn: arn }))));
    assert.equal(byArn.Shards.length, 3);
    const first = dataOf(ok(await k.call(req({ method: 'list_shards', stream_name: 'cons', limit: '2' }))));
    assert.equal(first.Shards.length, 2);
    assert.ok(first.NextToken);
    // stream_name stays in the request metadata: AWS forbids it with NextToken, so it is not sent.
    await k.gate.reset();
    const second = dataOf(ok(await k.call(req({ method: 'list_shards', stream_name: 'cons', next_token: first.NextToken, limit: '2' }))));
    assert.deepEqual(second.Shards.map((s) => s.ShardId), [byArn.Shards[2].ShardId]);
    const log = (await k.gate.log()).filter((e) => e.op === 'ListShards');
    assert.equal(log.length, 1);
  });

  it('create_stream_consumer and list_stream_consumers (kubemq-targets\' README example, ARN adapted)', async () => {
    const c = dataOf(ok(await k.call(req({ method: 'create_stream_consumer', stream_arn: arn, consumer_name: 'my_consumer' }))));
    assert.equal(c.Consumer.ConsumerName, 'my_consumer');
    assert.match(c.Consumer.ConsumerARN, /consumer\/my_consumer/);
    const l = dataOf(ok(await k.call({ metadata: { method: 'list_stream_consumers', stream_arn: arn }, data: null })));
    assert.deepEqual(l.Consumers.map((x) => x.ConsumerName), ['my_consumer']);
    // ConsumerCreationTimestamp as Go wrote it, the value the service has.
    const own = (await k.direct('ListStreamConsumers', { StreamARN: arn })).Consumers[0];
    sameTime(c.Consumer.ConsumerCreationTimestamp, own.ConsumerCreationTimestamp, 'create_stream_consumer');
    sameTime(l.Consumers[0].ConsumerCreationTimestamp, own.ConsumerCreationTimestamp, 'list_stream_consumers');
    const limited = dataOf(ok(await k.call(req({ method: 'list_stream_consumers', stream_arn: arn, limit: '1' }))));
    assert.equal(limited.Consumers.length, 1);
    fails(await k.call(req({ method: 'create_stream_consumer', stream_arn: arn, consumer_name: 'my_consumer' })), /^ResourceInUseException: /);
  });

  it('put_record and get_records round-trip byte-exact on kinesis-local too', async () => {
    const bytes = allBytes();
    const p = ok(await k.call(req({ method: 'put_record', stream_name: 'cons', partition_key: 'pk' }, b64(bytes))));
    const g = ok(await k.call(req({ method: 'get_records', stream_name: 'cons', shard_id: p.metadata.shard_id,
      shard_iterator_type: 'AT_SEQUENCE_NUMBER', starting_sequence_number: p.metadata.sequence_number })));
    const recs = dataOf(g).Records;
    assert.equal(recs.length, 1);
    assert.ok(Buffer.from(recs[0].Data, 'base64').equals(bytes));
  });

  it('delete_stream with enforce_consumer_deletion removes a stream that has consumers', async () => {
    ok(await k.call(req({ method: 'delete_stream', stream_name: 'cons', enforce_consumer_deletion: 'true' })));
    const log = (await k.gate.log()).filter((e) => e.op === 'DeleteStream');
    assert.ok(log.length >= 1);
    // kinesis-local deletes asynchronously; the stream is DELETING or gone.
    const d = await k.call(req({ method: 'describe_stream', stream_name: 'cons' }));
    if (!d.is_error) assert.equal(dataOf(d).StreamDescriptionSummary.StreamStatus, 'DELETING');
    else fails(d, /^ResourceNotFoundException: /);
  });
});
