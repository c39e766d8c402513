// broker-front.js - the stand-in broker's front door: a TCP (or TLS) relay in front of
// its grpc-js server, where connections are counted, cut and policed.
//
// grpc-js does not hand out its sockets, so clients connect here (the port the broker
// announces) and each connection is relayed to the grpc-js server on a private
// loopback port. The relay reads the HTTP/2 frame headers going both ways (never the
// payloads) and forwards whole frames only, so it can, at a frame boundary:
// - end a connection with a plain TCP FIN and nothing else, as a KubeMQ server's
//   SIGTERM does (grpc-go Server.Stop: no GOAWAY, no RST_STREAM, no trailers);
// - send a GOAWAY and then end it;
// - enforce grpc-go's keepalive policy (grpc-js servers have none): a client PING
//   scores a strike when it comes sooner than the minimum interval after the previous
//   one (2 h with no stream open) and the server wrote no HEADERS or DATA since; past
//   `maxStrikes` strikes the client gets the PING ACK, GOAWAY ENHANCE_YOUR_CALM with
//   debug data "too_many_pings", and a FIN.
// With TLS the relay is the TLS endpoint (ALPN h2; with a CA, client certificates are
// required and verified) and the grpc-js server behind it speaks h2c.
'use strict';

const fs = require('node:fs');
const net = require('node:net');
const tls = require('node:tls');

const HOST = '127.0.0.1';
const PREFACE_LEN = 24; // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, PING: 6, GOAWAY: 7 };
const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const ENHANCE_YOUR_CALM = 0xb;
const IDLE_PING_LIMIT_MS = 2 * 60 * 60 * 1000; // grpc-go: no stream open, no PermitWithoutStream
const LINGER_MS = 5000; // after our FIN, how long we wait for the client's before closing

function frame(type, flags, streamId, payload) {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

function goawayFrame(lastStreamId, code, debug) {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(lastStreamId & 0x7fffffff, 0);
  p.writeUInt32BE(code >>> 0, 4);
  return frame(FRAME.GOAWAY, 0, 0, Buffer.concat([p, Buffer.from(debug || '')]));
}

// Splits a byte stream into whole HTTP/2 frames; onFrame(type, flags, streamId, payload)
// returns true to stop there (that frame and the rest are not passed on). A partial
// frame waits in a list of chunks until it is whole, so big frames cost one copy.
class FrameReader {
  constructor(prefaceLen, onFrame) {
    this.skip = prefaceLen;
    this.parts = [];
    this.len = 0;
    this.need = 1; // bytes needed before parsing can go on
    this.onFrame = onFrame;
    this.stopped = false;
  }

  // Returns the bytes that make whole frames (and the preface), keeps the rest.
  feed(chunk) {
    const none = chunk.subarray(0, 0);
    if (this.stopped) return none;
    this.parts.push(chunk);
    this.len += chunk.length;
    if (this.len < this.need) return none;
    const b = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.len);
    let off = 0;
    if (this.skip > 0) {
      const n = Math.min(this.skip, b.length);
      this.skip -= n;
      off = n;
    }
    let need = 9;
    while (b.length - off >= 9) {
      const len = b.readUIntBE(off, 3);
      if (b.length - off < 9 + len) {
        need = 9 + len;
        break;
      }
      const payload = b.subarray(off + 9, off + 9 + len);
      if (this.onFrame(b[off + 3], b[off + 4], b.readUInt32BE(off + 5) & 0x7fffffff, payload)) {
        this.stopped = true;
        this.parts = [];
        this.len = 0;
        return b.subarray(0, off);
      }
      off += 9 + len;
    }
    const rest = b.length - off;
    this.parts = rest ? [Buffer.from(b.subarray(off))] : [];
    this.len = rest;
    this.need = this.skip > 0 ? this.skip : need;
    return b.subarray(0, off);
  }
}

let nextConnId = 1;

