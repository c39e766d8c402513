#!/usr/bin/env node
// broker.js - stand-in KubeMQ broker: gRPC service kubemq.kubemq on 127.0.0.1 for tests.
//
//   node tests/rig/broker.js --port 0 [--host 127.0.0.1|::1] [--auth-token T] [--tls-cert F --tls-key F [--tls-ca F]]
//        [--control-port 0] [--sub-buffer 100] [--slow-consumer-wait-ms 2000]
//        [--min-ping-interval-ms N [--max-ping-strikes 2]] [--parent-watch]
//
// Prints one line {"ready":true,"port":N,"control":M} when listening; SIGTERM ends
// open streams with UNAVAILABLE and exits 0. The control port serves GET /stats,
// POST /listener/stop|start, /reset, /durables/reset, /connections/fin|goaway
// (see README.md). Clients connect to a relay (broker-front.js) in front of the
// grpc-js server, which counts, cuts and polices connections.
// In-process use: createBroker(opts) -> Broker; as a child process: broker-lib.js.
'use strict';

const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const C = require('./broker-common');
const { Front } = require('./broker-front');
const { PubSub } = require('./broker-pubsub');
const { Queues } = require('./broker-queues');
const { parseArgs, announceReady, announceFailure } = require('./proc');

const PROTO = path.join(__dirname, '../../proto/kubemq.proto');
const LOADER_OPTS = { keepCase: true, longs: String, enums: Number, defaults: true, oneofs: true };
const HOST = '127.0.0.1';
const MAX_MSG = 100 * 1024 * 1024;
// No keepalive options: grpc-js servers ignore grpc.http2.min_ping_interval_without_data_ms
// and max_ping_strikes (1.14.7 has no ping enforcement); the front applies grpc-go's policy.
const SERVER_OPTS = {
  'grpc.max_receive_message_length': MAX_MSG,
  'grpc.max_send_message_length': MAX_MSG,
};
const GOING_AWAY = { code: grpc.status.UNAVAILABLE, details: 'stand-in broker is shutting down' };

let serviceDef = null;
function service() {
  if (!serviceDef) {
    const def = protoLoader.loadSync(PROTO, LOADER_OPTS);
    serviceDef = grpc.loadPackageDefinition(def).kubemq.kubemq.service;
  }
  return serviceDef;
}

const status = (code, details) => ({ code: grpc.status[code], details, message: details });

class Broker {
  // opts: {port, authToken, tls: {cert, key, ca}, subBuffer (100), slowConsumerWaitMs (2000),
  //        minPingIntervalMs (0 = no keepalive enforcement), maxPingStrikes (2), log(line)}
  constructor(opts = {}) {
    this.authToken = opts.authToken || '';
    this.version = opts.version || 'stand-in';
    this.startTime = Date.now();
    this.log = opts.log || ((line) => process.stderr.write(`stand-in broker: ${line}\n`));
    this.server = null; // grpc-js, on a private loopback port behind the front
    this.grpcPort = 0;
    this.active = new Set(); // open calls: {peerPort, fail(status), drop()}
    const minPing = Number(opts.minPingIntervalMs || 0);
    this.front = new Front({
      port: opts.port,
      host: opts.host || HOST, // where clients connect; the control port stays on 127.0.0.1
      tls: opts.tls || null,
      upstreamPort: () => this.grpcPort,
      ping: minPing > 0 ? { minIntervalMs: minPing, maxStrikes: opts.maxPingStrikes === undefined ? 2 : Number(opts.maxPingStrikes) } : null,
      beforeCut: (peerPort) => this.dropCalls(peerPort),
      log: this.log,
    });
    this.pubsub = new PubSub({ subBuffer: opts.subBuffer, slowConsumerWaitMs: opts.slowConsumerWaitMs, log: this.log });
    this.queues = new Queues();
    this.resetCounters();
  }

  get port() {
    return this.front.port;
  }

  resetCounters() {
    this.calls = {};
    this.authFailures = 0;
  }

