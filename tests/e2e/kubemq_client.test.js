// kubemq_client.test.js - the C KubeMQ client through `kubemq-kinesis send`, against the
// stand-in broker, answered by the real kubemq-js 1.2.3 client (or raw grpc-js for TLS).
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const os = require('node:os');
const { createRequire } = require('node:module');

const RIG = path.join(__dirname, '..', 'rig');
const rigRequire = createRequire(path.join(RIG, 'package.json'));
const kubemq = rigRequire('kubemq-js');
const grpc = rigRequire('@grpc/grpc-js');
const protoLoader = rigRequire('@grpc/proto-loader');
const rig = require(path.join(RIG, 'lib.js'));
const { startBroker, KUBEMQ_PROTO, KUBEMQ_LOADER_OPTS } = rig;

const BIN = process.env.KK_BIN || path.join(__dirname, '..', '..', 'build', 'kubemq-kinesis');
const TOKEN = 'e2e-s3cret-token';

// Runs `kubemq-kinesis send ...args` with stdin; resolves {code, stdout, stderr}.
function send(args, stdin = '', { timeoutMs = 60000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ['send', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out = [];
    const err = [];
    const timer = setTimeout(() => {
      process.kill(child.pid, 'SIGKILL');
      reject(new Error(`send ${args.join(' ')}: no exit after ${timeoutMs} ms`));
    }, timeoutMs);
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() });
    });
    child.stdin.on('error', () => {}); // usage errors exit before reading
    child.stdin.end(stdin);
  });
}

// kubemq-js clients and subscriptions, closed at the end (or the process hangs).
function tracker() {
  const subs = [];
  const clients = [];
  return {
    client(Kind, b, clientId, extra = {}) {
      const c = new kubemq[Kind]({ address: b.address, clientId, ...extra });
      clients.push(c);
      return c;
    },
    async sub(p) {
      const s = await p;
      subs.push(s);
      return s;
    },
    closeAll() {
      for (const s of subs.splice(0)) s.unsubscribe();
      for (const c of clients.splice(0)) c.close();
    },
  };
}

describe('kubemq-kinesis send (C client) against the stand-in broker', () => {
  let b;
  const t = tracker();
  const seen = [];

  before(async () => {
    b = await startBroker({ port: 0 });
    const q = t.client('QueriesClient', b, 'js-responder');
    await t.sub(
      q.subscribe({ channel: 'e2e.q' }, (err, msg) => {
        if (err || !msg) return;
        seen.push(msg);
        const body = Buffer.concat([Buffer.from('pong:'), Buffer.from(msg.body)]);
        q.response({ id: msg.id, replyChannel: msg.replyChannel, clientId: 'js-responder', executed: true, error: '', metadata: `re:${msg.metadata}`, body }).catch(() => {});
      }),
    );
    const c = t.client('CommandsClient', b, 'js-commander');
    await t.sub(
      c.subscribe({ channel: 'e2e.c' }, (err, msg) => {
        if (err || !msg) return;
        const fail = Buffer.from(msg.body).toString() === 'fail';
        c.response({ id: msg.id, replyChannel: msg.replyChannel, clientId: 'js-commander', executed: !fail, error: fail ? 'nope: "quoted"' : '' }).catch(() => {});
      }),
    );
    await b.waitForSubscribers('queries', 'e2e.q');
    await b.waitForSubscribers('commands', 'e2e.c');
  });

  after(async () => {
    t.closeAll();
    if (b) await b.stop();
  });

  it('sends a query and prints the reply body', async () => {
    const r = await send(['--address', b.address, '--channel', 'e2e.q', '--metadata', 'm-1', '--client-id', 'cli-1'], 'hello');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), 'pong:hello');
    const m = seen[seen.length - 1];
    assert.equal(Buffer.from(m.body).toString(), 'hello');
    assert.equal(m.metadata, 'm-1');
    assert.equal(m.channel, 'e2e.q');
  });

  it('passes binary bodies through unchanged', async () => {
    const body = Buffer.from([0, 1, 2, 255, 10, 13, 0, 128]);
    const r = await send(['--address', b.address, '--channel', 'e2e.q'], body);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout, Buffer.concat([Buffer.from('pong:'), body]));
  });

  it('sends commands and prints executed/error as JSON', async () => {
    let r = await send(['--address', b.address, '--channel', 'e2e.c', '--command'], 'do-it');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.toString()), { executed: true, error: '' });
    r = await send(['--address', b.address, '--channel', 'e2e.c', '--command'], 'fail');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.toString()), { executed: false, error: 'nope: "quoted"' });
  });

  it('reports the broker timeout (Error 301) with exit 1', async () => {
    const r = await send(['--address', b.address, '--channel', 'e2e.nobody', '--timeout-ms', '500'], 'x');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Error 301: timeout for request message/);
    assert.equal(r.stdout.length, 0);
  });

  it('reports broker validation errors with exit 1', async () => {
    const r = await send(['--address', b.address, '--channel', 'bad channel'], 'x');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Error 108/);
  });

  it('rejects bad usage with exit 2', async () => {
    let r = await send(['--address', b.address], 'x');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--channel/);
    r = await send(['--address', b.address, '--channel', 'e2e.q', '--timeout-ms', 'soon'], 'x');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--timeout-ms/);
    r = await send(['--address', b.address, '--channel', 'e2e.q', 'extra'], 'x');
    assert.equal(r.code, 2);
  });
});

