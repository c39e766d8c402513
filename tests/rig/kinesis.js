'use strict';
// Module API for the two Kinesis stand-ins: kinesalite (fast data plane) and
// kinesis-local (consumers, ARNs, SubscribeToShard). Each runs as a child
// process on 127.0.0.1 and is stopped by PID.
const { startScript, waitHttp } = require('./proc');
const { kinesisCall } = require('./sigv4');

// opts: port (0), createStreamMs/deleteStreamMs/updateStreamMs (0), shardLimit
// (1000), path (LevelDB dir; in memory if absent), ssl/key/cert, env, timeoutMs.
// Resolves {url, port, pid, stop(), stderr(), exited}.
async function startKinesalite(opts = {}) {
  const args = ['--port', String(opts.port || 0),
    '--createStreamMs', String(opts.createStreamMs ?? 0),
    '--deleteStreamMs', String(opts.deleteStreamMs ?? 0),
    '--updateStreamMs', String(opts.updateStreamMs ?? 0),
    '--shardLimit', String(opts.shardLimit ?? 1000)];
  if (opts.path) args.push('--path', opts.path);
  if (opts.ssl) {
    args.push('--ssl');
    if (opts.key) args.push('--key', opts.key);
    if (opts.cert) args.push('--cert', opts.cert);
  }
  const p = await startScript('kinesalite-server.js', args, {
    env: opts.env, timeoutMs: opts.timeoutMs || 30000, name: 'kinesalite',
  });
  const { port, url } = p.ready;
  return { url, port, pid: p.pid, stop: p.stop, stderr: p.stderr, exited: p.exited };
}

// opts: port (0), tlsPort (0), certPath (absolute; default the bundled
// server.json), shardLimit (1000), duration ('0ms', every *_DURATION),
// initializeStreams, logLevel, env (any other kinesis-mock variable), timeoutMs.
// Resolves {url, port, tlsUrl, tlsPort, pid, stop(), stderr(), exited}.
// stop() sends SIGTERM and SIGKILL after 3 s: kinesis-local can hang on exit.
async function startKinesisLocal(opts = {}) {
  const args = ['--port', String(opts.port || 0), '--tls-port', String(opts.tlsPort || 0),
    '--duration', String(opts.duration ?? '0ms')];
  if (opts.certPath) args.push('--cert-path', opts.certPath);
  if (opts.shardLimit !== undefined) args.push('--shard-limit', String(opts.shardLimit));
  if (opts.initializeStreams) args.push('--initialize-streams', opts.initializeStreams);
  if (opts.logLevel) args.push('--log-level', opts.logLevel);
  const p = await startScript('kinesis-local-server.js', args, {
    env: opts.env, timeoutMs: opts.timeoutMs || 90000, name: 'kinesis-local', graceMs: 3000,
  });
  const { port, url, tlsPort, tlsUrl } = p.ready;
  // The wrapper already saw /healthcheck answer; check once more from here.
  await waitHttp(`${url}/healthcheck`, { timeoutMs: 30000 }).catch(async (e) => {
    await p.stop();
    throw e;
  });
  return { url, port, tlsUrl, tlsPort, pid: p.pid, stop: p.stop, stderr: p.stderr, exited: p.exited };
}

// Every record of a stream, read straight from the stand-in at url (not through
// the daemon), shard by shard from TRIM_HORIZON: [{data (utf8), seq, shard}].
async function readStream(url, stream, { accessKey = 'AKIDREADSTREAM', secretKey = 'read-stream' } = {}) {
  const call = (op, payload) => kinesisCall(url, op, payload, { accessKey, secretKey });
  const shards = (await call('ListShards', { StreamName: stream })).json.Shards;
  const out = [];
  for (const s of shards) {
    let it = (await call('GetShardIterator', { StreamName: stream, ShardId: s.ShardId, ShardIteratorType: 'TRIM_HORIZON' })).json.ShardIterator;
    for (;;) {
      const r = (await call('GetRecords', { ShardIterator: it, Limit: 10000 })).json;
      for (const rec of r.Records) {
        out.push({ data: Buffer.from(rec.Data, 'base64').toString(), seq: rec.SequenceNumber, shard: s.ShardId });
      }
      if (!r.Records.length || !r.NextShardIterator) break;
      it = r.NextShardIterator;
    }
  }
  return out;
}

module.exports = { startKinesalite, startKinesisLocal, readStream };
