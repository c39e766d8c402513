'use strict';
// Child-process plumbing shared by the rig: start a rig server script, wait for
// its one JSON ready line, stop it by PID (SIGTERM, then SIGKILL).
const { spawn } = require('child_process');
const http = require('http');
const net = require('net');
const path = require('path');

const RIG_DIR = __dirname;
const STOP_GRACE_MS = 3000;

// Every child started through this module; stopped on our own exit so that a
// crashed test does not leave servers behind.
const live = new Set();
process.on('exit', () => {
  for (const c of live) {
    try { process.kill(c.pid, 'SIGKILL'); } catch (_) { /* already gone */ }
  }
});

// Kill `child` with SIGKILL if this process exits while it still runs.
function track(child) {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

function pidAlive(pid) {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    return e.code === 'EPERM';
  }
  // A zombie still answers kill(0); treat it as gone.
  try {
    const st = require('fs').readFileSync(`/proc/${pid}/stat`, 'utf8');
    return st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3) !== 'Z';
  } catch (_) {
    return false;
  }
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Resolves when the child has exited: {code, signal}.
function exitPromise(child) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

// SIGTERM (or `signal`), SIGKILL after graceMs; resolves {code, signal} once exited.
async function stopChild(child, { signal = 'SIGTERM', graceMs = STOP_GRACE_MS } = {}) {
  const done = exitPromise(child);
  if (child.exitCode === null && child.signalCode === null) {
    try { child.kill(signal); } catch (_) { /* raced with exit */ }
    const t = setTimeout(() => {
      try { child.kill('SIGKILL'); } catch (_) { /* gone */ }
    }, graceMs);
    const r = await done;
    clearTimeout(t);
    live.delete(child);
    return r;
  }
  live.delete(child);
  return done;
}

// Start `node <script> ...args` from the rig directory and wait for the line
// `{"ready":true,...}` on its stdout. Resolves {child, ready, stderr(), stop()}.
function startScript(script, args = [], { env, cwd, timeoutMs = 30000, name, nodeArgs = [], graceMs } = {}) {
  const file = path.isAbsolute(script) ? script : path.join(RIG_DIR, script);
  const label = name || path.basename(file, '.js');
  const child = spawn(process.execPath, [...nodeArgs, file, ...args, '--parent-watch'], {
    cwd: cwd || RIG_DIR,
    env: { ...process.env, ...(env || {}) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  track(child);
  let errText = '';
  let outText = '';
  child.stderr.on('data', (d) => {
    errText += d;
    if (errText.length > 1 << 20) errText = errText.slice(-(1 << 19));
  });
  const stderr = () => errText;
  const stop = (o = {}) => stopChild(child, { graceMs, ...o });

  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (why) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stopChild(child, { signal: 'SIGKILL' }).then(() => {
        reject(new Error(`${label}: ${why}\n--- stderr ---\n${errText}\n--- stdout ---\n${outText}`));
      });
    };
    const timer = setTimeout(() => fail(`no ready line within ${timeoutMs} ms`), timeoutMs);
    child.once('error', (e) => fail(`spawn failed: ${e.message}`));
    child.once('exit', (code, sig) => fail(`exited before ready (code ${code}, signal ${sig})`));
    let buf = '';
    const onData = (d) => {
      buf += d;
      outText += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line.startsWith('{')) continue;
        let msg;
        try { msg = JSON.parse(line); } catch (_) { continue; }
        if (msg && msg.ready === true && !settled) {
          settled = true;
          clearTimeout(timer);
          child.stdout.off('data', onData);
          child.stdout.resume(); // keep draining whatever else it prints
          resolve({ child, pid: child.pid, ready: msg, stderr, stop, exited: exitPromise(child) });
          return;
        }
        if (msg && msg.ready === false) fail(`reported failure: ${msg.error || line}`);
      }
    };
    child.stdout.on('data', onData);
  });
}

// Used by the rig server scripts themselves --------------------------------

// Tiny flag parser: --name value, --name=value, --flag (true).
function parseArgs(argv, booleans = []) {
  const out = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) { out._.push(a); continue; }
    let k = a.slice(2);
    let v;
    const eq = k.indexOf('=');
    if (eq >= 0) { v = k.slice(eq + 1); k = k.slice(0, eq); }
    else if (booleans.includes(k) || i + 1 >= argv.length || argv[i + 1].startsWith('--')) v = true;
    else v = argv[++i];
    out[k] = v;
  }
  return out;
}

