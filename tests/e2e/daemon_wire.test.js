'use strict';
// The daemon's KubeMQ connection as a real server would see it: TLS with ALPN (server
// verified, mutual), an address given as a host name, the broker ending connections the
// way a KubeMQ server does (a plain FIN on SIGTERM; a GOAWAY), grpc-go's ping policy over
// an idle minute, a 64 MiB message, and the process itself: no libgrpc, no libstdc++, at
// most two long-lived threads.
const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { createRequire } = require('node:module');
const { cleanups, startPeers, binding, startDaemon, ok, fails, b64, req, linesOf, rig, kubemq } = require('./daemon_lib');

const RIG = path.join(__dirname, '..', 'rig');
const rigRequire = createRequire(path.join(RIG, 'package.json'));
const grpc = rigRequire('@grpc/grpc-js');
const protoLoader = rigRequire('@grpc/proto-loader');
const { KUBEMQ_PROTO, KUBEMQ_LOADER_OPTS } = rig;
const BIN = process.env.KK_BIN || path.join(__dirname, '..', '..', 'build', 'kubemq-kinesis');

// A raw grpc-js requester over TLS (kubemq-js 1.2.3 cannot trust a private CA).
function tlsRequester(address, ca, client) {
  const def = protoLoader.loadSync(KUBEMQ_PROTO, KUBEMQ_LOADER_OPTS);
  const Ctor = grpc.loadPackageDefinition(def).kubemq.kubemq;
  const creds = client
    ? grpc.credentials.createSsl(fs.readFileSync(ca), fs.readFileSync(client.keyPath), fs.readFileSync(client.certPath))
    : grpc.credentials.createSsl(fs.readFileSync(ca));
  const raw = new Ctor(address.replace('127.0.0.1', 'localhost'), creds);
  return {
    query: (channel, body) => new Promise((resolve, reject) => {
      raw.SendRequest({ RequestTypeData: 2, ClientID: 'tls-requester', Channel: channel, Body: Buffer.from(JSON.stringify(body)), Timeout: 20000 },
        (err, res) => (err ? reject(err) : resolve({
          executed: res.Executed, error: res.Error, reply: JSON.parse(Buffer.from(res.Body).toString() || 'null'),
        })));
    }),
    close: () => raw.close(),
  };
}

