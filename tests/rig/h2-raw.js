// h2-raw.js - a bare HTTP/2 gRPC client for tests that need to see or shape frames:
// it is not grpc-js and not node's http2, it writes every frame itself and records
// every frame it receives.
//
//   const c = await connectRaw({port, tls: {ca, cert, key}});   // ALPN h2 with TLS
//   const id = c.request('SubscribeToEvents', {SubscribeTypeData: 1, ClientID: 'x', Channel: 'ch'},
//                        {autoWindow: false});          // never opens this stream's window
//   c.ping(); c.frames; c.stream(id).messages; c.goaways; await c.closed  // {how: 'end'|'error'}
//
// Flow control: the connection window is always given back at once; a stream's window
// only when its autoWindow is on (the default), so a stream with autoWindow off is a
// subscriber that stopped reading while the socket keeps being read. Request headers
// go out as HPACK literals (no Huffman, no indexing); response header blocks are not
// decoded (frames, flags and grpc messages are what the tests look at).
'use strict';

const net = require('node:net');
const tls = require('node:tls');
const protoLoader = require('@grpc/proto-loader');
const { FrameReader } = require('./broker-front');
const { PROTO, LOADER_OPTS } = require('./broker');

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const T = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8 };
const F = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 };

let methods = null;
// The kubemq.kubemq method definitions (requestSerialize / responseDeserialize).
function kubemqMethods() {
  if (!methods) methods = protoLoader.loadSync(PROTO, LOADER_OPTS)['kubemq.kubemq'];
  return methods;
}

