'use strict';
// The daemon end to end: kubemq-js queries and commands -> stand-in broker ->
// kubemq-kinesis -> SigV4 gate -> kinesalite. Every method of aws.kinesis, errors as
// envelope + KubeMQ-level error, commands, the HTTP API on the running daemon, and the
// issue's acceptance story with examples/local.yaml.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const {
  cleanups, startPeers, binding, startDaemon, dataOf, ok, fails, b64, req, linesOf, rig, kubemq, CLEAN_ENV,
} = require('./daemon_lib');

const AUTH = 'broker-token-e2e-0123456789';

// Every byte value, twice, in a scrambled order.
function allBytes() {
  const b = Buffer.alloc(512);
  for (let i = 0; i < 512; i++) b[i] = (i * 37 + 11) & 0xff;
  return b;
}

describe('daemon: aws.kinesis methods through KubeMQ queries', () => {
  const c = cleanups();
  let peers;
  let daemon;
  let client;
  let apiPort;
  const q = (body, opts) => client.query('query.kinesis', body, opts);
  const readAll = async (stream) =>
    dataOf(ok(await q(req({ method: 'get_records', stream_name: stream, limit: '10000' })))).Records;

  before(async () => {
    peers = await startPeers(c, { authToken: AUTH });
    apiPort = await rig.freePort();
    const config = {
      apiPort,
      apiEnableRequest: true,
      bindings: [
        binding('kinesis', {
          address: peers.broker.address, channel: 'query.kinesis',
          source: { auth_token: AUTH, client_id: 'kk-e2e' }, target: peers.targetProps,
        }),
        binding('kinesis-cmd', {
          kind: 'kubemq.command', address: peers.broker.address, channel: 'command.kinesis',
          source: { auth_token: AUTH }, target: peers.targetProps,
        }),
      ],
    };
    daemon = await startDaemon(c, peers.broker, config);
    client = kubemq.openClient(peers.broker.address, { authToken: AUTH, clientId: 'e2e-requester' });
    c.add(() => client.close());
  });
  after(async () => {
    try {
      const s = await peers.gate.stats();
      assert.equal(s.sigFailures, 0, 'every AWS request passed the signature check');
    } finally {
      await c.run();
    }
  });

  it('create/describe/list/put/iterate/get: records read back byte-exact', async () => {
    const created = ok(await q(req({ method: 'create_stream', stream_name: 's1', shard_count: '2' })));
    assert.deepEqual(created, { metadata: { result: 'ok' }, data: null, is_error: false, error: '' });

    const d = dataOf(ok(await q(req({ method: 'describe_stream', stream_name: 's1' }))));
    assert.equal(d.StreamDescriptionSummary.StreamName, 's1');
    assert.equal(d.StreamDescriptionSummary.OpenShardCount, 2);

    assert.ok(dataOf(ok(await q(req({ method: 'list_streams' })))).StreamNames.includes('s1'));
    const shards = dataOf(ok(await q(req({ method: 'list_shards', stream_name: 's1' }))));
    assert.deepEqual(shards.Shards.map((s) => s.ShardId), ['shardId-000000000000', 'shardId-000000000001']);

    const bytes = allBytes();
    const put = ok(await q(req({ method: 'put_record', stream_name: 's1', partition_key: 'pk-1' }, b64(bytes))));
    assert.match(put.metadata.shard_id, /^shardId-\d+$/);
    assert.match(put.metadata.sequence_number, /^\d+$/);

    const it1 = ok(await q(req({
      method: 'get_shard_iterator', stream_name: 's1', shard_id: put.metadata.shard_id, shard_iterator_type: 'TRIM_HORIZON',
    })));
    const got = ok(await q(req({ method: 'get_records', shard_iterator_id: it1.metadata.shard_iterator, limit: '10' })));
    const recs = dataOf(got).Records;
    assert.equal(recs.length, 1);
    assert.ok(Buffer.from(recs[0].Data, 'base64').equals(bytes), 'the record comes back byte-exact');
    assert.equal(recs[0].PartitionKey, 'pk-1');
    assert.equal(recs[0].SequenceNumber, put.metadata.sequence_number);

    // What kinesalite holds, asked directly (signed by the rig, not by us).
    const direct = await rig.kinesisCall(peers.kin.url, 'GetShardIterator',
      { StreamName: 's1', ShardId: put.metadata.shard_id, ShardIteratorType: 'TRIM_HORIZON' },
      { accessKey: 'x', secretKey: 'y' });
    const held = await rig.kinesisCall(peers.kin.url, 'GetRecords', { ShardIterator: direct.json.ShardIterator },
      { accessKey: 'x', secretKey: 'y' });
    assert.equal(held.json.Records.length, 1);
    assert.ok(Buffer.from(held.json.Records[0].Data, 'base64').equals(bytes));
  });

  it('put_records (array and map forms) and the older connector style\'s put/create spellings', async () => {
    ok(await q(req({ method: 'create_stream', stream_name: 'batch' })));
    const arr = [{ partition_key: 'a', data: b64('rec-1') }, { partition_key: 'b', data: b64(Buffer.from([0, 255, 10])) }];
    const r1 = ok(await q(req({ method: 'put_records', stream_name: 'batch' }, b64(JSON.stringify(arr)))));
    assert.equal(dataOf(r1).FailedRecordCount, 0);
    const r2 = ok(await q(req({ method: 'put_records', stream_name: 'batch' }, b64(JSON.stringify({ k3: b64('rec-3') })))));
    assert.equal(dataOf(r2).Records.length, 1);
    const all = await readAll('batch');
    assert.deepEqual(all.map((r) => Buffer.from(r.Data, 'base64').toString('hex')),
      [Buffer.from('rec-1').toString('hex'), '00ff0a', Buffer.from('rec-3').toString('hex')]);
    assert.deepEqual(all.map((r) => r.PartitionKey), ['a', 'b', 'k3']);

    ok(await q({ metadata: { stream: 'legacy', method: 'create', partition_key: '1' }, data: null }));
    ok(await q({ metadata: { stream: 'legacy', method: 'put', shard_count: '1' }, data: 'eyJtZXNzYWdlIjoidGVzdCJ9' }));
    const legacy = await readAll('legacy');
    assert.deepEqual(legacy.map((r) => Buffer.from(r.Data, 'base64').toString()), ['{"message":"test"}']);
  });

  it('delete_stream, then a failing request: is_error and the KubeMQ-level error', async () => {
    ok(await q(req({ method: 'create_stream', stream_name: 'gone' })));
    ok(await q(req({ method: 'delete_stream', stream_name: 'gone' })));
    const listed = await rig.kinesisCall(peers.kin.url, 'ListStreams', {}, { accessKey: 'x', secretKey: 'y' });
    assert.ok(!listed.json.StreamNames.includes('gone'), 'kinesalite no longer has the stream');
    const r = await q(req({ method: 'describe_stream', stream_name: 'gone' }));
    fails(r, /^ResourceNotFoundException: /);
    // Client-side validation errors travel the same way.
    fails(await q(req({ method: 'put_record', stream_name: 's1' }, b64('x'))), /partition_key/);
    fails(await q(req({ method: 'nope' })), /unknown method "nope"/);
  });

  it('a body that is no envelope is answered with an error, never dropped', async () => {
    fails(await q(Buffer.from('definitely not json')), /not a JSON request envelope/);
    fails(await q('{"metadata":{"method":"list_streams"},"data":12}'), /^invalid request format, /);
    fails(await q('{"metadata":{"method":7}}'), /^invalid request format, .*string/);
    // Still serving afterwards.
    ok(await q(req({ method: 'list_streams' })));
  });

  it('commands: executed true on success, false with the error text', async () => {
    const good = await client.command('command.kinesis', req({ method: 'create_stream', stream_name: 'by-command' }));
    assert.equal(good.executed, true);
    assert.equal(good.error, '');
    const listed = await rig.kinesisCall(peers.kin.url, 'ListStreams', {}, { accessKey: 'x', secretKey: 'y' });
    assert.ok(listed.json.StreamNames.includes('by-command'), 'the command ran');
    const bad = await client.command('command.kinesis', req({ method: 'create_stream', stream_name: 'by-command' }));
    assert.equal(bad.executed, false);
    assert.match(bad.error, /^ResourceInUseException: /);
    const junk = await client.command('command.kinesis', 'junk');
    assert.equal(junk.executed, false);
    assert.match(junk.error, /not a JSON request envelope/);
  });

  it('the HTTP API of the running daemon: health, ready, metrics, bindings, stats, request', async () => {
    const api = `http://127.0.0.1:${apiPort}`;
    const health = await rig.httpRequest(`${api}/health`);
    assert.equal(health.status, 200);
    const ready = await rig.httpRequest(`${api}/ready`);
    assert.equal(ready.status, 200);

    // Count this binding's requests exactly: metrics before and after 3 more queries.
    const count = async () => {
      const m = (await rig.httpRequest(`${api}/metrics`)).text;
      const line = m.split('\n').find((l) => l.startsWith('kubemq_targets_requests_count{binding="kinesis",'));
      return line ? Number(line.split(' ').pop()) : 0;
    };
    const before = await count();
    for (let i = 0; i < 3; i++) ok(await q(req({ method: 'list_streams' })));
    const after = await count();
    assert.equal(after - before, 3, 'requests_count grows by exactly the queries sent');
    const m = (await rig.httpRequest(`${api}/metrics`)).text;
    assert.match(m, /kubemq_targets_requests_count\{binding="kinesis",source_kind="kubemq.query",target_kind="aws.kinesis"\} \d+/);
    assert.match(m, /kubemq_targets_errors_count\{binding="kinesis",/);

    const bindingsText = (await rig.httpRequest(`${api}/bindings`)).text;
    const SK = peers.targetProps.aws_secret_key;
    assert.ok(!bindingsText.includes(SK), '/bindings never shows aws_secret_key');
    assert.ok(!bindingsText.includes(AUTH), '/bindings never shows auth_token');
    const list = JSON.parse(bindingsText);
    assert.deepEqual(list.map((b) => b.binding), ['kinesis', 'kinesis-cmd']);
    const b0 = list[0];
    assert.equal(b0.ready, true);
    assert.equal(b0.source_kind, 'kubemq.query');
    assert.equal(b0.target_kind, 'aws.kinesis');
    assert.equal(b0.source_connection, `${peers.broker.address}/query.kinesis`);
    assert.equal(b0.source_config.channel, 'query.kinesis');
    assert.equal(b0.source_config.auth_token, '***');
    assert.equal(b0.target_config.aws_secret_key, '***');
    assert.equal(b0.target_config.aws_key, peers.targetProps.aws_key);

    const stats = JSON.parse((await rig.httpRequest(`${api}/bindings/stats`)).text);
    const s0 = stats.find((s) => s.binding === 'kinesis');
    assert.equal(s0.request_count, after);
    assert.ok(s0.errors_count >= 1);

    const post = await rig.httpRequest(`${api}/bindings/request`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ binding: 'kinesis', payload: req({ method: 'describe_stream', stream_name: 's1' }) }),
    });
    assert.equal(post.status, 200, post.text);
    const reply = JSON.parse(post.text);
    assert.equal(reply.is_error, false, reply.error);
    assert.equal(dataOf(reply).StreamDescriptionSummary.StreamName, 's1');
    assert.equal(await count(), after + 1, 'an API request goes through the metrics middleware too');
    const missing = await rig.httpRequest(`${api}/bindings/request`, {
      method: 'POST', body: JSON.stringify({ binding: 'nope', payload: req({ method: 'list_streams' }) }),
    });
    assert.equal(missing.status, 404);
  });

  it('logs carry the binding name and never the secrets', async () => {
    const err = daemon.d.stderr();
    assert.match(err, /kubemq-kinesis \S+ starting: 2 bindings/);
    assert.match(err, new RegExp(`binding kinesis: started \\(source kubemq.query ${peers.broker.address.replace(/\./g, '\\.')}/query.kinesis, target aws.kinesis\\)`));
    assert.equal(linesOf(daemon.d, /\[kinesis\] .*subscribed to queries on channel 'query.kinesis'/).length, 1);
    // "subscribed" only once the broker has spoken on the connection.
    const at = (re) => err.split('\n').findIndex((l) => re.test(l));
    assert.ok(at(/\[kinesis\] kubemq: connected to/) >= 0, err);
    assert.ok(at(/\[kinesis\] kubemq: connected to/) < at(/\[kinesis\] kubemq: subscribed to queries/), err);
    assert.ok(!err.includes(AUTH), 'auth_token never logged');
    assert.ok(!err.includes(peers.targetProps.aws_secret_key), 'aws_secret_key never logged');
  });
});

