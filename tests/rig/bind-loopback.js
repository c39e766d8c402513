'use strict';
// Preload (node -r ./bind-loopback.js server.js): forces every listen() on a
// TCP port onto 127.0.0.1, for servers that have no bind-address option
// (kinesalite's CLI, kinesis-local). Unix sockets and handles pass through.
const net = require('net');

const orig = net.Server.prototype.listen;
if (!orig.__kkLoopback) {
  const isPort = (x) => typeof x === 'number' || (typeof x === 'string' && /^\d+$/.test(x));
  const patched = function listen(...a) {
    const cb = a.find((x) => typeof x === 'function');
    if (isPort(a[0])) {
      const backlog = typeof a[2] === 'number' ? a[2] : typeof a[1] === 'number' ? a[1] : undefined;
      const o = { port: +a[0], host: '127.0.0.1' };
      if (backlog !== undefined) o.backlog = backlog;
      return cb ? orig.call(this, o, cb) : orig.call(this, o);
    }
    if (a[0] && typeof a[0] === 'object' && !a[0].path && !a[0]._handle && !a[0].fd && 'port' in a[0]) {
      const o = { ...a[0], host: '127.0.0.1' };
      return cb ? orig.call(this, o, cb) : orig.call(this, o);
    }
    if (a.length === 0 || (a.length === 1 && cb)) {
      // listen() / listen(cb): a random port, still on loopback.
      return cb ? orig.call(this, { port: 0, host: '127.0.0.1' }, cb) : orig.call(this, { port: 0, host: '127.0.0.1' });
    }
    return orig.apply(this, a);
  };
  patched.__kkLoopback = true;
  net.Server.prototype.listen = patched;
}
