#!/usr/bin/env node
// broker.js - stand-in KubeMQ broker: gRPC service kubemq.kubemq on 127.0.0.1 for tests.
//
//   node tests/rig/broker.js --port 0 [--host 127.0.0.1|::1] [--auth-token T] [--tls-cert F --tls-key F] [--control-port 0] [--parent-watch]
//
// Prints one line {"ready":true,"port":N,"control":M} when listening; SIGTERM ends
// open streams with UNAVAILABLE and exits 0. The control port serves GET /stats,
// POST /listener/stop, POST /listener/start and POST /reset (see README.md).
// In-process use: createBroker(opts) -> Broker; as a child process: broker-lib.js.
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const C = require('./broker-common');
const { PubSub } = require('./broker-pubsub');
const { Queues } = require('./broker-queues');
const { parseArgs, announceReady, announceFailure } = require('./proc');

const PROTO = path.join(__dirname, '../../proto/kubemq.proto');
const LOADER_OPTS = { keepCase: true, longs: String, enums: Number, defaults: true, oneofs: true };
const HOST = '127.0.0.1';
const MAX_MSG = 100 * 1024 * 1024;
const SERVER_OPTS = {
  'grpc.max_receive_message_length': MAX_MSG,
  'grpc.max_send_message_length': MAX_MSG,
  // Permissive keepalive: clients pinging often must not be sent away.
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 100,
  'grpc.http2.max_ping_strikes': 0,
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
  constructor(opts = {}) {
    this.port = Number(opts.port || 0);
    this.host = opts.host || HOST; // the gRPC listener's; the control port stays on 127.0.0.1
    this.authToken = opts.authToken || '';
    this.tls = opts.tls || null;
    this.version = opts.version || 'stand-in';
    this.startTime = Date.now();
    this.server = null;
    this.active = new Set(); // open calls: {fail(status)}
    this.pubsub = new PubSub();
    this.queues = new Queues();
    this.resetCounters();
  }

  resetCounters() {
    this.calls = {};
    this.authFailures = 0;
  }

  credentials() {
    if (!this.tls) return grpc.ServerCredentials.createInsecure();
    const pair = { cert_chain: fs.readFileSync(this.tls.cert), private_key: fs.readFileSync(this.tls.key) };
    return grpc.ServerCredentials.createSsl(null, [pair], false);
  }

  // Binds the gRPC listener (again on the same port after stopListener()).
  async start() {
    if (this.server) return this.port;
    const server = new grpc.Server(SERVER_OPTS);
    server.addService(service(), this.handlers());
    this.port = await new Promise((resolve, reject) =>
      server.bindAsync(`${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`, this.credentials(), (err, port) => (err ? reject(err) : resolve(port))),
    );
    this.server = server;
    return this.port;
  }

  // Ends every open call with UNAVAILABLE and closes the listener; queues and
  // stored events survive (like a broker restart with persistence).
  async stopListener() {
    const server = this.server;
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
    this.queues.reset();
  }

  reset() {
    this.queues.reset();
    this.pubsub.resetStore();
    this.pubsub.resetStats();
    this.resetCounters();
  }

  stats() {
    return {
      listening: !!this.server,
      port: this.port,
      uptimeSeconds: Math.floor((Date.now() - this.startTime) / 1000),
      calls: { ...this.calls },
      authFailures: this.authFailures,
      openCalls: this.active.size,
      ...this.pubsub.stats(),
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
        fail: (st) => {
          if (cancel) cancel();
          reply(st);
        },
      };
      const reply = (err, res) => {
        if (answered) return;
        answered = true;
        this.active.delete(entry);
        cb(err, res);
      };
      this.active.add(entry);
      call.on('cancelled', () => {
        if (answered) return;
        answered = true;
        this.active.delete(entry);
        if (cancel) cancel();
      });
      cancel = fn(call.request, reply, call) || null;
    };
  }

  // Wraps a streaming handler: fn(call, entry) sets entry.onClose / entry.onFail.
  stream(name, fn) {
    return (call) => {
      this.calls[name] = (this.calls[name] || 0) + 1;
      if (!this.authorized(call)) return call.emit('error', status('UNAUTHENTICATED', C.ERR[421]));
      const entry = {
        closed: false,
        onClose: null,
        write: (m) => {
          if (!entry.closed) call.write(m);
        },
        end: (st) => {
          if (entry.closed) return;
          close();
          if (st) call.emit('error', st);
          else call.end();
        },
        fail: (st) => entry.end(st),
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
        const sub = ps.subscribe(req, kind, entry.write);
        entry.onClose = () => ps.unsubscribe(sub);
      }),

      SubscribeToRequests: this.stream('SubscribeToRequests', (call, entry) => {
        const req = call.request;
        const kind = { [C.SUB.Commands]: 'commands', [C.SUB.Queries]: 'queries' }[req.SubscribeTypeData];
        const err = kind ? C.validateSubscribeRequests(req) : C.ERR[207];
        if (err) return entry.end(status('INTERNAL', err));
        const sub = ps.subscribe(req, kind, entry.write);
        entry.onClose = () => ps.unsubscribe(sub);
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
    req.resume();
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
        default:
          return send(404, { error: `unknown route ${route}` });
      }
    };
    run().catch((e) => send(500, { error: e.message }));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, HOST, () => resolve(server));
  });
}

function parseOptions(argv) {
  const a = parseArgs(argv, ['parent-watch']);
  const known = new Set(['_', 'port', 'host', 'control-port', 'auth-token', 'tls-cert', 'tls-key', 'parent-watch']);
  for (const k of Object.keys(a)) if (!known.has(k)) throw new Error(`unknown argument --${k}`);
  if (a._.length) throw new Error(`unexpected argument ${a._[0]}`);
  const num = (k) => {
    const v = a[k] === undefined ? 0 : Number(a[k]);
    if (!Number.isInteger(v) || v < 0 || v > 65535) throw new Error(`invalid --${k} ${a[k]}`);
    return v;
  };
  const str = (k) => (a[k] === undefined ? '' : String(a[k]));
  const o = {
    port: num('port'),
    host: str('host'),
    controlPort: num('control-port'),
    authToken: str('auth-token'),
    tlsCert: str('tls-cert'),
    tlsKey: str('tls-key'),
    parentWatch: !!a['parent-watch'],
  };
  if (!!o.tlsCert !== !!o.tlsKey) throw new Error('--tls-cert and --tls-key go together');
  return o;
}

async function main() {
  const o = parseOptions(process.argv.slice(2));
  const broker = createBroker({
    port: o.port,
    host: o.host,
    authToken: o.authToken,
    tls: o.tlsCert ? { cert: o.tlsCert, key: o.tlsKey } : null,
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
