'use strict';
// kinesalite on 127.0.0.1 with a ready line. The kinesalite CLI cannot bind a
// host nor take a TLS key/cert, so this wrapper drives its programmatic API.
//   node tests/rig/kinesalite-server.js [--port 0] [--createStreamMs 0]
//     [--deleteStreamMs 0] [--updateStreamMs 0] [--shardLimit 1000]
//     [--path DIR] [--ssl [--key FILE --cert FILE]]
// Ready line: {"ready":true,"port":N,"url":"http://127.0.0.1:N"}
require('./bind-loopback');
const fs = require('fs');
const { parseArgs, announceReady, announceFailure } = require('./proc');

const argv = parseArgs(process.argv.slice(2), ['ssl', 'parent-watch']);
const num = (v, d) => (v === undefined ? d : Number(v));
const opts = {
  createStreamMs: num(argv.createStreamMs, 0),
  deleteStreamMs: num(argv.deleteStreamMs, 0),
  updateStreamMs: num(argv.updateStreamMs, 0),
  shardLimit: num(argv.shardLimit, 1000),
};
if (argv.path) opts.path = argv.path;
if (argv.ssl) {
  opts.ssl = true;
  if (argv.key) opts.key = fs.readFileSync(argv.key);
  if (argv.cert) {
    opts.cert = fs.readFileSync(argv.cert);
    opts.ca = opts.cert;
  }
}

let server;
try {
  server = require('kinesalite')(opts);
} catch (e) {
  announceFailure(e);
}
server.on('error', announceFailure);
server.listen({ port: num(argv.port, 0), host: '127.0.0.1' }, () => {
  const { port } = server.address();
  const scheme = opts.ssl ? 'https' : 'http';
  announceReady({ port, url: `${scheme}://127.0.0.1:${port}` }, {
    parentWatch: !!argv['parent-watch'],
    onStop: () => new Promise((r) => {
      server.closeAllConnections && server.closeAllConnections();
      server.close(() => r());
    }),
  });
});
