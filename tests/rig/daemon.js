'use strict';
// Helpers for tests that run our own binary (kubemq-kinesis): write a config,
// run `invoke` once, or run the daemon and stop it by PID.
// Binary: env KK_BIN, else <repo>/build/kubemq-kinesis.
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { stopChild, exitPromise, freePort, track } = require('./proc');

const REPO_DIR = process.env.KK_SOURCE_DIR || path.resolve(__dirname, '..', '..');

function binPath() {
  return process.env.KK_BIN || path.join(REPO_DIR, 'build', 'kubemq-kinesis');
}

// Temporary files live in one directory per test process, removed on exit.
let tmpDir = null;
function tempDir() {
  if (!tmpDir) {
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kk-rig-'));
    process.on('exit', () => {
      try { fs.rmSync(tmpDir, { recursive: true, force: true }); } catch (_) { /* best effort */ }
    });
  }
  return tmpDir;
}

let cfgSeq = 0;
// obj: a config object (written as JSON, .json) or a string (written as is;
// opts.ext picks the extension, default .yaml). Returns the file path.
function writeConfig(obj, opts = {}) {
  const isText = typeof obj === 'string';
  const ext = opts.ext || (isText ? '.yaml' : '.json');
  const file = path.join(tempDir(), `config-${process.pid}-${++cfgSeq}${ext}`);
  fs.writeFileSync(file, isText ? obj : JSON.stringify(obj, null, 2), { mode: 0o600 });
  return file;
}

const childEnv = (env) => ({ ...process.env, ...(env || {}) });

// The leak check every run of the binary gets: the values of the config's
// secret properties (the settings marked secret: aws_secret_key, token,
// auth_token) must never appear in what it prints. Values shorter than 8
// characters are skipped (too likely to occur by chance).
const SECRET_RE = /(?:^|[\s{,"])(aws_secret_key|token|auth_token)"?\s*:\s*"?([^"\n,}]*)/gm;
function secretsOf(configPath) {
  let text = '';
  try { text = fs.readFileSync(configPath, 'utf8'); } catch (_) { return []; }
  const out = [];
  for (const m of text.matchAll(SECRET_RE)) {
    const v = m[2].trim();
    if (v.length >= 8) out.push({ key: m[1], value: v });
  }
  return out;
}
function leakError(secrets, texts) {
  for (const s of secrets) {
    for (const [name, t] of Object.entries(texts)) {
      if (t.includes(s.value)) return new Error(`the value of ${s.key} was printed on ${name}:\n${t}`);
    }
  }
  return null;
}

// Run `KK_BIN invoke --config P --binding B`, envelope on stdin (object ->
// JSON; string/Buffer as is). opts: env, args (extra CLI args), timeoutMs
// (60000; the child is killed then and the promise rejects).
// Resolves {code, signal, reply (parsed stdout JSON or null), stdout, stderr}.
function invoke(configPath, binding, envelope, opts = {}) {
  const args = ['invoke', '--config', configPath, '--binding', binding, ...(opts.args || [])];
  const input = Buffer.isBuffer(envelope) || typeof envelope === 'string' ? envelope : JSON.stringify(envelope);
  const timeoutMs = opts.timeoutMs || 60000;
  return new Promise((resolve, reject) => {
    const child = track(spawn(binPath(), args, { env: childEnv(opts.env), stdio: ['pipe', 'pipe', 'pipe'] }));
    const out = [];
    const err = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`invoke: cannot run ${binPath()}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (timedOut) {
        reject(new Error(`invoke: no exit within ${timeoutMs} ms\n--- stderr ---\n${stderr}\n--- stdout ---\n${stdout}`));
        return;
      }
      const leak = leakError(secretsOf(configPath), { stdout, stderr });
      if (leak) {
        reject(leak);
        return;
      }
      let reply = null;
      try { reply = stdout.trim() ? JSON.parse(stdout) : null; } catch (_) { reply = null; }
      resolve({ code, signal, reply, stdout, stderr });
    });
    child.stdin.on('error', () => { /* the child may exit without reading stdin */ });
    child.stdin.end(input);
  });
}

// Start `KK_BIN --config P ...args`. opts: env, args, cwd.
// Returns {pid, child, stop(signal='SIGTERM', {graceMs}), waitExit(), stderr(), stdout(), waitForStderr(re, ms)}.
// stop() sends `signal`, then SIGKILL after graceMs (default 15000), and
// resolves {code, signal} once the process has exited.
function startDaemon(configPath, opts = {}) {
  // configPath null: no --config (the CONFIG variable, or ./config.yaml).
  const args = [...(configPath ? ['--config', configPath] : []), ...(opts.args || [])];
  const child = spawn(binPath(), args, {
    env: childEnv(opts.env), cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let errText = '';
  let outText = '';
  const waiters = [];
  const check = () => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const m = waiters[i].re.exec(errText);
      if (m) { waiters[i].resolve(m); waiters.splice(i, 1); }
    }
  };
  child.stderr.on('data', (d) => { errText += d; check(); });
  child.stdout.on('data', (d) => { outText += d; });
  let spawnError = null;
  child.once('error', (e) => { spawnError = e; });
  const secrets = secretsOf(configPath);
  const closed = new Promise((r) => child.once('close', r));
  // Stopped or exited: a secret it printed fails whoever waits for that
  // (once its output is read to the end, or a second has passed).
  const checked = (p) => p.then(async (r) => {
    await Promise.race([closed, new Promise((t) => setTimeout(t, 1000).unref())]);
    const leak = leakError(secrets, { stdout: outText, stderr: errText });
    if (leak) throw leak;
    return r;
  });
  const exited = exitPromise(child);
  track(child);
  return {
    pid: child.pid,
    child,
    stop: (signal = 'SIGTERM', { graceMs = 15000 } = {}) => checked(stopChild(child, { signal, graceMs })),
    waitExit: () => checked(exited),
    stderr: () => errText,
    stdout: () => outText,
    spawnError: () => spawnError,
    // Resolves with the match once stderr matches `re`; rejects after timeoutMs
    // or when the daemon exits first.
    waitForStderr: (re, timeoutMs = 30000) => new Promise((resolve, reject) => {
      const m = re.exec(errText);
      if (m) return resolve(m);
      const w = { re, resolve: (x) => { clearTimeout(t); resolve(x); } };
      const t = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(new Error(`daemon stderr did not match ${re} within ${timeoutMs} ms\n--- stderr ---\n${errText}`));
      }, timeoutMs);
      waiters.push(w);
      exited.then(({ code, signal }) => {
        if (waiters.includes(w)) {
          waiters.splice(waiters.indexOf(w), 1);
          clearTimeout(t);
          reject(new Error(`daemon exited (code ${code}, signal ${signal}) before stderr matched ${re}\n--- stderr ---\n${errText}`));
        }
      });
    }),
  };
}

module.exports = { binPath, writeConfig, invoke, startDaemon, freePort, tempDir, REPO_DIR };
