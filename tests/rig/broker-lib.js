// broker-lib.js - start the stand-in KubeMQ broker as a child process from a test.
//
//   const b = await startBroker({ port: 0, authToken: 'T' });
//   b.address            '127.0.0.1:N' for gRPC clients
//   await b.stats()      GET /stats of the control port
//   await b.stop()       SIGTERM, SIGKILL after 3 s; resolves when the process has exited
'use strict';

const { spawn } = require('node:child_process');
const http = require('node:http');
const path = require('node:path');

const BROKER_JS = path.join(__dirname, 'broker.js');
const READY_TIMEOUT_MS = 20000;

// JSON request to the control port.
function control(port, method, route) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: route }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        try {
          const json = JSON.parse(body);
          if (res.statusCode !== 200) reject(new Error(`broker control ${route}: ${json.error || res.statusCode}`));
          else resolve(json);
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Spawns `node broker.js` and waits for its ready line.
 * opts: {port=0, authToken, tlsCert, tlsKey, controlPort=0}
 * Returns {address, port, control, pid, stop(), stats(), stopListener(),
 *          startListener(), reset(), waitFor(pred, ms), waitForSubscribers(kind, channel, opts), logs()}.
 */
function startBroker(opts = {}) {
  const args = [BROKER_JS, '--port', String(opts.port || 0)];
  if (opts.controlPort) args.push('--control-port', String(opts.controlPort));
  if (opts.authToken) args.push('--auth-token', opts.authToken);
  if (opts.tlsCert) args.push('--tls-cert', opts.tlsCert, '--tls-key', opts.tlsKey);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-65536);
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let hasExited = false;
  exited.then(() => (hasExited = true));

  const stop = async () => {
    if (hasExited) return exited;
    child.kill('SIGTERM');
    const t = setTimeout(() => {
      if (!hasExited) child.kill('SIGKILL');
    }, 3000);
    const r = await exited;
    clearTimeout(t);
    return r;
  };

  return new Promise((resolve, reject) => {
    let buf = '';
    const fail = async (msg) => {
      clearTimeout(timer);
      await stop();
      reject(new Error(`${msg}; broker stderr:\n${stderr}`));
    };
    const timer = setTimeout(() => fail('stand-in broker did not become ready'), READY_TIMEOUT_MS);
    const onEarlyExit = (code, signal) => fail(`stand-in broker exited early (code ${code}, signal ${signal})`);
    child.once('exit', onEarlyExit);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let ready;
      try {
        ready = JSON.parse(buf.slice(0, nl));
      } catch (e) {
        return fail(`bad ready line ${JSON.stringify(buf.slice(0, nl))}`);
      }
      clearTimeout(timer);
      child.stdout.removeAllListeners('data');
      child.stdout.resume();
      child.removeListener('exit', onEarlyExit);
      const b = {
        address: `127.0.0.1:${ready.port}`,
        port: ready.port,
        control: ready.control,
        pid: child.pid,
        process: child,
        exited,
        stop,
        logs: () => stderr,
        stats: () => control(ready.control, 'GET', '/stats'),
        stopListener: () => control(ready.control, 'POST', '/listener/stop'),
        startListener: () => control(ready.control, 'POST', '/listener/start'),
        reset: () => control(ready.control, 'POST', '/reset'),
        // Polls /stats until pred(stats) is truthy.
        async waitFor(pred, timeoutMs = 10000) {
          const end = Date.now() + timeoutMs;
          for (;;) {
            const s = await b.stats();
            if (pred(s)) return s;
            if (Date.now() > end) throw new Error('broker: condition not reached; last stats ' + JSON.stringify(s));
            await sleep(50);
          }
        },
        // Waits until `count` subscribers of kind ('events', 'events_store', 'commands',
        // 'queries') are live on channel (and group, '' = ungrouped; omitted = any).
        waitForSubscribers(kind, channel, { group, count = 1, timeoutMs = 10000 } = {}) {
          return b.waitFor((s) => {
            const ch = s.subscribers[kind][channel] || {};
            const n = group === undefined ? Object.values(ch).reduce((a, x) => a + x, 0) : ch[group] || 0;
            return n >= count;
          }, timeoutMs);
        },
      };
      resolve(b);
    });
  });
}

module.exports = { startBroker, brokerControl: control };