function frame(type, flags, streamId, payload = Buffer.alloc(0)) {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

function u32(n) {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

// HPACK "literal header field without indexing, new name", 7-bit lengths with continuation.
function hpackInt(n, prefixBits, firstByte) {
  const max = (1 << prefixBits) - 1;
  if (n < max) return Buffer.from([firstByte | n]);
  const out = [firstByte | max];
  n -= max;
  while (n >= 128) {
    out.push((n % 128) + 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

function hpackLiteral(name, value) {
  const n = Buffer.from(name);
  const v = Buffer.from(value);
  return Buffer.concat([Buffer.from([0]), hpackInt(n.length, 7, 0), n, hpackInt(v.length, 7, 0), v]);
}

function grpcFrame(msg) {
  const p = Buffer.alloc(5);
  p.writeUInt32BE(msg.length, 1);
  return Buffer.concat([p, msg]);
}

class RawH2 {
  constructor(socket, authority) {
    this.socket = socket;
    this.authority = authority;
    this.nextId = 1;
    this.streams = new Map();
    this.frames = []; // every frame received: {type, flags, streamId, length, at, payload (control frames only)}
    this.goaways = []; // {lastStreamId, code, debug}
    this.pingAcks = []; // opaque data of every PING ACK
    this.ended = false; // the server's FIN arrived
    this.error = null;
    this.reader = new FrameReader(0, (t, f, id, p) => this.onFrame(t, f, id, p));
    this.closed = new Promise((resolve) => {
      socket.on('end', () => {
        this.ended = true;
      });
      socket.on('error', (e) => {
        this.error = e;
      });
      socket.on('close', () => resolve({ how: this.error ? 'error' : 'end', error: this.error }));
    });
    socket.on('data', (chunk) => this.reader.feed(chunk));
    // Preface and an empty SETTINGS: every default (stream window 65,535 bytes).
    socket.write(Buffer.concat([PREFACE, frame(T.SETTINGS, 0, 0)]));
  }

  write(buf) {
    if (!this.socket.destroyed && !this.socket.writableEnded) this.socket.write(buf);
  }

  onFrame(type, flags, id, payload) {
    const rec = { type, flags, streamId: id, length: payload.length, at: Date.now() };
    if (type !== T.DATA && type !== T.HEADERS) rec.payload = Buffer.from(payload);
    this.frames.push(rec);
    const s = this.streams.get(id);
    switch (type) {
      case T.SETTINGS:
        if (!(flags & F.ACK)) this.write(frame(T.SETTINGS, F.ACK, 0));
        break;
      case T.PING:
        if (flags & F.ACK) this.pingAcks.push(Buffer.from(payload));
        else this.write(frame(T.PING, F.ACK, 0, payload));
        break;
      case T.GOAWAY:
        this.goaways.push({
          lastStreamId: payload.readUInt32BE(0) & 0x7fffffff,
          code: payload.readUInt32BE(4),
          debug: payload.subarray(8).toString(),
        });
        break;
      case T.DATA:
        if (payload.length) this.write(frame(T.WINDOW_UPDATE, 0, 0, u32(payload.length)));
        if (s) {
          s.dataBytes += payload.length;
          if (s.autoWindow && payload.length) this.write(frame(T.WINDOW_UPDATE, 0, id, u32(payload.length)));
          else s.unacked += payload.length;
          s.buf = Buffer.concat([s.buf, payload]);
          while (s.buf.length >= 5 && s.buf.length >= 5 + s.buf.readUInt32BE(1)) {
            const len = s.buf.readUInt32BE(1);
            s.messages.push(s.decode(s.buf.subarray(5, 5 + len)));
            s.buf = s.buf.subarray(5 + len);
          }
        }
        break;
      case T.HEADERS:
        if (s) s.headerBlocks++;
        break;
      case T.RST_STREAM:
        if (s) s.rst = payload.readUInt32BE(0);
        break;
      default:
        break;
    }
    if (s && (type === T.DATA || type === T.HEADERS) && flags & F.END_STREAM) s.ended = true;
    return false;
  }

  // Opens a call: HEADERS, then the request message (END_STREAM unless endStream: false).
  request(method, message, { autoWindow = true, endStream = true, headers = {} } = {}) {
    const def = kubemqMethods()[method];
    if (!def) throw new Error(`unknown method ${method}`);
    const id = this.nextId;
    this.nextId += 2;
    this.streams.set(id, {
      id,
      method,
      autoWindow,
      unacked: 0,
      dataBytes: 0,
      buf: Buffer.alloc(0),
      messages: [],
      headerBlocks: 0,
      ended: false,
      rst: null,
      decode: (b) => def.responseDeserialize(b),
    });
    const all = {
      ':method': 'POST',
      ':scheme': this.socket.encrypted ? 'https' : 'http',
      ':path': `/kubemq.kubemq/${method}`,
      ':authority': this.authority,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...headers,
    };
    const block = Buffer.concat(Object.entries(all).map(([k, v]) => hpackLiteral(k, String(v))));
    this.write(frame(T.HEADERS, F.END_HEADERS, id, block));
    this.write(frame(T.DATA, endStream ? F.END_STREAM : 0, id, grpcFrame(def.requestSerialize(message))));
    return id;
  }

  stream(id) {
    return this.streams.get(id);
  }

  // Turns a stream's window updates on (giving back what it held back) or off.
  setAutoWindow(id, on) {
    const s = this.streams.get(id);
    s.autoWindow = on;
    if (on && s.unacked) {
      this.write(frame(T.WINDOW_UPDATE, 0, id, u32(s.unacked)));
      s.unacked = 0;
    }
  }

  ping(data = Buffer.from('rawping!')) {
    this.write(frame(T.PING, 0, 0, data));
  }

  cancel(id) {
    this.write(frame(T.RST_STREAM, 0, id, u32(8)));
  }

  // Frames received after index `from` (types by name).
  framesSince(from) {
    const names = Object.fromEntries(Object.entries(T).map(([k, v]) => [v, k]));
    return this.frames.slice(from).map((f) => ({ ...f, name: names[f.type] || `type ${f.type}` }));
  }

  destroy() {
    this.socket.destroy();
  }
}

// opts: {port, host='127.0.0.1', tls: {ca, cert, key, servername, alpn=['h2']}}
// -> RawH2 once connected (with TLS: once the handshake is done; alpnProtocol on it).
function connectRaw({ port, host = '127.0.0.1', tls: t } = {}) {
  return new Promise((resolve, reject) => {
    const onError = (e) => reject(e);
    let socket;
    if (t) {
      socket = tls.connect({
        host,
        port,
        ca: t.ca,
        cert: t.cert,
        key: t.key,
        servername: t.servername || 'localhost',
        ALPNProtocols: t.alpn || ['h2'],
      });
      socket.once('secureConnect', () => {
        socket.removeListener('error', onError);
        const c = new RawH2(socket, `${host}:${port}`);
        c.alpnProtocol = socket.alpnProtocol;
        resolve(c);
      });
    } else {
      socket = net.connect({ host, port });
      socket.once('connect', () => {
        socket.removeListener('error', onError);
        resolve(new RawH2(socket, `${host}:${port}`));
      });
    }
    socket.setNoDelay(true);
    socket.once('error', onError);
  });
}

module.exports = { connectRaw, RawH2, kubemqMethods, FRAME_TYPES: T };
