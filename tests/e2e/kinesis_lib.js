'use strict';
// Shared by the aws.kinesis end-to-end tests: a Kinesis stand-in with the
// SigV4 gate in front, a config whose target points at the gate, and
// `kubemq-kinesis invoke` to run one request envelope.
const assert = require('node:assert/strict');
const rig = require('../rig/lib');

const AK = 'AKIDKINESISE2E';
const SK = 'kinesis/e2e+SECRET/0123456789abcdef';

function binding(name, targetProps) {
  return {
    name,
    source: {
      kind: 'kubemq.query',
      name: 'q',
      properties: { address: '127.0.0.1:50000', channel: `query.${name}` },
    },
    target: { kind: 'aws.kinesis', name: 'k', properties: targetProps },
    properties: {},
  };
}

// Start the peer (kinesalite or kinesis-local) and the gate; returns
// {peer, gate, cfg, call, stop}. call(envelope, bindingName) -> reply.
async function start({ local = false, extraBindings = [] } = {}) {
  const handles = [];
  try {
    const peer = local ? await rig.startKinesisLocal() : await rig.startKinesalite();
    handles.push(peer);
    const gate = await rig.startGate({ upstream: peer.url, accessKey: AK, secretKey: SK });
    handles.push(gate);
    const props = {
      aws_key: AK, aws_secret_key: SK, region: 'us-east-1', endpoint: gate.url, max_attempts: '3',
    };
    const bindings = [binding('kinesis', props)];
    for (const b of extraBindings) bindings.push(binding(b.name, { ...props, ...b.props }));
    const cfg = rig.writeConfig({ apiPort: 0, bindings });
    const env = { AWS_REGION: '', AWS_ENDPOINT_URL: '', AWS_ENDPOINT_URL_KINESIS: '' };
    const run = async (envelope, name = 'kinesis') => {
      const r = await rig.invoke(cfg, name, envelope, { env });
      assert.equal(r.code, 0, `invoke exit ${r.code}\n${r.stderr}`);
      assert.ok(r.reply, `no reply JSON on stdout: ${r.stdout}\n${r.stderr}`);
      assert.equal(r.signal, null);
      return r.reply;
    };
    const stop = async () => {
      for (const h of handles.reverse()) await h.stop();
      for (const h of handles) assert.equal(rig.pidAlive(h.pid), false, `pid ${h.pid} still alive`);
    };
    return { peer, gate, cfg, call: run, stop, env };
  } catch (e) {
    for (const h of handles.reverse()) await h.stop();
    throw e;
  }
}

// The reply's data as JSON (null when data is null).
function dataOf(reply) {
  if (reply.data === null) return null;
  return JSON.parse(Buffer.from(reply.data, 'base64').toString('utf8'));
}

function ok(reply) {
  assert.equal(reply.is_error, false, `unexpected error: ${reply.error}`);
  assert.equal(reply.error, '');
  assert.equal(reply.metadata.result, 'ok');
  return reply;
}

function fails(reply, error) {
  assert.equal(reply.is_error, true, `expected an error, got ${JSON.stringify(reply)}`);
  if (error instanceof RegExp) assert.match(reply.error, error);
  else assert.equal(reply.error, error);
  return reply;
}

const b64 = (buf) => Buffer.from(buf).toString('base64');
const req = (metadata, data = null) => ({ metadata, data });

// Every byte value, twice, in a scrambled order.
function allBytes() {
  const b = Buffer.alloc(512);
  for (let i = 0; i < 512; i++) b[i] = (i * 37 + 11) & 0xff;
  return b;
}

// Every record of a stream, via get_records' stream-only form.
async function readAll(call, stream) {
  const r = ok(await call(req({ method: 'get_records', stream_name: stream, limit: '10000' })));
  return dataOf(r).Records;
}

module.exports = { AK, SK, start, dataOf, ok, fails, b64, req, allBytes, readAll, binding };