describe('daemon: the KubeMQ wire', () => {
  const c = cleanups();
  after(() => c.run());

  it('TLS with ALPN h2, the broker verified by a private CA, addressed by host name', async () => {
    const ca = rig.makeTestCA();
    c.add(() => fs.rmSync(ca.dir, { recursive: true, force: true }));
    const server = ca.issue('server');
    const peers = await startPeers(c, { brokerOpts: { tlsCert: server.certPath, tlsKey: server.keyPath } });
    const address = peers.broker.address.replace('127.0.0.1', 'localhost');
    const b = binding('tls', { address, channel: 'tls.q', target: peers.targetProps, source: { tls: 'true', ca_file: ca.certPath } });
    await startDaemon(c, peers.broker, { apiPort: await rig.freePort(), bindings: [b] });
    const rq = tlsRequester(peers.broker.address, ca.certPath);
    c.add(() => rq.close());
    const r = await rq.query('tls.q', req({ method: 'list_streams' }));
    assert.equal(r.reply.is_error, false, JSON.stringify(r));
    assert.equal(r.executed, true);
  });

  it('mutual TLS: the daemon presents its client certificate; without one it is refused', async () => {
    const ca = rig.makeTestCA();
    c.add(() => fs.rmSync(ca.dir, { recursive: true, force: true }));
    const server = ca.issue('server');
    const client = ca.issue('kubemq-kinesis', { client: true });
    const peers = await startPeers(c, { brokerOpts: { tlsCert: server.certPath, tlsKey: server.keyPath, tlsCa: ca.certPath } });
    const good = binding('mtls', {
      address: peers.broker.address, channel: 'mtls.q', target: peers.targetProps,
      source: { tls: 'true', ca_file: ca.certPath, cert_file: client.certPath, key_file: client.keyPath },
    });
    await startDaemon(c, peers.broker, { apiPort: await rig.freePort(), bindings: [good] });
    const rq = tlsRequester(peers.broker.address, ca.certPath, ca.issue('requester', { client: true }));
    c.add(() => rq.close());
    const r = await rq.query('mtls.q', req({ method: 'list_streams' }));
    assert.equal(r.reply.is_error, false, JSON.stringify(r));

    // The same without a client certificate: refused by the broker, never ready, said why.
    const before = (await peers.broker.stats()).connections.tlsFailures;
    const api = await rig.freePort();
    const bad = binding('nocert', { address: peers.broker.address, channel: 'mtls.q2', target: peers.targetProps, source: { tls: 'true', ca_file: ca.certPath, reconnect_interval_seconds: '1' } });
    const { d } = await startDaemon(c, peers.broker, { apiPort: api, bindings: [bad] }, { waitReady: false });
    // Two refusals at least: the retry is an attempt like the first.
    await rig.waitFor(async () => (await peers.broker.stats()).connections.tlsFailures > before + 1, { what: 'two refused handshakes', timeoutMs: 30000 });
    const ready = await rig.httpRequest(`http://127.0.0.1:${api}/ready`);
    assert.equal(ready.status, 503);
    await rig.sleep(2000);
    assert.match(d.stderr(), /kubemq: (cannot connect to|connection to) 127\.0\.0\.1:\d+.*(tls|TLS|certificate|handshake|alert)/);
    // Refused after the handshake, the server never spoke: never "connected",
    // and the outage is one warning, not one per retry.
    assert.doesNotMatch(d.stderr(), /kubemq: (re)?connected to/);
    assert.doesNotMatch(d.stderr(), /kubemq: (re)?subscribed to/, 'refused: never subscribed');
    assert.equal((d.stderr().match(/kubemq: cannot connect to/g) || []).length, 1, d.stderr());
    await d.stop();
  });

  // Queries through one daemon binding while the broker cuts every connection.
  async function cutMidLoad(cut, tag) {
    const peers = await startPeers(c);
    const b = binding(tag, { address: peers.broker.address, channel: `${tag}.q`, target: peers.targetProps, source: { reconnect_interval_seconds: '1' } });
    const { d } = await startDaemon(c, peers.broker, { apiPort: await rig.freePort(), bindings: [b] });
    const client = kubemq.openClient(peers.broker.address, { clientId: `${tag}-requester` });
    c.add(() => client.close());
    ok(await client.query(`${tag}.q`, req({ method: 'create_stream', stream_name: tag })));
    const accepted0 = (await peers.broker.stats()).connections.accepted;

    let running = true;
    const answered = [];
    const failed = [];
    const loops = [0, 1, 2, 3].map(async (w) => {
      for (let i = 0; running; i++) {
        const data = `${tag}-${w}-${i}`;
        const r = await client.query(`${tag}.q`, req({ method: 'put_record', stream_name: tag, partition_key: `k${w}` }, b64(data)), { timeoutMs: 15000 })
          .catch((e) => ({ failure: `code ${e.code}: ${e.details || e.message}` }));
        if (r.failure) failed.push(r.failure);
        else if (r.reply && !r.reply.is_error) answered.push(data);
        else failed.push(r.reply ? r.reply.error : r.error);
        await rig.sleep(5);
      }
    });
    await rig.sleep(500);
    await cut(peers.broker);
    // Served again after the daemon reconnected and resubscribed.
    await d.waitForStderr(/kubemq: \(re\)connected to|kubemq: subscribed to queries/, 20000);
    await peers.broker.waitForSubscribers('queries', `${tag}.q`, { timeoutMs: 20000 });
    const after0 = answered.length;
    await rig.waitFor(() => answered.length > after0 + 10, { timeoutMs: 20000, what: 'queries answered again' });
    running = false;
    await Promise.all(loops);
    // The requester's own connection is cut too (grpc-js: UNAVAILABLE, code 14).
    for (const f of failed) assert.match(String(f), /unavailable|code 14|Error 301|timeout|cancel/i, 'a clear error');
    assert.ok(answered.length > 20, `answered ${answered.length}`);
    const st = await peers.broker.stats();
    assert.ok(st.connections.accepted > accepted0, 'the daemon connected again');
    const seen = new Map();
    for (const r of await rig.readStream(peers.kin.url, tag)) seen.set(r.data, (seen.get(r.data) || 0) + 1);
    for (const v of answered) assert.equal(seen.get(v), 1, `${v} answered ok and written once`);
    for (const [v, n] of seen) assert.equal(n, 1, `${v} written once`);
    assert.ok(rig.pidAlive(d.pid));
    return d;
  }

  it('a plain FIN mid-load (a KubeMQ server stopping): every query answered or failed clearly, then served again', async () => {
    const d = await cutMidLoad((broker) => broker.finConnections({ downMs: 1500 }), 'fin');
    assert.ok(linesOf(d, /kubemq: connection to 127\.0\.0\.1:\d+ lost/).length >= 1, d.stderr());
  });

  it('a GOAWAY mid-load: the same', async () => {
    await cutMidLoad((broker) => broker.goawayConnections({ code: 0, debug: 'test' }), 'goaway');
  });

  it("grpc-go's ping policy (5 min) is never violated over an idle minute", async () => {
    const peers = await startPeers(c, { brokerOpts: { minPingIntervalMs: 300000, maxPingStrikes: 2 } });
    const b = binding('idle', { address: peers.broker.address, channel: 'idle.q', target: peers.targetProps });
    const { d } = await startDaemon(c, peers.broker, { apiPort: await rig.freePort(), bindings: [b] });
    const st0 = (await peers.broker.stats()).connections;
    await rig.sleep(65000);
    const st = (await peers.broker.stats()).connections;
    assert.equal(st.tooManyPings, 0, 'never sent away for pings');
    assert.equal(st.accepted, st0.accepted, 'no reconnect: the connection stayed');
    const client = kubemq.openClient(peers.broker.address, { clientId: 'idle-requester' });
    c.add(() => client.close());
    ok(await client.query('idle.q', req({ method: 'list_streams' })));
    assert.equal(linesOf(d, /lost|too_many_pings/).length, 0, d.stderr());
  });

  it('a 64 MiB message is taken and answered (here: the record is too large for Kinesis)', async () => {
    const peers = await startPeers(c);
    const b = binding('big', { address: peers.broker.address, channel: 'big.q', target: peers.targetProps, source: { do_not_parse_payload: 'true' }, props: { metadata: '{"method":"put_record","stream_name":"big","partition_key":"k"}' } });
    const { d } = await startDaemon(c, peers.broker, { apiPort: await rig.freePort(), bindings: [b] });
    const client = kubemq.openClient(peers.broker.address, { clientId: 'big-requester' });
    c.add(() => client.close());
    const body = Buffer.alloc(64 << 20, 0x61);
    const r = await client.query('big.q', body, { timeoutMs: 60000 });
    fails(r, /1 MiB|1048576|too large|larger/i);
    assert.ok(rig.pidAlive(d.pid));
  });

  it('no libgrpc and no libstdc++ in the binary; at most two long-lived threads', async () => {
    const needed = execFileSync('readelf', ['-d', BIN]).toString().split('\n')
      .map((l) => /\(NEEDED\).*\[(.+)\]/.exec(l)).filter(Boolean).map((m) => m[1]);
    assert.ok(needed.some((n) => /^libnghttp2\./.test(n)), needed.join(' '));
    // Libraries the binary needs (the sanitizers' own runtimes aside, which bring libstdc++)
    // and everything they load.
    for (const lib of needed.filter((n) => !/^lib(asan|ubsan|lsan|tsan)\./.test(n))) {
      assert.doesNotMatch(lib, /grpc|stdc\+\+/, lib);
      const out = execFileSync('sh', ['-c', `ldd "$(ldconfig -p | awk '$1 == "${lib}" {print $NF; exit}')"`]).toString();
      assert.doesNotMatch(out, /libgrpc|libstdc\+\+/, `${lib} loads:\n${out}`);
    }

    const peers = await startPeers(c);
    const b = binding('threads', { address: peers.broker.address, channel: 'th.q', target: peers.targetProps, source: { sources: '3' } });
    const { d } = await startDaemon(c, peers.broker, { apiPort: await rig.freePort(), bindings: [b] });
    const client = kubemq.openClient(peers.broker.address, { clientId: 'th-requester' });
    c.add(() => client.close());
    ok(await client.query('th.q', req({ method: 'create_stream', stream_name: 'th' })));
    await Promise.all(Array.from({ length: 50 }, (_, i) =>
      client.query('th.q', req({ method: 'put_record', stream_name: 'th', partition_key: `p${i}` }, b64(`t${i}`))).then(ok)));
    await rig.sleep(1500); // libcurl's resolver threads are short-lived
    const tasks = fs.readdirSync(`/proc/${d.pid}/task`);
    assert.ok(tasks.length <= 2, `threads: ${tasks.length}`);
  });
});