// Print the ready line; with --parent-watch exit when our stdin closes (the
// parent died without stopping us). Installs clean SIGTERM/SIGINT exit.
function announceReady(info, { onStop, parentWatch } = {}) {
  const stopNow = async () => {
    try { if (onStop) await Promise.race([onStop(), sleep(2000)]); } catch (_) { /* exiting anyway */ }
    process.exit(0);
  };
  process.once('SIGTERM', stopNow);
  process.once('SIGINT', stopNow);
  if (parentWatch) {
    process.stdin.on('data', () => {});
    process.stdin.on('end', stopNow);
    process.stdin.on('error', stopNow);
    process.stdin.resume();
  }
  process.stdout.write(JSON.stringify({ ready: true, ...info }) + '\n');
}

function announceFailure(err) {
  process.stdout.write(JSON.stringify({ ready: false, error: String((err && err.message) || err) }) + '\n');
  process.exit(1);
}

// Generic helpers for tests ---------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.once('error', reject);
    s.listen({ port: 0, host: '127.0.0.1' }, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// One HTTP request on loopback; resolves {status, headers, body (Buffer), text, json}.
function httpRequest(url, { method = 'GET', headers = {}, body, timeoutMs = 30000, agent = false } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers, agent,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const b = Buffer.concat(chunks);
        const text = b.toString('utf8');
        let json = null;
        try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, body: b, text, json });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms: ${method} ${url}`)));
    req.on('error', reject);
    if (body !== undefined && body !== null && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-length')) {
      req.setHeader('content-length', Buffer.byteLength(body));
    }
    if (body !== undefined && body !== null) req.write(body);
    req.end();
  });
}

// Poll `url` until it answers `status` (default 200). Rejects after timeoutMs.
async function waitHttp(url, { status = 200, timeoutMs = 30000, intervalMs = 100 } = {}) {
  const until = Date.now() + timeoutMs;
  let last = 'no answer';
  for (;;) {
    try {
      const r = await httpRequest(url, { timeoutMs: 2000 });
      if (r.status === status) return r;
      last = `status ${r.status}`;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > until) throw new Error(`waitHttp ${url}: ${last} after ${timeoutMs} ms`);
    await sleep(intervalMs);
  }
}

// TCP addresses `pid` listens on, as ["127.0.0.1:4567", "[::]:80", ...]
// (Linux /proc), to check that a peer binds loopback only.
function listeningAddrs(pid) {
  const fs = require('fs');
  const inodes = new Set();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch (_) { /* fd closed meanwhile */ }
  }
  const out = [];
  for (const [file, v6] of [['/proc/net/tcp', false], ['/proc/net/tcp6', true]]) {
    let text = '';
    try { text = fs.readFileSync(file, 'utf8'); } catch (_) { continue; }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9])) continue;
      const [hex, portHex] = f[1].split(':');
      const port = parseInt(portHex, 16);
      let host;
      if (!v6) {
        host = [0, 1, 2, 3].map((i) => parseInt(hex.substr(6 - 2 * i, 2), 16)).join('.');
      } else {
        const words = [];
        for (let i = 0; i < 4; i++) {
          const w = hex.substr(8 * i, 8);
          words.push(w.substr(6, 2) + w.substr(4, 2), w.substr(2, 2) + w.substr(0, 2));
        }
        host = `[${words.map((w) => parseInt(w, 16).toString(16)).join(':')}]`;
      }
      out.push(`${host}:${port}`);
    }
  }
  return out;
}

// Poll until fn() returns a truthy value; resolves with it.
async function waitFor(fn, { timeoutMs = 30000, intervalMs = 50, what = 'condition' } = {}) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`waitFor ${what}: timed out after ${timeoutMs} ms`);
    await sleep(intervalMs);
  }
}

module.exports = {
  RIG_DIR, startScript, stopChild, track, exitPromise, pidAlive, sleep, parseArgs, announceReady,
  announceFailure, freePort, httpRequest, waitHttp, waitFor, listeningAddrs,
};
