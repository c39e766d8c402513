'use strict';
// Shared by the aws.kinesis end-to-end tests: a Kinesis stand-in with the
// SigV4 gate in front, a config whose target points at the gate, and
// `kubemq-kinesis invoke` to run one request envelope. The method tests run
// against both stand-ins (PEERS): kinesalite leaves absent members out of its
// answers, kinesis-local (kinesis-mock, what LocalStack runs) writes them as
// null; both answer timestamps as epoch seconds.
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

// The two Kinesis stand-ins, for tests that run against each.
const PEERS = [
  { name: 'kinesalite', local: false },
  { name: 'kinesis-local', local: true },
];

// Go's JSON of a time.Time as kubemq-targets answered it: RFC 3339, UTC,
// the fraction without trailing zeros (milliseconds from the wire).
const GO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,2}[1-9])?Z$/;

// Every member named *Timestamp in v (a reply's data), as [path, value].
function timestamps(v, path = '', out = []) {
  if (Array.isArray(v)) v.forEach((x, i) => timestamps(x, `${path}[${i}]`, out));
  else if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if (k.endsWith('Timestamp')) out.push([`${path}.${k}`, x]);
      timestamps(x, `${path}.${k}`, out);
    }
  }
  return out;
}

// The Go-format check every reply of call() gets: each timestamp in its data
// is a Go time string (with timestamp_format epoch: a number).
function checkTimes(reply, epoch = false) {
  if (!reply || typeof reply.data !== 'string') return;
  let data;
  try { data = JSON.parse(Buffer.from(reply.data, 'base64').toString('utf8')); } catch (_) { return; }
  for (const [path, v] of timestamps(data)) {
    if (v === null) continue;
    if (epoch) assert.equal(typeof v, 'number', `${path}: ${JSON.stringify(v)} is not epoch seconds`);
    else assert.match(String(v), GO_TIME, `${path}: ${JSON.stringify(v)} is not a Go time`);
  }
}

// A Go time string matches epoch seconds from the service (to the millisecond).
function sameTime(goTime, epochSeconds, what) {
  assert.match(goTime, GO_TIME, `${what}: ${goTime}`);
  assert.equal(typeof epochSeconds, 'number', `${what}: the service answered ${epochSeconds}`);
  assert.equal(Date.parse(goTime), Math.round(epochSeconds * 1000),
    `${what}: ${goTime} vs the service's ${epochSeconds}`);
}

// Start the peer (kinesalite or kinesis-local) and the gate; returns
// {peer, gate, cfg, call, direct, stop}. call(envelope, bindingName) -> reply
// (checked by checkTimes); direct(op, payload) calls the stand-in itself.
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
      const b = extraBindings.find((x) => x.name === name);
      checkTimes(r.reply, !!(b && b.props.timestamp_format === 'epoch'));
      return r.reply;
    };
    const direct = async (op, payload) => {
      const r = await rig.kinesisCall(peer.url, op, payload, { accessKey: AK, secretKey: SK });
      assert.equal(r.status, 200, `${op}: ${r.text}`);
      return r.json;
    };
    const stop = async () => {
      for (const h of handles.reverse()) await h.stop();
      for (const h of handles) assert.equal(rig.pidAlive(h.pid), false, `pid ${h.pid} still alive`);
    };
    return { peer, gate, cfg, call: run, direct, stop, env };
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

module.exports = {
  AK, SK, PEERS, GO_TIME, start, dataOf, ok, fails, b64, req, allBytes, readAll, binding, timestamps,
  checkTimes, sameTime,
};
