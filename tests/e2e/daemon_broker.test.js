'use strict';
// The broker goes away mid-run and comes back on the same port, or is not there at
// start: the daemon notices (/ready 503), resubscribes by itself and serves again,
// without a restart.
const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const { cleanups, startPeers, binding, startDaemon, ok, b64, req, linesOf, rig, kubemq } = require('./daemon_lib');

async function waitStatus(url, status, timeoutMs = 20000) {
  return rig.waitFor(async () => (await rig.httpRequest(url)).status === status, { timeoutMs, what: `${url} -> ${status}` });
}

describe('daemon: broker restart', () => {
  const c = cleanups();
  after(() => c.run());

  it('resubscribes after the broker restarts on the same port; /ready 503 while it is down', async () => {
    const peers = await startPeers(c);
    const port = peers.broker.port;
    const apiPort = await rig.freePort();
    const config = {
      apiPort,
      bindings: [binding('kinesis', {
        address: peers.broker.address, channel: 'q.restart', group: 'g',
        source: { sources: '2', reconnect_interval_seconds: '1' }, target: peers.targetProps,
      })],
    };
    const { d, api } = await startDaemon(c, peers.broker, config);
    const send = async (address, body) => kubemq.sendQuery(address, 'q.restart', body, { clientId: 'restart-requester', timeoutMs: 20000 });
    ok(await send(peers.broker.address, req({ method: 'create_stream', stream_name: 'r' })));
    ok(await send(peers.broker.address, req({ method: 'put_record', stream_name: 'r', partition_key: 'p' }, b64('before'))));

    // 1. The process dies; a new one listens on the same port.
    const res = await peers.broker.stop();
    assert.equal(rig.pidAlive(peers.broker.pid), false, `broker exited ${JSON.stringify(res)}`);
    await waitStatus(`${api}/ready`, 503);
    assert.match((await rig.httpRequest(`${api}/ready`)).text, /kinesis.*not subscribed/);
    assert.ok(rig.pidAlive(d.pid), 'the daemon keeps running without its broker');
    await rig.sleep(1500); // a few failed reconnect attempts
    const broker2 = await rig.startBroker({ port });
    c.add(() => broker2.stop());
    assert.equal(broker2.address, peers.broker.address);
    await broker2.waitForSubscribers('queries', 'q.restart', { group: 'g', count: 2, timeoutMs: 30000 });
    await waitStatus(`${api}/ready`, 200, 30000);
    await rig.sleep(200);
    ok(await send(broker2.address, req({ method: 'put_record', stream_name: 'r', partition_key: 'p' }, b64('after restart'))));

    // 2. The same process stops and resumes listening (open streams end with UNAVAILABLE).
    await broker2.stopListener();
    await waitStatus(`${api}/ready`, 503);
    await broker2.startListener();
    await broker2.waitForSubscribers('queries', 'q.restart', { group: 'g', count: 2, timeoutMs: 30000 });
    await waitStatus(`${api}/ready`, 200, 30000);
    await rig.sleep(200);
    const r = ok(await send(broker2.address, req({ method: 'get_records', stream_name: 'r', limit: '100' })));
    const data = JSON.parse(Buffer.from(r.data, 'base64').toString()).Records.map((x) => Buffer.from(x.Data, 'base64').toString());
    assert.deepEqual(data, ['before', 'after restart']);

    assert.ok(linesOf(d, /\[kinesis\] kubemq: subscription to queries .* lost/).length >= 2, 'loss logged');
    assert.ok(linesOf(d, /\[kinesis\] kubemq: resubscribed to queries on channel 'q.restart'/).length >= 4, 'both connections resubscribed twice');
    const stop = await d.stop();
    assert.equal(stop.code, 0, d.stderr());
  });

  it('starts without its broker: /ready 503 until the broker comes up, then serves', async () => {
    const kin = await rig.startKinesalite();
    c.add(() => kin.stop());
    const port = await rig.freePort();
    const apiPort = await rig.freePort();
    const config = {
      apiPort,
      bindings: [binding('kinesis', {
        address: `127.0.0.1:${port}`, channel: 'q.late',
        source: { reconnect_interval_seconds: '1' },
        target: { aws_key: 'k', aws_secret_key: 's', region: 'us-east-1', endpoint: kin.url },
      })],
    };
    const { d, api } = await startDaemon(c, null, config, { waitReady: false });
    await rig.waitHttp(`${api}/health`, { status: 200, timeoutMs: 20000 });
    await rig.sleep(1000);
    const notReady = await rig.httpRequest(`${api}/ready`);
    assert.equal(notReady.status, 503);
    assert.match(notReady.text, /binding kinesis: source 127\.0\.0\.1:\d+\/q\.late not subscribed/);
    const broker = await rig.startBroker({ port });
    c.add(() => broker.stop());
    await broker.waitForSubscribers('queries', 'q.late', { timeoutMs: 30000 });
    await waitStatus(`${api}/ready`, 200, 30000);
    await rig.sleep(200);
    ok(await kubemq.sendQuery(broker.address, 'q.late', req({ method: 'list_streams' }), { clientId: 'late-requester' }));
    assert.ok(rig.pidAlive(d.pid));
  });
});
