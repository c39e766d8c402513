'use strict';
// image-run.js - the second half of image-check.sh: run the image's command
// inside its root (chroot, as the image's user) against stand-ins on this
// machine's loopback, and check that it serves.
//   node tests/rig/image-run.js ROOT USER WORKDIR '<ENTRYPOINT json>' '<CMD json>'
// 1. ENTRYPOINT + ["--check"] on the baked config: exit 0, "config OK".
// 2. ENTRYPOINT + CMD with CONFIG (base64) naming the stand-ins: /ready turns
//    200, a create_stream and a put_record query sent with the real client are
//    answered, the record reads back, SIGTERM exits 0.
// Every process started here is stopped by PID.
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const rig = require('./lib');
const kubemq = require('./kubemq');

async function main() {
  const [root, user, workdir, entryJson, cmdJson] = process.argv.slice(2);
  if (!root || !user || !workdir || !entryJson || !cmdJson) {
    process.stderr.write('usage: image-run.js ROOT USER WORKDIR ENTRYPOINT_JSON CMD_JSON\n');
    process.exit(2);
  }
  const entry = JSON.parse(entryJson);
  const cmd = JSON.parse(cmdJson);
  const uid = /^\d+$/.test(user) ? `${user}:${user}` : user;
  // chroot, then the image's user and working directory, with a clean environment.
  const inImage = (args, env = {}) => ['chroot', [`--userspec=${uid}`, root, '/usr/bin/env', '-i',
    'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', `HOME=${workdir}`,
    ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
    '/bin/sh', '-c', 'cd "$0" && exec "$@"', workdir, ...args]];

  const [c0, a0] = inImage([...entry, '--check']);
  const check = spawnSync(c0, a0, { encoding: 'utf8', timeout: 30000 });
  assert.equal(check.status, 0, `--check in the image: ${check.stderr}`);
  assert.match(check.stdout, /^config OK: \d+ bindings?\n$/);
  console.log(`image-run: --check on the baked config: ${check.stdout.trim()}`);

  const started = [];
  try {
    const kin = await rig.startKinesalite();
    started.push(() => kin.stop());
    const broker = await rig.startBroker();
    started.push(() => broker.stop());
    const apiPort = await rig.freePort();
    const config = {
      apiPort,
      apiAddress: '127.0.0.1',
      bindings: [{
        name: 'image',
        source: { kind: 'kubemq.query', name: 'q', properties: { address: broker.address, channel: 'image.check' } },
        target: {
          kind: 'aws.kinesis',
          name: 'k',
          properties: { aws_key: 'AKIDIMAGECHECK', aws_secret_key: 'image-check-secret', region: 'us-east-1', endpoint: kin.url },
        },
      }],
    };
    const [c1, a1] = inImage([...entry, ...cmd], { CONFIG: Buffer.from(JSON.stringify(config)).toString('base64') });
    const d = spawn(c1, a1, { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    d.stderr.on('data', (x) => { err += x; });
    const exited = new Promise((r) => d.once('exit', (code, signal) => r({ code, signal })));
    started.push(async () => {
      if (d.exitCode === null && d.signalCode === null) {
        d.kill('SIGKILL');
        await exited;
      }
    });
    await rig.waitHttp(`http://127.0.0.1:${apiPort}/ready`, { status: 200, timeoutMs: 30000 }).catch((e) => {
      e.message += `\n--- daemon stderr ---\n${err}`;
      throw e;
    });
    const uidLine = require('node:fs').readFileSync(`/proc/${d.pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m);
    if (/^\d+$/.test(user)) assert.equal(uidLine && uidLine[1], user, 'runs as the image\'s user');
    console.log(`image-run: the daemon in the image is ready (uid ${uidLine && uidLine[1]})`);

    const client = kubemq.openClient(broker.address);
    started.push(() => client.close());
    const q = async (metadata, data = null) => {
      const r = await client.query('image.check', { metadata, data }, { timeoutMs: 20000 });
      assert.ok(r.reply, `no reply envelope: ${r.body}`);
      assert.equal(r.reply.is_error, false, r.reply.error);
      return r.reply;
    };
    await q({ method: 'create_stream', stream_name: 'image', shard_count: '1' });
    const put = await q({ method: 'put_record', stream_name: 'image', partition_key: 'k' }, Buffer.from('from the image').toString('base64'));
    assert.match(put.metadata.sequence_number, /^\d+$/);
    const got = await q({ method: 'get_records', stream_name: 'image', limit: '10' });
    const recs = JSON.parse(Buffer.from(got.data, 'base64').toString()).Records;
    assert.deepEqual(recs.map((r) => Buffer.from(r.Data, 'base64').toString()), ['from the image']);
    console.log('image-run: create_stream, put_record and get_records answered; the record read back');

    d.kill('SIGTERM');
    const { code } = await exited;
    assert.equal(code, 0, err);
    assert.match(err, /^\{/m, 'JSON log lines (the default --log-format json)');
    console.log('image-run: SIGTERM, exit 0');
  } finally {
    while (started.length) await started.pop()();
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(`image-run: FAILED: ${e.stack || e}`);
  process.exit(1);
});