describe('send with an auth token', () => {
  let b;
  const t = tracker();

  before(async () => {
    b = await startBroker({ port: 0, authToken: TOKEN });
    const q = t.client('QueriesClient', b, 'js-auth', { authToken: TOKEN });
    await t.sub(
      q.subscribe({ channel: 'auth.q' }, (err, msg) => {
        if (err || !msg) return;
        q.response({ id: msg.id, replyChannel: msg.replyChannel, clientId: 'js-auth', executed: true, error: '', body: Buffer.from('authorized') }).catch(() => {});
      }),
    );
    await b.waitForSubscribers('queries', 'auth.q');
  });

  after(async () => {
    t.closeAll();
    if (b) await b.stop();
  });

  it('is accepted with the token', async () => {
    const r = await send(['--address', b.address, '--channel', 'auth.q', '--auth-token', TOKEN], 'x');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), 'authorized');
  });

  it('is read from --auth-token-file (white space around it dropped)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kk-token-'));
    try {
      const file = path.join(dir, 'token');
      fs.writeFileSync(file, `  ${TOKEN}\n`, { mode: 0o600 });
      let r = await send(['--address', b.address, '--channel', 'auth.q', '--auth-token-file', file], 'x');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), 'authorized');
      r = await send(['--address', b.address, '--channel', 'auth.q', '--auth-token-file', path.join(dir, 'missing')], 'x');
      assert.equal(r.code, 2);
      assert.match(r.stderr, /--auth-token-file: cannot read .*missing: No such file or directory/);
      fs.writeFileSync(file, '\n');
      r = await send(['--address', b.address, '--channel', 'auth.q', '--auth-token-file', file], 'x');
      assert.equal(r.code, 2);
      assert.match(r.stderr, /--auth-token-file: .*token is empty/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is refused without it or with another, and the token is never printed', async () => {
    let r = await send(['--address', b.address, '--channel', 'auth.q'], 'x');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /UNAUTHENTICATED.*Error 421/);
    r = await send(['--address', b.address, '--channel', 'auth.q', '--auth-token', 'wrong-' + TOKEN], 'x');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Error 421/);
    assert.ok(!r.stderr.includes(TOKEN), r.stderr);
  });
});

describe('send over TLS', () => {
  let b;
  let cert;
  let raw;
  let stream;

  before(async () => {
    cert = rig.makeTestCert();
    b = await startBroker({ port: 0, tlsCert: cert.certPath, tlsKey: cert.keyPath });
    // Raw grpc-js responder: kubemq-js 1.2.3 cannot trust a private CA.
    const def = protoLoader.loadSync(KUBEMQ_PROTO, KUBEMQ_LOADER_OPTS);
    const Ctor = grpc.loadPackageDefinition(def).kubemq.kubemq;
    raw = new Ctor(b.address, grpc.credentials.createSsl(fs.readFileSync(cert.certPath)));
    stream = raw.SubscribeToRequests({ SubscribeTypeData: 4, ClientID: 'raw-tls', Channel: 'tls.q' });
    stream.on('error', () => {});
    stream.on('data', (req) => {
      raw.SendResponse({ ClientID: 'raw-tls', RequestID: req.RequestID, ReplyChannel: req.ReplyChannel, Executed: true, Body: Buffer.concat([Buffer.from('tls:'), req.Body]) }, () => {});
    });
    await b.waitForSubscribers('queries', 'tls.q');
  });

  after(async () => {
    if (stream) stream.cancel();
    if (raw) raw.close();
    if (b) await b.stop();
    if (cert) fs.rmSync(cert.dir, { recursive: true, force: true });
  });

  it('round-trips with the CA file', async () => {
    const r = await send(['--address', b.address, '--channel', 'tls.q', '--tls', '--ca-file', cert.certPath], 'secure');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), 'tls:secure');
  });

  it('fails clearly in plaintext or without a trusted CA', async () => {
    let r = await send(['--address', b.address, '--channel', 'tls.q', '--timeout-ms', '2000'], 'x');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unavailable|UNAVAILABLE|INTERNAL|UNKNOWN/);
    r = await send(['--address', b.address, '--channel', 'tls.q', '--tls', '--timeout-ms', '2000'], 'x');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unavailable/);
    r = await send(['--address', b.address, '--channel', 'tls.q', '--tls', '--ca-file', path.join(cert.dir, 'missing.pem')], 'x');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /tls: ca_file: cannot read \S*missing\.pem: No such file or directory/);
  });
});

describe('send with the broker down', () => {
  it('fails fast with a clear error and exit 1', async () => {
    const b = await startBroker({ port: 0 });
    const address = b.address;
    await b.stop();
    const started = Date.now();
    const r = await send(['--address', address, '--channel', 'down.q', '--timeout-ms', '30000'], 'x');
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`kubemq at ${address.replace(/\./g, '\\.')} unavailable`));
    assert.match(r.stderr, /Connection refused|connect/i);
    // Fail-fast, not the 30 s request timeout (a generous bound, not a speed test).
    assert.ok(Date.now() - started < 25000);
  });
});