class Conn {
  constructor(front, client) {
    this.front = front;
    this.id = nextConnId++;
    this.client = client;
    this.since = Date.now();
    this.cut = false;
    this.closed = false;
    this.streams = new Set(); // open HTTP/2 streams, as the server sees them
    this.maxStreamId = 0;
    this.lastPingAt = 0;
    this.strikes = 0;
    this.serverWrote = false; // HEADERS or DATA since the client's last PING
    this.pings = 0;
    this.backendPort = 0; // local port of our connection to grpc-js (= its peer port)
    this.backend = net.connect({ host: HOST, port: front.upstreamPort() });
    this.backend.setNoDelay(true);
    client.setNoDelay(true);
    this.backend.on('connect', () => {
      this.backendPort = this.backend.localPort;
    });
    this.fromClient = new FrameReader(PREFACE_LEN, (t, f, id, p) => this.clientFrame(t, f, id, p));
    this.fromServer = new FrameReader(0, (t, f, id) => this.serverFrame(t, f, id));
    this.offence = null; // the PING that used up the strikes
    this.linger = null;
    this.relay(client, this.backend, this.fromClient);
    this.relay(this.backend, client, this.fromServer);
    client.on('end', () => !this.cut && this.backend.end());
    this.backend.on('end', () => !this.cut && this.endClient());
    client.on('close', () => this.finish());
    // A backend that went away without a FIN: so does the client connection.
    this.backend.on('close', () => !this.cut && !client.writableEnded && client.destroy());
    client.on('error', () => this.backend.destroy());
    this.backend.on('error', () => client.destroy());
  }

  // FIN towards the client after what is queued; closed for good once the client
  // closes too, or after LINGER_MS.
  endClient() {
    this.client.end();
    if (!this.linger) this.linger = setTimeout(() => this.client.destroy(), LINGER_MS);
  }

  relay(src, dst, reader) {
    src.on('data', (chunk) => {
      if (this.cut) return; // after a cut, whatever still comes is dropped
      const whole = reader.feed(chunk);
      if (!this.cut && whole.length && !dst.write(whole)) {
        src.pause();
        dst.once('drain', () => src.resume());
      }
      if (this.offence && !this.cut) this.front.tooManyPings(this, this.offence);
    });
  }

  clientFrame(type, flags, id, payload) {
    if (type === FRAME.HEADERS && id > this.maxStreamId) {
      this.maxStreamId = id;
      this.streams.add(id);
    } else if (type === FRAME.RST_STREAM) {
      this.streams.delete(id);
    } else if (type === FRAME.PING && !(flags & FLAG_ACK)) {
      this.pings++;
      if (this.judgePing()) {
        this.offence = Buffer.from(payload);
        return true;
      }
    }
    return false;
  }

  // grpc-go 1.53 http2Server.handlePing with an EnforcementPolicy{MinTime}; true when
  // the strikes are used up.
  judgePing() {
    const policy = this.front.ping;
    if (!policy) return false;
    const now = Date.now();
    const last = this.lastPingAt;
    this.lastPingAt = now;
    if (this.serverWrote) {
      this.serverWrote = false;
      this.strikes = 0;
      return false;
    }
    const limit = this.streams.size < 1 ? IDLE_PING_LIMIT_MS : policy.minIntervalMs;
    if (last && last + limit > now) this.strikes++;
    return this.strikes > policy.maxStrikes;
  }

  serverFrame(type, flags, id) {
    if (type === FRAME.HEADERS || type === FRAME.DATA) {
      this.serverWrote = true;
      if (flags & FLAG_END_STREAM) this.streams.delete(id);
    } else if (type === FRAME.RST_STREAM) {
      this.streams.delete(id);
    }
    return false;
  }

  // Ends the connection towards the client: `goaway` frames first (or nothing: a
  // plain FIN). The grpc-js side is closed at once.
  end(frames) {
    if (this.cut || this.closed) return false;
    this.cut = true;
    this.front.beforeCut(this);
    if (frames && !this.client.destroyed) this.client.write(frames);
    this.endClient();
    this.backend.destroy();
    // Keep reading (and dropping) until the client closes too, so the kernel has no
    // unread data that would turn our close into a reset.
    this.client.resume();
    return true;
  }

  finish() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.linger);
    this.backend.destroy();
    this.front.conns.delete(this);
  }
}

