'use strict';
// Shared by the daemon end-to-end tests: the real client (kubemq-js) -> the stand-in
// broker -> kubemq-kinesis (KK_BIN) -> the SigV4 gate -> kinesalite (or kinesis-local).
// Every process is stopped by PID at the end of the test or suite that started it.
const assert = require('node:assert/strict');
const rig = require('../rig/lib');
const kubemq = require('../rig/kubemq');

const AK = 'AKIDDAEMONE2E';
const SK = 'daemon/e2e+SECRET/fedcba9876543210';
// Nothing from the environment changes where the target goes.
const CLEAN_ENV = { AWS_REGION: '', AWS_DEFAULT_REGION: '', AWS_ENDPOINT_URL: '', AWS_ENDPOINT_URL_KINESIS: '' };

// Cleanups run last-in first-out: daemons stop before the peers they talk to.
function cleanups() {
  const fns = [];
  return {
    add(fn) {
      fns.push(fn);
    },
    async run() {
      const errors = [];
      while (fns.length) {
        try {
          await fns.pop()();
        } catch (e) {
          errors.push(e);
        }
      }
      if (errors.length) throw errors[0];
    },
  };
}

// kinesalite (or kinesis-local) behind the gate, and the stand-in broker.
async function startPeers(c, { local = false, authToken, brokerPort, brokerOpts = {} } = {}) {
  const kin = local ? await rig.startKinesisLocal() : await rig.startKinesalite();
  c.add(() => kin.stop());
  const gate = await rig.startGate({ upstream: kin.url, accessKey: AK, secretKey: SK });
  c.add(() => gate.stop());
  const broker = await rig.startBroker({ authToken, port: brokerPort, ...brokerOpts });
  c.add(() => broker.stop());
  const targetProps = { aws_key: AK, aws_secret_key: SK, region: 'us-east-1', endpoint: gate.url };
  return { kin, gate, broker, targetProps };
}

// One binding of a config. opts: kind, address, channel, group, source (more source
// properties), target (target properties), props (binding properties).
function binding(name, o) {
  return {
    name,
    source: {
      kind: o.kind || 'kubemq.query',
      name: 'kubemq',
      properties: { address: o.address, channel: o.channel, ...(o.group ? { group: o.group } : {}), ...(o.source || {}) },
    },
    target: { kind: 'aws.kinesis', name: 'kinesis', properties: { ...o.target } },
    properties: { ...(o.props || {}) },
  };
}

// Start the daemon on config (object), stop it at cleanup, and wait until every binding
// is subscribed in the broker (and /ready says 200 when the API is on).
async function startDaemon(c, broker, config, { env = {}, args = [], waitReady = true } = {}) {
  const path = rig.writeConfig(config);
  const d = rig.startDaemon(path, { env: { ...CLEAN_ENV, ...env }, args });
  c.add(async () => {
    if (rig.pidAlive(d.pid)) await d.stop('SIGKILL');
  });
  const api = config.apiPort ? `http://127.0.0.1:${config.apiPort}` : null;
  if (waitReady) await waitSubscribed(d, broker, config, api);
  return { d, path, api };
}

async function waitSubscribed(d, broker, config, api) {
  try {
    for (const b of config.bindings) {
      const p = b.source.properties;
      if (/queue/.test(b.source.kind)) continue; // pulls: nothing to subscribe (see /ready)
      const kind = /command/.test(b.source.kind) ? 'commands'
        : /events-store/.test(b.source.kind) ? 'events_store'
          : /events/.test(b.source.kind) ? 'events' : 'queries';
      const n = Number(p.sources || 1);
      await broker.waitForSubscribers(kind, p.channel, { count: n, timeoutMs: 20000 });
    }
    if (api) await rig.waitHttp(`${api}/ready`, { status: 200, timeoutMs: 20000 });
  } catch (e) {
    e.message += `\n--- daemon stderr ---\n${d.stderr()}`;
    throw e;
  }
  await rig.sleep(200); // the broker routes to a stream once its first read is posted
}

// The reply's data as JSON (null when data is null).
function dataOf(reply) {
  if (reply.data === null) return null;
  return JSON.parse(Buffer.from(reply.data, 'base64').toString('utf8'));
}

// A query answered with success: the KubeMQ-level fields and the envelope agree.
function ok(r) {
  assert.ok(r.reply, `no reply envelope: ${r.body && r.body.toString()} (error ${r.error})`);
  assert.equal(r.reply.is_error, false, `unexpected error: ${r.reply.error}`);
  assert.equal(r.executed, true);
  assert.equal(r.error, '');
  assert.equal(r.reply.metadata.result, 'ok');
  return r.reply;
}

// A query answered with an error: in the envelope and as the KubeMQ-level error.
function fails(r, error) {
  assert.ok(r.reply, `no reply envelope: ${r.body && r.body.toString()}`);
  assert.equal(r.reply.is_error, true, `expected an error, got ${JSON.stringify(r.reply)}`);
  assert.equal(r.executed, false);
  assert.equal(r.error, r.reply.error, 'the KubeMQ-level error is the envelope error');
  if (error instanceof RegExp) assert.match(r.reply.error, error);
  else if (error !== undefined) assert.equal(r.reply.error, error);
  return r.reply;
}

const b64 = (buf) => Buffer.from(buf).toString('base64');
const req = (metadata, data = null) => ({ metadata, data });

// Lines of the daemon's stderr matching re.
const linesOf = (d, re) => d.stderr().split('\n').filter((l) => re.test(l));

module.exports = {
  AK, SK, CLEAN_ENV, cleanups, startPeers, binding, startDaemon, waitSubscribed,
  dataOf, ok, fails, b64, req, linesOf, rig, kubemq,
};
