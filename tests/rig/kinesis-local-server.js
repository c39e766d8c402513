'use strict';
// kinesis-local (kinesis-mock) on 127.0.0.1 with a ready line. It always opens
// a TLS and a plain listener; port 0 picks free ones, and the two are told
// apart by which one answers plain HTTP /healthcheck.
//   node tests/rig/kinesis-local-server.js [--port 0] [--tls-port 0]
//     [--cert-path FILE] [--shard-limit 1000] [--duration 0ms]
//     [--initialize-streams "a:1,b:2:us-west-2"] [--log-level INFO]
// Other kinesis-mock settings pass through the environment unchanged.
// Ready line: {"ready":true,"port":N,"url":"http://127.0.0.1:N","tlsPort":M,"tlsUrl":"https://127.0.0.1:M"}
require('./bind-loopback');
const net = require('net');
const path = require('path');
const { parseArgs, announceReady, announceFailure, httpRequest, sleep } = require('./proc');

const argv = parseArgs(process.argv.slice(2), ['parent-watch']);
const env = process.env;
const dur = argv.duration === undefined ? '0ms' : String(argv.duration);
const setDefault = (k, v) => { if (env[k] === undefined) env[k] = v; };

env.KINESIS_MOCK_PLAIN_PORT = String(argv.port === undefined ? 0 : argv.port);
env.KINESIS_MOCK_TLS_PORT = String(argv['tls-port'] === undefined ? 0 : argv['tls-port']);
env.KINESIS_MOCK_CERT_PATH = path.resolve(argv['cert-path'] ||
  env.KINESIS_MOCK_CERT_PATH || require.resolve('kinesis-local/server.json'));
if (argv['shard-limit'] !== undefined) env.SHARD_LIMIT = String(argv['shard-limit']);
setDefault('SHARD_LIMIT', '1000');
setDefault('ON_DEMAND_STREAM_COUNT_LIMIT', '100');
for (const k of ['CREATE_STREAM', 'DELETE_STREAM', 'REGISTER_STREAM_CONSUMER', 'DEREGISTER_STREAM_CONSUMER',
  'MERGE_SHARDS', 'SPLIT_SHARD', 'UPDATE_SHARD_COUNT', 'UPDATE_STREAM_MODE', 'START_STREAM_ENCRYPTION',
  'STOP_STREAM_ENCRYPTION']) setDefault(`${k}_DURATION`, dur);
if (argv['initialize-streams']) env.INITIALIZE_STREAMS = String(argv['initialize-streams']);
if (argv['log-level']) env.LOG_LEVEL = String(argv['log-level']);
setDefault('SHOULD_PERSIST_DATA', 'false');

// Watch which ports the mock opens.
const ports = [];
const origListen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...a) {
  this.once('listening', () => {
    const ad = this.address();
    if (ad && typeof ad === 'object') ports.push(ad.port);
  });
  return origListen.apply(this, a);
};

async function isPlain(port) {
  try {
    const r = await httpRequest(`http://127.0.0.1:${port}/healthcheck`, { timeoutMs: 1500 });
    return r.status === 200;
  } catch (_) {
    return false;
  }
}

async function main() {
  require('kinesis-local/main.js');
  const until = Date.now() + 60000;
  for (;;) {
    if (ports.length >= 2) {
      const [a, b] = ports;
      if (await isPlain(a)) return { port: a, tlsPort: b };
      if (await isPlain(b)) return { port: b, tlsPort: a };
    }
    if (Date.now() > until) throw new Error(`kinesis-local not healthy after 60 s (ports seen: ${ports})`);
    await sleep(50);
  }
}

main().then(({ port, tlsPort }) => {
  announceReady({ port, url: `http://127.0.0.1:${port}`, tlsPort, tlsUrl: `https://127.0.0.1:${tlsPort}` },
    { parentWatch: !!argv['parent-watch'] });
}, announceFailure);
