'use strict';
// The config file watched: an edit in place, a rename over the file and a Kubernetes
// ConfigMap-style `..data` symlink swap each apply the new bindings once, without a
// restart; a burst of writes gives one reload; an invalid file keeps the old bindings
// serving until it is fixed; queries flowing during a watched reload are answered once;
// watchConfig: false turns it off (SIGHUP still works).
const { describe, it, after, before } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { cleanups, startPeers, binding, ok, b64, req, linesOf, rig, kubemq, CLEAN_ENV } = require('./daemon_lib');

describe('daemon: reload when the config file changes', () => {
  const c = cleanups();
  let peers;
  let client;
  const bindA = (props = {}) => binding('a', { address: peers.broker.address, channel: 'w.a', target: peers.targetProps, props });
  const bindB = () => binding('b', { address: peers.broker.address, channel: 'w.b', target: peers.targetProps });
  const text = (cfg) => JSON.stringify(cfg, null, 2);

  // A directory of its own per daemon (the watch looks at the whole directory).
  function configDir() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kk-watch-'));
    c.add(() => fs.rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  async function start(file, extra = {}) {
    const d = rig.startDaemon(file, { env: CLEAN_ENV, ...extra });
    c.add(async () => {
      if (rig.pidAlive(d.pid)) await d.stop('SIGKILL');
    });
    await d.waitForStderr(/running: \d+ binding/, 20000);
    return d;
  }

  const reloads = (d) => linesOf(d, /reloaded: /).length;
  const bindingNames = async (api) => JSON.parse((await rig.httpRequest(`${api}/bindings`)).text).map((b) => b.binding);

  before(async () => {
    peers = await startPeers(c);
    client = kubemq.openClient(peers.broker.address, { clientId: 'watch-requester' });
    c.add(() => client.close());
  });
  after(() => c.run());

  it('an edit in place applies the new bindings once, same process', async () => {
    const dir = configDir();
    const file = path.join(dir, 'config.json');
    const port = await rig.freePort();
    fs.writeFileSync(file, text({ apiPort: port, bindings: [bindA()] }));
    const d = await start(file);
    await d.waitForStderr(/config file .* watched for changes/, 5000);
    await peers.broker.waitForSubscribers('queries', 'w.a');
    ok(await client.query('w.a', req({ method: 'create_stream', stream_name: 'ws' })));

    fs.writeFileSync(file, text({ apiPort: port, bindings: [bindA(), bindB()] }));
    await d.waitForStderr(/config file changed: reloading the config from/, 10000);
    await d.waitForStderr(/reloaded: 2 bindings \(1 kept, 1 started, 0 replaced, 0 stopped\) after config file changed/, 20000);
    await peers.broker.waitForSubscribers('queries', 'w.b');
    ok(await client.query('w.b', req({ method: 'describe_stream', stream_name: 'ws' })));
    assert.deepEqual(await bindingNames(`http://127.0.0.1:${port}`), ['a', 'b']);
    await rig.sleep(1500);
    assert.equal(reloads(d), 1, 'one reload for one edit');
    assert.ok(rig.pidAlive(d.pid));
    const metrics = (await rig.httpRequest(`http://127.0.0.1:${port}/metrics`)).text;
    assert.match(metrics, /kubemq_targets_requests_count\{binding="b",/);
    await d.stop();
  });

  it('a rename over the file and a ConfigMap ..data swap are noticed', async () => {
    const dir = configDir();
    const port = await rig.freePort();
    // The layout the kubelet makes: config.json -> ..data/config.json, ..data -> ..v1.
    fs.mkdirSync(path.join(dir, '..v1'));
    fs.writeFileSync(path.join(dir, '..v1', 'config.json'), text({ apiPort: port, bindings: [bindA()] }));
    fs.symlinkSync('..v1', path.join(dir, '..data'));
    fs.symlinkSync('..data/config.json', path.join(dir, 'config.json'));
    const d = await start(path.join(dir, 'config.json'));
    await peers.broker.waitForSubscribers('queries', 'w.a');

    // The kubelet's update: a new version directory, a new link renamed over ..data.
    fs.mkdirSync(path.join(dir, '..v2'));
    fs.writeFileSync(path.join(dir, '..v2', 'config.json'), text({ apiPort: port, bindings: [bindA(), bindB()] }));
    fs.symlinkSync('..v2', path.join(dir, '..data_tmp'));
    fs.renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
    fs.rmSync(path.join(dir, '..v1'), { recursive: true });
    await d.waitForStderr(/reloaded: 2 bindings \(1 kept, 1 started, 0 replaced, 0 stopped\) after config file changed/, 20000);
    await peers.broker.waitForSubscribers('queries', 'w.b');
    assert.deepEqual(await bindingNames(`http://127.0.0.1:${port}`), ['a', 'b']);

    // An editor's save into the version directory: a temp file renamed over the file.
    const real = path.join(dir, '..v2', 'config.json');
    fs.writeFileSync(`${real}.tmp`, text({ apiPort: port, bindings: [bindA({ log_level: 'error' })] }));
    fs.renameSync(`${real}.tmp`, real);
    await d.waitForStderr(/reloaded: 1 binding \(0 kept, 0 started, 1 replaced, 1 stopped\) after config file changed/, 20000);
    assert.deepEqual(await bindingNames(`http://127.0.0.1:${port}`), ['a']);
    assert.equal(reloads(d), 2);
    await d.stop();
  });

  it('ten writes in 100 ms give one reload; an invalid file keeps the old bindings until fixed', async () => {
    const dir = configDir();
    const file = path.join(dir, 'config.json');
    const port = await rig.freePort();
    fs.writeFileSync(file, text({ apiPort: port, bindings: [bindA()] }));
    const d = await start(file);
    await peers.broker.waitForSubscribers('queries', 'w.a');
    ok(await client.query('w.a', req({ method: 'create_stream', stream_name: 'ws2' })));

    for (let i = 0; i < 10; i++) {
      fs.writeFileSync(file, text({ apiPort: port, bindings: [bindA({ log_level: i % 2 ? 'error' : 'info' })] }));
      await rig.sleep(10);
    }
    await d.waitForStderr(/reloaded: /, 20000);
    await rig.sleep(1500);
    assert.equal(reloads(d), 1, 'one reload for the burst');

    fs.writeFileSync(file, '{"apiPort": 1, "bindings": [{"name": "a", "source": {"kind": "kubemq.nope"}}]}');
    await d.waitForStderr(/reload failed \(\d+ problems?\): the running config stays/, 20000);
    assert.match(d.stderr(), /reload: .*kubemq\.nope/);
    ok(await client.query('w.a', req({ method: 'describe_stream', stream_name: 'ws2' })));
    assert.deepEqual(await bindingNames(`http://127.0.0.1:${port}`), ['a']);

    fs.writeFileSync(file, text({ apiPort: port, bindings: [bindA(), bindB()] }));
    await d.waitForStderr(/reloaded: 2 bindings .* after config file changed/, 20000);
    await peers.broker.waitForSubscribers('queries', 'w.b');
    ok(await client.query('w.b', req({ method: 'describe_stream', stream_name: 'ws2' })));
    assert.equal(reloads(d), 2);
    await d.stop();
  });

  it('queries flowing during a watched reload are answered once each', async () => {
    const dir = configDir();
    const file = path.join(dir, 'config.json');
    fs.writeFileSync(file, text({ apiPort: 0, bindings: [bindA()] }));
    const d = await start(file);
    await peers.broker.waitForSubscribers('queries', 'w.a');
    ok(await client.query('w.a', req({ method: 'create_stream', stream_name: 'ws3' })));
    let running = true;
    const sent = [];
    const failures = [];
    const loops = [0, 1].map(async (w) => {
      for (let i = 0; running; i++) {
        const data = `watch-${w}-${i}`;
        const r = await client.query('w.a', req({ method: 'put_record', stream_name: 'ws3', partition_key: `k${w}` }, b64(data)), { timeoutMs: 20000 })
          .catch((e) => ({ failure: e.details || e.message }));
        if (r.failure || !r.reply || r.reply.is_error) failures.push(r.failure || (r.reply && r.reply.error));
        else sent.push(data);
        await rig.sleep(2);
      }
    });
    await rig.sleep(300);
    fs.writeFileSync(file, text({ apiPort: 0, bindings: [bindA({ log_level: 'error' })] }));
    await d.waitForStderr(/reloaded: 1 binding \(0 kept, 0 started, 1 replaced, 0 stopped\) after config file changed/, 20000);
    await rig.sleep(500);
    running = false;
    await Promise.all(loops);
    assert.deepEqual(failures, []);
    assert.ok(sent.length > 10, `traffic kept flowing (${sent.length})`);
    const records = await rig.readStream(peers.kin.url, 'ws3');
    const seen = new Map();
    for (const r of records) seen.set(r.data, (seen.get(r.data) || 0) + 1);
    for (const v of sent) assert.equal(seen.get(v), 1, `${v} written once`);
    await d.stop();
  });

  it('watchConfig: false: a change is not applied; SIGHUP still is', async () => {
    const dir = configDir();
    const file = path.join(dir, 'config.json');
    const port = await rig.freePort();
    fs.writeFileSync(file, text({ apiPort: port, watchConfig: false, bindings: [bindA()] }));
    const d = await start(file, { args: ['--log-level', 'debug'] });
    await d.waitForStderr(/config file: not watched \(watchConfig is false\)/, 5000);
    fs.writeFileSync(file, text({ apiPort: port, watchConfig: false, bindings: [bindA(), bindB()] }));
    await rig.sleep(2000);
    assert.equal(reloads(d), 0);
    assert.deepEqual(await bindingNames(`http://127.0.0.1:${port}`), ['a']);
    process.kill(d.pid, 'SIGHUP');
    await d.waitForStderr(/reloaded: 2 bindings \(1 kept, 1 started, 0 replaced, 0 stopped\) after SIGHUP/, 20000);
    assert.deepEqual(await bindingNames(`http://127.0.0.1:${port}`), ['a', 'b']);
    await d.stop();
  });

  it('with CONFIG from the environment there is nothing to watch', async () => {
    const cfg = text({ apiPort: 0, bindings: [bindA()] });
    const d = rig.startDaemon(null, { env: { ...CLEAN_ENV, CONFIG: cfg }, args: ['--log-level', 'debug'] });
    c.add(async () => {
      if (rig.pidAlive(d.pid)) await d.stop('SIGKILL');
    });
    await d.waitForStderr(/config from the CONFIG variable: no file to watch/, 20000);
    await d.stop();
  });
});