class Front {
  // opts: {port, tls: {cert, key, ca} | null, upstreamPort() -> grpc-js port,
  //        ping: {minIntervalMs, maxStrikes} | null, beforeCut(backendPort), log(line)}
  constructor(opts) {
    this.port = Number(opts.port || 0);
    this.host = opts.host || HOST; // where clients connect
    this.tls = opts.tls || null;
    this.upstreamPort = opts.upstreamPort;
    this.ping = opts.ping || null;
    this.onBeforeCut = opts.beforeCut || (() => {});
    this.log = opts.log || (() => {});
    this.server = null;
    this.conns = new Set();
    this.counts = { accepted: 0, finCuts: 0, goaways: 0, tooManyPings: 0, tlsFailures: 0 };
    this.tlsOptions = this.tls ? this.loadTls() : null;
  }

  loadTls() {
    const o = {
      key: fs.readFileSync(this.tls.key),
      cert: fs.readFileSync(this.tls.cert),
      ALPNProtocols: ['h2'],
      minVersion: 'TLSv1.2',
    };
    if (this.tls.ca) {
      o.ca = fs.readFileSync(this.tls.ca);
      o.requestCert = true;
      o.rejectUnauthorized = true;
    }
    return o;
  }

  beforeCut(conn) {
    if (conn.backendPort) this.onBeforeCut(conn.backendPort);
  }

  accept(socket) {
    this.conns.add(new Conn(this, socket));
  }

  // The offending PING was not passed on: it is answered here, then, as grpc-go does,
  // GOAWAY ENHANCE_YOUR_CALM "too_many_pings" and the connection closes.
  tooManyPings(c, pingPayload) {
    this.counts.tooManyPings++;
    this.log(`connection ${c.id}: GOAWAY too_many_pings at ping ${c.pings}`);
    const ack = frame(FRAME.PING, FLAG_ACK, 0, pingPayload);
    c.end(Buffer.concat([ack, goawayFrame(c.maxStreamId, ENHANCE_YOUR_CALM, 'too_many_pings')]));
  }

  listen() {
    if (this.server) return Promise.resolve(this.port);
    const server = this.tls
      ? tls.createServer(this.tlsOptions, (s) => this.accept(s))
      : net.createServer((s) => this.accept(s));
    server.on('connection', () => this.counts.accepted++);
    if (this.tls) server.on('tlsClientError', () => this.counts.tlsFailures++);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, this.host || HOST, () => {
        server.removeListener('error', reject);
        this.server = server;
        this.port = server.address().port;
        resolve(this.port);
      });
    });
  }

  // Stops accepting (new connects are refused at once); open connections stay.
  // (net.Server's close callback would wait for them.)
  stopListening() {
    const s = this.server;
    this.server = null;
    if (s) s.close();
    return Promise.resolve();
  }

  // Every open connection ends with a plain FIN. Returns how many.
  finAll() {
    let n = 0;
    for (const c of [...this.conns]) if (c.end(null)) n++;
    this.counts.finCuts += n;
    if (n) this.log(`FIN on ${n} connection(s), no GOAWAY`);
    return n;
  }

  // Every open connection gets GOAWAY(code, last stream id, debug), then a FIN.
  goawayAll({ code = 0, debug = '' } = {}) {
    let n = 0;
    for (const c of [...this.conns]) if (c.end(goawayFrame(c.maxStreamId, code, debug))) n++;
    this.counts.goaways += n;
    if (n) this.log(`GOAWAY (code ${code}) and FIN on ${n} connection(s)`);
    return n;
  }

  destroyAll() {
    for (const c of [...this.conns]) {
      c.client.destroy();
      c.finish();
    }
  }

  stats() {
    return {
      ...this.counts,
      open: [...this.conns].filter((c) => !c.cut).length,
      list: [...this.conns]
        .filter((c) => !c.cut)
        .map((c) => ({ id: c.id, remotePort: c.client.remotePort, since: c.since, streams: c.streams.size, pings: c.pings, strikes: c.strikes })),
    };
  }
}

module.exports = { Front, FrameReader, goawayFrame };