describe('daemon: consumer methods against kinesis-local', () => {
  const c = cleanups();
  let peers;
  let client;
  before(async () => {
    peers = await startPeers(c, { local: true });
    await startDaemon(c, peers.broker, {
      apiPort: 0,
      bindings: [binding('local', { address: peers.broker.address, channel: 'q.local', target: peers.targetProps })],
    });
    client = kubemq.openClient(peers.broker.address, { clientId: 'e2e-local' });
    c.add(() => client.close());
  });
  after(() => c.run());

  it('create_stream_consumer and list_stream_consumers', async () => {
    const q = (body) => client.query('q.local', body, { timeoutMs: 30000 });
    ok(await q(req({ method: 'create_stream', stream_name: 'cons', shard_count: '1' })));
    const arn = dataOf(ok(await q(req({ method: 'describe_stream', stream_name: 'cons' })))).StreamDescriptionSummary.StreamARN;
    const created = dataOf(ok(await q(req({ method: 'create_stream_consumer', stream_arn: arn, consumer_name: 'my_consumer' }))));
    assert.equal(created.Consumer.ConsumerName, 'my_consumer');
    const listed = dataOf(ok(await q(req({ method: 'list_stream_consumers', stream_arn: arn }))));
    assert.deepEqual(listed.Consumers.map((x) => x.ConsumerName), ['my_consumer']);
    fails(await q(req({ method: 'create_stream_consumer', stream_arn: arn, consumer_name: 'my_consumer' })), /^ResourceInUseException: /);
  });
});

