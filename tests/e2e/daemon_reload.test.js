'use strict';
// SIGHUP: the config is read again. Valid: unchanged bindings keep running, new and
// changed ones start, the old ones drain (nothing in flight is lost) and the API moves
// when its port changed. Invalid: every problem is logged and the old config serves on.
const { describe, it, after, before } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { cleanups, startPeers, binding, startDaemon, ok, b64, req, linesOf, rig, kubemq } = require('./daemon_lib');

describe('daemon: reload on SIGHUP', () => {
  const c = cleanups();
  let peers;
  let daemon;
  let client;
  let config;
  const api = () => `http://127.0.0.1:${config.apiPort}`;
  const bindA = (props = {}) => binding('a', { address: peers.broker.address, channel: 'q.a', target: peers.targetProps, props });
  const bindB = () => binding('b', { address: peers.broker.address, channel: 'q.b', target: peers.targetProps });
  const rewrite = (cfg) => {
    config = cfg;
    fs.writeFileSync(daemon.path, JSON.stringify(cfg));
  };
  const hup = () => process.kill(daemon.d.pid, 'SIGHUP');

  // Sends queries on channel one after another until stop(); resolves their count.
  function traffic(channel) {
    let running = true;
    let sent = 0;
    const errors = [];
    const done = (async () => {
      while (running) {
        const r = await client.query(channel, req({ method: 'describe_stream', stream_name: 'rs' }), { timeoutMs: 20000 })
          .catch((e) => ({ failure: e.details || e.message }));
        sent++;
        if (r.failure || !r.reply || r.reply.is_error) errors.push(r.failure || (r.reply && r.reply.error) || 'no reply');
        await rig.sleep(5);
      }
      return { sent, errors };
    })();
    return { stop: () => { running = false; return done; } };
  }

  before(async () => {
    peers = await startPeers(c);
    config = { apiPort: await rig.freePort(), bindings: [bindA()] };
    daemon = await startDaemon(c, peers.broker, config);
    client = kubemq.openClient(peers.broker.address, { clientId: 'reload-requester' });
    c.add(() => client.close());
    ok(await client.query('q.a', req({ method: 'create_stream', stream_name: 'rs' })));
  });
  after(() => c.run());

  it('a valid config: changed binding restarted, new one started, API moved, nothing lost', async () => {
    const { d } = daemon;
    const oldApi = api();
    const load = [traffic('q.a'), traffic('q.a')];
    // Five puts in flight in the old binding when the reload comes.
    await peers.gate.fault({ kind: 'hold', op: 'PutRecord', count: 5 });
    const held = Array.from({ length: 5 }, (_, i) =>
      client.query('q.a', req({ method: 'put_record', stream_name: 'rs', partition_key: `h${i}` }, b64(`held-${i}`)), { timeoutMs: 30000 }));
    await rig.waitFor(async () => (await peers.gate.stats()).held === 5, { what: '5 puts held' });

    rewrite({ apiPort: await rig.freePort(), bindings: [bindA({ log_level: 'error' }), bindB()] });
    hup();
    await d.waitForStderr(/draining: \d+ requests in flight/, 20000); // the 5 held, maybe traffic too
    // The new bindings serve while the old one drains.
    await peers.broker.waitForSubscribers('queries', 'q.b');
    ok(await client.query('q.b', req({ method: 'describe_stream', stream_name: 'rs' })));
    await rig.sleep(300);
    await peers.gate.release();
    for (const r of await Promise.all(held)) ok(r);
    await d.waitForStderr(/reloaded: 2 bindings \(0 kept, 1 started, 1 replaced, 0 stopped\) after SIGHUP/, 20000);
    await rig.sleep(300);
    const results = await Promise.all(load.map((l) => l.stop()));
    for (const r of results) {
      assert.deepEqual(r.errors, [], 'every query during the reload was answered with success');
      assert.ok(r.sent > 5, `traffic kept flowing (${r.sent} queries)`);
    }

    await rig.waitHttp(`${api()}/ready`, { status: 200, timeoutMs: 10000 });
    const list = JSON.parse((await rig.httpRequest(`${api()}/bindings`)).text);
    assert.deepEqual(list.map((b) => [b.binding, b.ready]), [['a', true], ['b', true]]);
    await assert.rejects(rig.httpRequest(`${oldApi}/health`, { timeoutMs: 2000 }), 'the old API port is closed');
    assert.ok(rig.pidAlive(d.pid));
    assert.equal(linesOf(d, /\[a\] binding a: stopped/).length, 1);
  });

  it('an unchanged binding keeps running; a removed one stops', async () => {
    const { d } = daemon;
    const load = traffic('q.a');
    rewrite({ ...config, bindings: [bindA({ log_level: 'error' })] });
    hup();
    await d.waitForStderr(/reloaded: 1 binding \(1 kept, 0 started, 0 replaced, 1 stopped\) after SIGHUP/, 20000);
    await peers.broker.waitFor((s) => !s.subscribers.queries['q.b'] || !Object.values(s.subscribers.queries['q.b']).some((n) => n > 0),
      { what: 'q.b unsubscribed' });
    const r = await load.stop();
    assert.deepEqual(r.errors, []);
    assert.equal(linesOf(d, /\[b\] binding b: stopped/).length, 1);
    assert.equal(linesOf(d, /\[a\] binding a: started/).length, 2, 'a was not restarted');
  });

  // put_record traffic with unique data on q.a while the config changes to cfg;
  // then every put answered ok is in the stream once, and none twice.
  async function putsDuringReload(cfg, tag) {
    const { d } = daemon;
    const reloads = () => linesOf(d, /reloaded: /).length;
    const n = reloads();
    let running = true;
    const sent = [];
    const failures = [];
    const loops = [0, 1].map(async (w) => {
      for (let i = 0; running; i++) {
        const data = `${tag}-${w}-${i}`;
        const r = await client.query('q.a', req({ method: 'put_record', stream_name: 'rs', partition_key: `d${w}` }, b64(data)), { timeoutMs: 20000 })
          .catch((e) => ({ failure: e.details || e.message }));
        if (r.failure || !r.reply || r.reply.is_error) failures.push(r.failure || (r.reply && r.reply.error));
        else sent.push(data);
        await rig.sleep(2);
      }
    });
    await rig.sleep(200);
    rewrite(cfg);
    hup();
    await rig.waitFor(() => reloads() === n + 1, { what: 'reloaded', timeoutMs: 20000 });
    await rig.sleep(300);
    running = false;
    await Promise.all(loops);
    assert.deepEqual(failures, []);
    assert.ok(sent.length > 20, `traffic during the reload (${sent.length} puts)`);
    const r = ok(await client.query('q.a', req({ method: 'get_records', stream_name: 'rs', limit: '10000' })));
    const counts = new Map();
    for (const rec of JSON.parse(Buffer.from(r.data, 'base64').toString()).Records) {
      const data = Buffer.from(rec.Data, 'base64').toString();
      if (data.startsWith(`${tag}-`)) counts.set(data, (counts.get(data) || 0) + 1);
    }
    const twice = [...counts].filter(([, k]) => k > 1).map(([data]) => data);
    assert.deepEqual(twice, [], 'written more than once');
    for (const data of sent) assert.equal(counts.get(data), 1, `${data} is in the stream once`);
  }

  it('a changed binding on an ungrouped channel: every put during the reload is written once', async () => {
    const level = config.bindings[0].properties.log_level === 'error' ? 'info' : 'error';
    await putsDuringReload({ ...config, bindings: [bindA({ log_level: level })] }, 'changed');
  });

  it('a changed binding with sources: 2 (its own generated group): every put is written once', async () => {
    const two = binding('a', { address: peers.broker.address, channel: 'q.a', target: peers.targetProps, source: { sources: '2' } });
    const original = config;
    await putsDuringReload({ ...config, bindings: [two] }, 'two');
    await putsDuringReload(original, 'one');
  });

  it('a renamed binding on the same channel: every put during the reload is written once', async () => {
    const renamed = { ...bindA(), name: 'a-renamed' };
    const original = config;
    await putsDuringReload({ ...config, bindings: [renamed] }, 'renamed');
    assert.match(daemon.d.stderr(), /reload: binding a-renamed is new: starting it/);
    await putsDuringReload(original, 'back');
  });

  it('logLevel is read again: debug lines start with it and stop without it', async () => {
    const { d } = daemon;
    const reloads = () => linesOf(d, /reloaded: /).length;
    const debugLines = () => linesOf(d, /aws DescribeStreamSummary: status=200/).length;
    const reloadWith = async (cfg) => {
      const n = reloads();
      rewrite(cfg);
      hup();
      await rig.waitFor(() => reloads() === n + 1, { what: 'reloaded', timeoutMs: 20000 });
    };
    const query = async () => ok(await client.query('q.a', req({ method: 'describe_stream', stream_name: 'rs' })));

    await query();
    assert.equal(debugLines(), 0, 'info level: no debug lines');
    await reloadWith({ ...config, logLevel: 'debug' });
    assert.match(d.stderr(), /reload: log level debug/);
    await query();
    await rig.waitFor(() => debugLines() === 1, { what: 'a debug line for the query' });
    const { logLevel, ...withoutLevel } = config;
    assert.equal(logLevel, 'debug');
    await reloadWith(withoutLevel);
    assert.match(d.stderr(), /reload: log level info/);
    await query();
    await query();
    await rig.sleep(300);
    assert.equal(debugLines(), 1, 'back at info: no more debug lines');
  });

  it('a SIGHUP during a reload: the config is read again after it', async () => {
    const { d } = daemon;
    const reloads = () => linesOf(d, /reloaded: /).length;
    const n = reloads();
    const starts = () => linesOf(d, /reload: binding a is changed: starting it anew/).length;
    const s0 = starts();
    const withConcurrency = (n) => binding('a', { address: peers.broker.address, channel: 'q.a', target: peers.targetProps, source: { concurrency: String(n) } });
    rewrite({ ...config, bindings: [withConcurrency(7)] });
    hup();
    await rig.waitFor(() => starts() === s0 + 1, { what: 'the reload started', timeoutMs: 10000 });
    // The file changes again while the first reload waits for the new subscription.
    rewrite({ ...config, bindings: [withConcurrency(9)] });
    hup();
    await d.waitForStderr(/SIGHUP received during the reload: reading the config again after it/, 10000);
    await rig.waitFor(() => reloads() === n + 2, { what: 'two reloads', timeoutMs: 20000 })
      .catch((e) => { e.message += `\n${d.stderr().split('\n').slice(-25).join('\n')}`; throw e; });
    const list = JSON.parse((await rig.httpRequest(`${api()}/bindings`)).text);
    assert.equal(list.length, 1);
    assert.equal(list[0].source_config.concurrency, '9', 'the last config is the one running');
    ok(await client.query('q.a', req({ method: 'describe_stream', stream_name: 'rs' })));
  });

  it('an invalid config: every problem logged, the running config stays', async () => {
    const { d } = daemon;
    const before = d.stderr().length;
    const good = config;
    fs.writeFileSync(daemon.path, JSON.stringify({
      apiPort: 'not-a-port',
      bindings: [{ ...bindA(), source: { kind: 'kubemq.query', properties: { address: peers.broker.address, chanel: 'typo' } } }],
    }));
    hup();
    await d.waitForStderr(/reload failed \(\d+ problems\): the running config stays/, 20000);
    const logged = d.stderr().slice(before);
    assert.match(logged, /reload: .*apiPort/);
    assert.match(logged, /reload: .*chanel/);
    config = good;
    ok(await client.query('q.a', req({ method: 'describe_stream', stream_name: 'rs' })));
    const list = JSON.parse((await rig.httpRequest(`${api()}/bindings`)).text);
    assert.deepEqual(list.map((b) => b.binding), ['a']);
    assert.ok(rig.pidAlive(d.pid));

    // A config that is no config at all.
    fs.writeFileSync(daemon.path, '{ this is not json');
    hup();
    await d.waitForStderr(/reload failed \(1 problem\): the running config stays/, 20000);
    ok(await client.query('q.a', req({ method: 'describe_stream', stream_name: 'rs' })));

    const exit = await d.stop();
    assert.equal(exit.code, 0, d.stderr());
  });
});