  // Starts grpc-js and the front (again on the same port after stopListener()).
  async start() {
    if (!this.server) {
      const server = new grpc.Server(SERVER_OPTS);
      server.addService(service(), this.handlers());
      this.grpcPort = await new Promise((resolve, reject) =>
        server.bindAsync(`${HOST}:0`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
      );
      this.server = server;
    }
    return this.front.listen();
  }

  // Ends every open call with UNAVAILABLE and closes the port; queues and stored
  // events survive (like a broker restart with persistence).
  async stopListener() {
    const server = this.server;
    await this.front.stopListening();
    if (!server) return;
    this.server = null;
    for (const e of [...this.active]) e.fail(GOING_AWAY);
    await new Promise((resolve) => {
      const t = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, 2000);
      server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  async close() {
    await this.stopListener();
    this.front.destroyAll();
    this.queues.reset();
  }

  // The calls of a connection the front is about to cut end here first, without a
  // word to the client, so their subscriptions are gone before it sees the FIN.
  dropCalls(peerPort) {
    for (const e of [...this.active]) if (e.peerPort === peerPort) e.drop();
  }

  // Every client connection ends with a plain FIN (downMs > 0: refused for that long
  // too, as a restarting server). Resolves with the number of connections cut.
  async finConnections({ downMs = 0 } = {}) {
    if (downMs > 0) await this.front.stopListening();
    const n = this.front.finAll();
    if (downMs > 0) {
      setTimeout(() => {
        if (this.server) this.front.listen().catch((e) => this.log(`listening again: ${e.message}`));
      }, downMs);
    }
    return n;
  }

  goawayConnections(opts) {
    return this.front.goawayAll(opts);
  }

  reset() {
    this.queues.reset();
    this.pubsub.resetStore();
    this.pubsub.resetStats();
    this.resetCounters();
  }

  stats() {
    const ps = this.pubsub.stats();
    return {
      listening: !!this.front.server,
      port: this.port,
      uptimeSeconds: Math.floor((Date.now() - this.startTime) / 1000),
      calls: { ...this.calls },
      authFailures: this.authFailures,
      openCalls: this.active.size,
      connections: this.front.stats(),
      ...ps,
      settings: {
        ...ps.settings,
        minPingIntervalMs: this.front.ping ? this.front.ping.minIntervalMs : 0,
        maxPingStrikes: this.front.ping ? this.front.ping.maxStrikes : 0,
        tls: !this.front.tls ? 'off' : this.front.tls.ca ? 'mutual' : 'on',
      },
      queues: this.queues.stats(),
    };
  }

  authorized(call) {
    if (!this.authToken) return true;
    const v = call.metadata.get('authorization');
    if (v.length === 1 && String(v[0]) === this.authToken) return true;
    this.authFailures++;
    return false;
  }

  // Wraps a unary handler: fn(request, reply(err, res), call) may return a cancel function.
  unary(name, fn) {
    return (call, cb) => {
      this.calls[name] = (this.calls[name] || 0) + 1;
      if (!this.authorized(call)) return cb(status('UNAUTHENTICATED', C.ERR[421]));
      let answered = false;
      let cancel = null;
      const entry = {
        peerPort: peerPort(call),
        fail: (st) => {
          if (cancel) cancel();
          reply(st);
        },
        drop: () => {
          if (answered) return;
          answered = true;
          this.active.delete(entry);
          if (cancel) cancel();
        },
      };
      const reply = (err, res) => {
        if (answered) return;
        answered = true;
        this.active.delete(entry);
        cb(err, res);
      };
      this.active.add(entry);
      call.on('cancelled', entry.drop);
      cancel = fn(call.request, reply, call) || null;
    };
  }

  // Wraps a streaming handler: fn(call, entry) sets entry.onClose / entry.onFail.
  stream(name, fn) {
    return (call) => {
      this.calls[name] = (this.calls[name] || 0) + 1;
      if (!this.authorized(call)) return call.emit('error', status('UNAUTHENTICATED', C.ERR[421]));
      const entry = {
        peerPort: peerPort(call),
        closed: false,
        onClose: null,
        // false: grpc-js buffers more than its high-water mark; wait for 'drain'
        write: (m) => (entry.closed ? true : call.write(m)),
        end: (st) => {
          if (entry.closed) return;
          close();
          if (st) call.emit('error', st);
          else call.end();
        },
        fail: (st) => entry.end(st),
        drop: () => close(),
      };
      const close = () => {
        if (entry.closed) return;
        entry.closed = true;
        this.active.delete(entry);
        if (entry.onClose) entry.onClose();
      };
      this.active.add(entry);
      call.on('cancelled', close);
      call.on('error', close);
      call.on('finish', close);
      fn(call, entry);
    };
  }

  subscribe(call, entry, req, kind) {
    const r = this.pubsub.subscribe(req, kind, { write: entry.write });
    if (r.error) return entry.end(status('INTERNAL', r.error));
    entry.onClose = () => this.pubsub.unsubscribe(r.sub);
    call.on('drain', r.sub.drain);
  }

  handlers() {
    const ps = this.pubsub;
    const qs = this.queues;
    return {
      Ping: this.unary('Ping', (req, reply) =>
        reply(null, {
          Host: os.hostname(),
          Version: this.version,
          ServerStartTime: Math.floor(this.startTime / 1000),
          ServerUpTimeSeconds: Math.floor((Date.now() - this.startTime) / 1000),
        }),
      ),

      SendEvent: this.unary('SendEvent', (ev, reply) => {
        const r = ps.sendEvent(ev);
        reply(r.error ? status('INTERNAL', r.error) : null, r.result);
      }),

      SendEventsStream: this.stream('SendEventsStream', (call, entry) => {
        call.on('data', (ev) => {
          const r = ps.sendEvent(ev);
          if (r.error) entry.write({ EventID: ev.EventID, Sent: false, Error: r.error });
          else if (ev.Store) entry.write(r.result);
        });
        call.on('end', () => entry.end());
      }),

      SubscribeToEvents: this.stream('SubscribeToEvents', (call, entry) => {
        const req = call.request;
        const kind = { [C.SUB.Events]: 'events', [C.SUB.EventsStore]: 'events_store' }[req.SubscribeTypeData];
        const err = kind ? C.validateSubscribeEvents(req) : C.ERR[207];
        if (err) return entry.end(status('INTERNAL', err));
        this.subscribe(call, entry, req, kind);
      }),

      SubscribeToRequests: this.stream('SubscribeToRequests', (call, entry) => {
        const req = call.request;
        const kind = { [C.SUB.Commands]: 'commands', [C.SUB.Queries]: 'queries' }[req.SubscribeTypeData];
        const err = kind ? C.validateSubscribeRequests(req) : C.ERR[207];
        if (err) return entry.end(status('INTERNAL', err));
        this.subscribe(call, entry, req, kind);
      }),

      SendRequest: this.unary('SendRequest', (req, reply) =>
        ps.sendRequest(req, (err, res) => reply(err ? status(err.code, err.details) : null, res)),
      ),

      SendResponse: this.unary('SendResponse', (res, reply) => {
        const err = ps.sendResponse(res);
        reply(err ? status('INTERNAL', err) : null, {});
      }),

      SendQueueMessage: this.unary('SendQueueMessage', (msg, reply) => reply(null, qs.send(msg))),

      SendQueueMessagesBatch: this.unary('SendQueueMessagesBatch', (req, reply) => {
        const r = qs.sendBatch(req);
        reply(r.error ? status('UNKNOWN', r.error) : null, r.response);
      }),

      ReceiveQueueMessages: this.unary('ReceiveQueueMessages', (req, reply) => qs.receive(req, (res) => reply(null, res))),

      AckAllQueueMessages: this.unary('AckAllQueueMessages', (req, reply) => reply(null, qs.ackAll(req))),

      StreamQueueMessage: this.stream('StreamQueueMessage', (call, entry) => {
        const t = qs.transaction({ send: entry.write, end: () => entry.end() });
        call.on('data', (r) => t.onRequest(r));
        entry.onClose = () => t.cancel();
      }),
    };
  }
}

// "127.0.0.1:43210" -> 43210: grpc-js's peer is the front's connection to it.
function peerPort(call) {
  const m = /:(\d+)$/.exec(call.getPeer ? call.getPeer() : '');
  return m ? Number(m[1]) : 0;
}

function createBroker(opts) {
  return new Broker(opts);
}

// Tiny JSON control surface on its own loopback port.
function startControl(broker, port) {
  const server = http.createServer((req, res) => {
    const send = (code, body) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const route = `${req.method} ${req.url.split('?')[0]}`;
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    const body = () => {
      const text = Buffer.concat(chunks).toString('utf8').trim();
      if (!text) return {};
      const v = JSON.parse(text);
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('the body must be a JSON object');
      return v;
    };
    const num = (o, k, def) => {
      if (o[k] === undefined) return def;
      if (!Number.isInteger(o[k]) || o[k] < 0) throw new Error(`invalid ${k}: ${JSON.stringify(o[k])}`);
      return o[k];
    };
    const run = async () => {
      switch (route) {
        case 'GET /stats':
          return send(200, broker.stats());
        case 'POST /listener/stop':
          await broker.stopListener();
          return send(200, { ok: true, listening: false });
        case 'POST /listener/start':
          await broker.start();
          return send(200, { ok: true, listening: true, port: broker.port });
        case 'POST /reset':
          broker.reset();
          return send(200, { ok: true });
        case 'POST /durables/reset':
          broker.pubsub.resetDurables();
          return send(200, { ok: true });
        case 'POST /connections/fin': {
          const o = body();
          return send(200, { ok: true, cut: await broker.finConnections({ downMs: num(o, 'downMs', 0) }) });
        }
        case 'POST /connections/goaway': {
          const o = body();
          const debug = o.debug === undefined ? '' : String(o.debug);
          return send(200, { ok: true, cut: broker.goawayConnections({ code: num(o, 'code', 0), debug }) });
        }
        default:
          return send(404, { error: `unknown route ${route}` });
      }
    };
    req.on('end', () => run().catch((e) => send(e instanceof SyntaxError || /^(invalid|the body)/.test(e.message) ? 400 : 500, { error: e.message })));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, HOST, () => resolve(server));
  });
}

function parseOptions(argv) {
  const a = parseArgs(argv, ['parent-watch']);
  const known = new Set(['_', 'port', 'host', 'control-port', 'auth-token', 'tls-cert', 'tls-key', 'tls-ca', 'sub-buffer',
    'slow-consumer-wait-ms', 'min-ping-interval-ms', 'max-ping-strikes', 'parent-watch']);
  for (const k of Object.keys(a)) if (!known.has(k)) throw new Error(`unknown argument --${k}`);
  if (a._.length) throw new Error(`unexpected argument ${a._[0]}`);
  const num = (k, def, max) => {
    const v = a[k] === undefined ? def : Number(a[k]);
    if (!Number.isInteger(v) || v < 0 || v > max) throw new Error(`invalid --${k} ${a[k]}`);
    return v;
  };
  const str = (k) => (a[k] === undefined ? '' : String(a[k]));
  const o = {
    port: num('port', 0, 65535),
    host: str('host'),
    controlPort: num('control-port', 0, 65535),
    authToken: str('auth-token'),
    tlsCert: str('tls-cert'),
    tlsKey: str('tls-key'),
    tlsCa: str('tls-ca'),
    subBuffer: num('sub-buffer', 100, 1e6),
    slowConsumerWaitMs: num('slow-consumer-wait-ms', 2000, 3600000),
    minPingIntervalMs: num('min-ping-interval-ms', 0, 86400000),
    maxPingStrikes: num('max-ping-strikes', 2, 1000),
    parentWatch: !!a['parent-watch'],
  };
  if (!!o.tlsCert !== !!o.tlsKey) throw new Error('--tls-cert and --tls-key go together');
  if (o.tlsCa && !o.tlsCert) throw new Error('--tls-ca needs --tls-cert and --tls-key');
  return o;
}

async function main() {
  const o = parseOptions(process.argv.slice(2));
  const broker = createBroker({
    port: o.port,
    host: o.host || undefined,
    authToken: o.authToken,
    tls: o.tlsCert ? { cert: o.tlsCert, key: o.tlsKey, ca: o.tlsCa || undefined } : null,
    subBuffer: o.subBuffer,
    slowConsumerWaitMs: o.slowConsumerWaitMs,
    minPingIntervalMs: o.minPingIntervalMs,
    maxPingStrikes: o.maxPingStrikes,
  });
  const port = await broker.start();
  const control = await startControl(broker, o.controlPort);
  announceReady(
    { port, control: control.address().port },
    {
      parentWatch: o.parentWatch,
      onStop: async () => {
        control.close();
        await broker.close();
      },
    },
  );
}

if (require.main === module) main().catch(announceFailure);

module.exports = { createBroker, Broker, startControl, PROTO, LOADER_OPTS };