describe('acceptance: examples/local.yaml with kubemq-kinesis send and kubemq-js', () => {
  const c = cleanups();
  after(() => c.run());

  it('serves queries from `kubemq-kinesis send` and from a kubemq-js script alike', async () => {
    const kin = await rig.startKinesalite();
    c.add(() => kin.stop());
    const broker = await rig.startBroker();
    c.add(() => broker.stop());
    const apiPort = await rig.freePort();
    const src = path.join(process.env.KK_SOURCE_DIR || path.join(__dirname, '..', '..'), 'examples', 'local.yaml');
    const yaml = fs.readFileSync(src, 'utf8')
      .replace(/apiPort: \d+/, `apiPort: ${apiPort}`)
      .replace('"127.0.0.1:50000"', `"${broker.address}"`)
      .replace('"http://127.0.0.1:4567"', `"${kin.url}"`);
    assert.ok(yaml.includes(broker.address) && yaml.includes(kin.url), 'ports substituted');
    const cfg = rig.writeConfig(yaml);
    const d = rig.startDaemon(cfg, { env: CLEAN_ENV });
    c.add(async () => { if (rig.pidAlive(d.pid)) await d.stop('SIGKILL'); });
    await rig.waitHttp(`http://127.0.0.1:${apiPort}/ready`, { status: 200, timeoutMs: 20000 });
    await broker.waitForSubscribers('queries', 'query.aws.kinesis');
    await rig.sleep(200);

    const send = (body) => new Promise((resolve, reject) => {
      const p = spawn(rig.binPath(), ['send', '--address', broker.address, '--channel', 'query.aws.kinesis', '--timeout-ms', '20000'],
        { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (x) => { out += x; });
      p.stderr.on('data', (x) => { err += x; });
      p.on('error', reject);
      p.on('close', (code) => resolve({ code, out, err }));
      p.stdin.end(JSON.stringify(body));
    });
    const created = await send(req({ method: 'create_stream', stream_name: 'accept', shard_count: '1' }));
    assert.equal(created.code, 0, created.err);
    assert.deepEqual(JSON.parse(created.out), { metadata: { result: 'ok' }, data: null, is_error: false, error: '' });
    const put = await send(req({ method: 'put_record', stream_name: 'accept', partition_key: 'p' }, b64('from send')));
    assert.equal(put.code, 0, put.err);
    assert.equal(JSON.parse(put.out).is_error, false);

    // The CLI wrapper (kubemq-js) people and the demo use.
    const wrapper = path.join(__dirname, '..', 'rig', 'kubemq-query.js');
    const viaJs = await new Promise((resolve) => {
      const p = spawn(process.execPath, [wrapper, '--address', broker.address, '--channel', 'query.aws.kinesis',
        JSON.stringify(req({ method: 'put_record', stream_name: 'accept', partition_key: 'p' }, b64('from kubemq-js')))]);
      let out = '';
      p.stdout.on('data', (x) => { out += x; });
      p.on('close', (code) => resolve({ code, out }));
    });
    assert.equal(viaJs.code, 0);
    assert.equal(JSON.parse(viaJs.out).is_error, false);

    const js = await kubemq.sendQuery(broker.address, 'query.aws.kinesis',
      req({ method: 'get_records', stream_name: 'accept', limit: '100' }), { clientId: 'accept-js' });
    const recs = dataOf(ok(js)).Records;
    assert.deepEqual(recs.map((r) => Buffer.from(r.Data, 'base64').toString()), ['from send', 'from kubemq-js']);
    const res = await d.stop();
    assert.equal(res.code, 0, d.stderr());
  });
});
