'use strict';
// make demo: a short story of real requests, told with the real KubeMQ
// client (kubemq-js) through the stand-in broker to kubemq-kinesis, which
// talks SigV4 to kinesalite. Everything runs on 127.0.0.1 and is stopped
// at the end (also on failure).
const fs = require('fs');
const path = require('path');
const { QueriesClient, Utils } = require('kubemq-js');
const rig = require('./lib');

const ROOT = path.join(__dirname, '..', '..');
const BIN = process.env.KK_BIN || path.join(ROOT, 'build', 'kubemq-kinesis');
const CHANNEL = 'query.aws.kinesis';
const STREAM = 'demo-stream';
const tty = process.stdout.isTTY;
const paint = (code, s) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s);
const bold = (s) => paint('1', s);
const dim = (s) => paint('2', s);
const green = (s) => paint('32', s);
const red = (s) => paint('31', s);

function step(title) {
  console.log(`\n${bold('== ' + title)}`);
}

// Long values (a 257-character key, an iterator) are cut for the screen.
function short(value) {
  return JSON.stringify(value, (k, v) => (typeof v === 'string' && v.length > 72 ? v.slice(0, 40) + `...(${v.length} chars)` : v));
}

// The reply's data is base64 of the Kinesis API's JSON: show it decoded,
// with record lists summed up (the records are printed decoded later).
function showReply(reply) {
  const shown = { ...reply };
  if (typeof reply.data === 'string') {
    const text = Buffer.from(reply.data, 'base64').toString('utf8');
    try {
      shown.data = JSON.parse(text);
      if (Array.isArray(shown.data.Records) && shown.data.Records.length > 3) {
        shown.data.Records = `[${shown.data.Records.length} records]`;
      }
    } catch {
      shown.data = text;
    }
  }
  shown.data = shown.data === null ? null : JSON.parse(short(shown.data));
  const out = JSON.stringify(shown, null, 2).split('\n').map((l) => '   ' + l).join('\n');
  console.log(reply.is_error ? red(out) : green(out));
}

async function query(client, metadata, data) {
  const envelope = { metadata };
  if (data !== undefined) envelope.data = data;
  console.log(dim('-> query ' + short(envelope)));
  const res = await client.send({
    channel: CHANNEL,
    body: Buffer.from(JSON.stringify(envelope)),
    timeout: 20000,
  });
  const reply = JSON.parse(Buffer.from(res.body).toString('utf8'));
  showReply(reply);
  return reply;
}

async function main() {
  const started = [];
  let client;
  try {
    step('Starting the local stand-ins');
    const kinesis = await rig.startKinesalite();
    started.push(kinesis);
    console.log(`   kinesalite (AWS Kinesis stand-in)  ${kinesis.url}  pid ${kinesis.pid}`);
    const broker = await rig.startBroker();
    started.push(broker);
    console.log(`   stand-in KubeMQ broker             ${broker.address}  pid ${broker.pid}`);

    step('Starting kubemq-kinesis with examples/local.yaml (ports filled in)');
    const apiPort = await rig.freePort();
    const yaml = fs
      .readFileSync(path.join(ROOT, 'examples', 'local.yaml'), 'utf8')
      .replace('apiPort: 8080', `apiPort: ${apiPort}`)
      .replace('"127.0.0.1:50000"', `"${broker.address}"`)
      .replace('"http://127.0.0.1:4567"', `"${kinesis.url}"`);
    const configPath = rig.writeConfig(yaml);
    const daemon = await rig.startDaemon(configPath, { env: { KK_BIN: BIN } });
    started.push({ stop: () => daemon.stop() });
    await rig.waitHttp(`http://127.0.0.1:${apiPort}/ready`, { status: 200, timeoutMs: 15000 });
    await broker.waitForSubscribers('queries', CHANNEL);
    console.log(`   kubemq-kinesis pid ${daemon.pid}, ready: http://127.0.0.1:${apiPort}/ready`);

    client = new QueriesClient({ address: broker.address, clientId: 'demo-client' });

    step('1. Create a stream');
    await query(client, { method: 'create_stream', stream_name: STREAM, shard_count: '1' });

    step('2. Describe it');
    await query(client, { method: 'describe_stream', stream_name: STREAM });

    step('3. Put three records, one query each');
    for (const [i, who] of ['alice', 'bob', 'carol'].entries()) {
      const record = JSON.stringify({ n: i + 1, user: who });
      await query(client, { method: 'put_record', stream_name: STREAM, partition_key: who },
        Buffer.from(record).toString('base64'));
    }

    step('4. Put two more in one PutRecords call (ordered array format)');
    const batch = [
      { partition_key: 'dave', data: Buffer.from('{"n":4,"user":"dave"}').toString('base64') },
      { partition_key: 'erin', data: Buffer.from('{"n":5,"user":"erin"}').toString('base64') },
    ];
    await query(client, { method: 'put_records', stream_name: STREAM },
      Buffer.from(JSON.stringify(batch)).toString('base64'));

    step('5. Read them back (get_records on the whole stream)');
    const got = await query(client, { method: 'get_records', stream_name: STREAM, limit: '10' });
    if (typeof got.data === 'string') {
      const body = JSON.parse(Buffer.from(got.data, 'base64').toString('utf8'));
      const records = body.Records || [].concat(...(body.Shards || []).map((s) => s.Records || []));
      console.log(bold('   the records, decoded:'));
      for (const r of records) {
        console.log(`   ${r.PartitionKey.padEnd(6)} ${Buffer.from(r.Data, 'base64').toString('utf8')}`);
      }
    }

    step('6. A bad request is answered with a clear error (no AWS call made)');
    await query(client, { method: 'put_record', stream_name: STREAM, partition_key: 'k'.repeat(257) },
      Buffer.from('x').toString('base64'));

    step('7. What the daemon counted (GET /metrics)');
    const metrics = await rig.httpRequest(`http://127.0.0.1:${apiPort}/metrics`);
    for (const line of metrics.text.split('\n')) {
      if (/^kubemq_targets_(requests|errors)_count/.test(line)) console.log('   ' + line);
    }
    console.log(`\n${bold('Done.')} Stopping everything that was started.`);
  } finally {
    if (client) client.close();
    for (const p of started.reverse()) await p.stop().catch(() => {});
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(red(`demo failed: ${err && err.stack ? err.stack : err}`));
    process.exit(1);
  },
);
