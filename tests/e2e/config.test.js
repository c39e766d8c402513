'use strict';
// The config loader and the CLI through the real binary: --check on the
// example configs, every problem named, exit codes, CONFIG env, JSON files,
// secrets never printed, and the settings reference in
// docs/configuration.md kept in step.
const test = require('node:test');
const assert = require('node:assert');
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const rig = require('../rig/lib');

const REPO = process.env.KK_SOURCE_DIR || path.resolve(__dirname, '..', '..');
const example = (name) => path.join(REPO, 'examples', name);

// Run the binary to completion (it never serves in these tests).
function run(args, { env, cwd, noConfigEnv = true } = {}) {
  const base = { ...process.env };
  if (noConfigEnv) delete base.CONFIG;
  const r = spawnSync(rig.binPath(), args, {
    env: { ...base, ...(env || {}) },
    cwd: cwd || rig.tempDir(),
    encoding: 'utf8',
    timeout: 60000,
  });
  if (r.error) throw r.error;
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

function emptyDir() {
  return fs.mkdtempSync(path.join(rig.tempDir(), 'cwd-'));
}

const SECRETS = ['AKSECRET-aws-secret-Qx7', 'SESSION-token-Zp9', 'AUTH-jwt-Kk3'];

function secretConfig({ badSecret = false } = {}) {
  return [
    'apiPort: 0',
    'bindings:',
    '  - name: secret-binding',
    '    source:',
    '      kind: kubemq.query',
    '      properties:',
    '        address: "127.0.0.1:50000"',
    '        channel: "q"',
    badSecret ? `        auth_token: ["${SECRETS[2]}"]` : `        auth_token: "${SECRETS[2]}"`,
    '    target:',
    '      kind: aws.kinesis',
    '      properties:',
    '        aws_key: "AKIDEXAMPLE"',
    badSecret ? `        aws_secret_key: {nested: "${SECRETS[0]}"}` : `        aws_secret_key: "${SECRETS[0]}"`,
    `        token: "${SECRETS[1]}"`,
    '    properties:',
    '      log_level: debug',
    '',
  ].join('\n');
}

function assertNoSecrets(r) {
  for (const s of SECRETS) {
    assert.ok(!r.stdout.includes(s), `secret ${s} on stdout:\n${r.stdout}`);
    assert.ok(!r.stderr.includes(s), `secret ${s} on stderr:\n${r.stderr}`);
  }
}

test('the example configs (both config styles) pass --check', () => {
  for (const f of ['kubemq-targets.yaml', 'kubemq-targets-older-style.yaml', 'local.yaml', 'container.yaml']) {
    const r = run(['--check', '--config', example(f)]);
    assert.strictEqual(r.code, 0, `${f}: ${r.stderr}`);
    assert.match(r.stdout, /^config OK: 1 bindings\n$/);
  }
  const r = run(['--check', '--config', example('kubemq-targets-older-style.yaml')]);
  assert.match(r.stderr, /warn .*\[kubemq-query-kafka\] target kind "target\.aws\.kenisis" is a misspelling; use "aws\.kinesis"/);
});

test('a config with four problems exits 2 naming each', () => {
  const file = rig.writeConfig([
    'bindings:',
    '  - name: b1',
    '    source:',
    '      kind: kubemq.query',
    '      properties:',
    '        address: "localhost:50000"',
    '        chanel: "query.aws.kinesis"',
    '        sources: "abc"',
    '    target:',
    '      kind: aws.kinesis',
    '  - name: b1',
    '    source:',
    '      kind: source.query',
    '      properties:',
    '        address: "localhost:50000"',
    '        channel: "query.aws.kinesis"',
    '    target:',
    '      kind: aws.kinesis',
    '',
  ].join('\n'));
  const r = run(['--check', '--config', file]);
  assert.strictEqual(r.code, 2);
  assert.strictEqual(r.stdout, '');
  const lines = r.stderr.trim().split('\n');
  assert.match(r.stderr, /^binding "b1": source: chanel: unknown property \(did you mean channel\?\)$/m);
  assert.match(r.stderr, /^binding "b1": source: channel: is required$/m);
  assert.match(r.stderr, /^binding "b1": source: sources: must be an integer from 1 to 1024, got "abc"$/m);
  assert.match(r.stderr, /^binding "b1": name: duplicate binding name \(bindings #1 and #2\)/m);
  assert.strictEqual(lines[lines.length - 1], 'config invalid: 4 problems');
  assert.strictEqual(lines.length, 5);

  // Without --check the same problems are log lines, and the exit is 2 too.
  const d = run(['--config', file, '--log-format', 'json']);
  assert.strictEqual(d.code, 2);
  const logs = d.stderr.trim().split('\n').map((l) => JSON.parse(l));
  assert.strictEqual(logs.length, 4);
  for (const l of logs) assert.strictEqual(l.level, 'error');
  assert.ok(logs.some((l) => l.msg.includes('sources: must be an integer')));
});

test('wrong types at the top and binding level are named', () => {
  const file = rig.writeConfig('sources: "abc"\nbindings: "abc"\napiPort: 70000\n');
  const r = run(['--check', '--config', file]);
  assert.strictEqual(r.code, 2);
  assert.match(r.stderr, /^config: sources: unknown key; valid: apiPort, apiAddress, apiEnableRequest, logLevel, watchConfig, config_watch_debounce_ms, bindings$/m);
  assert.match(r.stderr, /^config: bindings: must be a list of bindings, not text$/m);
  assert.match(r.stderr, /^config: apiPort: must be an integer from 0 to 65535, got "70000"$/m);

  const tab = rig.writeConfig('bindings:\n  - name: x\n\tsource: y\n');
  const t = run(['--check', '--config', tab]);
  assert.strictEqual(t.code, 2);
  assert.match(t.stderr, /line 3, column 1: .*a tab in the indentation/);
});

test('--version, --help and usage errors', () => {
  const v = run(['--version']);
  assert.strictEqual(v.code, 0);
  assert.match(v.stdout, /^kubemq-kinesis \d+\.\d+\.\d+\n$/);

  const h = run(['--help']);
  assert.strictEqual(h.code, 0);
  for (const flag of ['--config', '--check', '--version', '--log-level', '--log-format', '--help']) {
    assert.ok(h.stdout.includes(flag), `--help lacks ${flag}`);
  }

  for (const [args, re] of [
    [['--bogus'], /unknown option '--bogus'/],
    [['--log-level', 'loud'], /--log-level must be error, warn, info or debug/],
    [['--log-format', 'xml'], /--log-format must be text or json/],
    [['--config'], /option '--config' needs a value/],
    [['stray'], /unexpected argument 'stray'/],
  ]) {
    const r = run(args);
    assert.strictEqual(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.match(r.stderr, /--help/);
  }
});

test('secrets are never printed, at debug level or in errors', () => {
  const good = rig.writeConfig(secretConfig());
  for (const fmt of ['text', 'json']) {
    const r = run(['--check', '--config', good, '--log-level', 'debug', '--log-format', fmt]);
    assert.strictEqual(r.code, 0, r.stderr);
    // the debug line is there (so the test would see a leak), redacted
    assert.match(r.stderr, /aws_secret_key/);
    assert.match(r.stderr, /\*\*\*/);
    assertNoSecrets(r);
  }
  // the same through CONFIG, base64
  const viaEnv = run(['--check', '--log-level', 'debug'], {
    env: { CONFIG: Buffer.from(secretConfig()).toString('base64') },
    cwd: emptyDir(),
  });
  assert.strictEqual(viaEnv.code, 0, viaEnv.stderr);
  assertNoSecrets(viaEnv);

  // secrets with invalid values: the error names the key, not the value
  const bad = rig.writeConfig(secretConfig({ badSecret: true }));
  const b = run(['--check', '--config', bad, '--log-level', 'debug']);
  assert.strictEqual(b.code, 2);
  assert.match(b.stderr, /auth_token: must be a single value, not a list/);
  assert.match(b.stderr, /aws_secret_key: must be a single value, not a map/);
  assertNoSecrets(b);
  const bd = run(['--config', bad, '--log-level', 'debug']);
  assert.strictEqual(bd.code, 2);
  assertNoSecrets(bd);

  // a JSON syntax error right at a secret
  const broken = rig.writeConfig(`{"bindings": [{"name": "x", "target": {"properties": {"token": ${SECRETS[1]}}}}]}`, { ext: '.json' });
  const j = run(['--check', '--config', broken, '--log-level', 'debug']);
  assert.strictEqual(j.code, 2);
  assert.match(j.stderr, /line 1, column \d+: invalid token/);
  assertNoSecrets(j);
});

test('a .json config file works', () => {
  const file = rig.writeConfig({
    apiPort: 8081,
    bindings: [{
      name: 'json-binding',
      source: { kind: 'kubemq.command', properties: { host: '127.0.0.1', port: '50000', channel: 'c' } },
      target: { kind: 'aws.kinesis', properties: { region: 'us-east-1', endpoint: 'http://127.0.0.1:4567' } },
      properties: { retry_attempts: '3', rate_per_seconds: '10' },
    }],
  });
  assert.ok(file.endsWith('.json'));
  const r = run(['--check', '--config', file]);
  assert.strictEqual(r.code, 0, r.stderr);
  assert.strictEqual(r.stdout, 'config OK: 1 bindings\n');

  const dup = rig.writeConfig('{"apiPort": 1, "apiPort": 2}', { ext: '.json' });
  const d = run(['--check', '--config', dup]);
  assert.strictEqual(d.code, 2);
  assert.match(d.stderr, /duplicate object key/);
});

test('CONFIG environment variable: text and base64; config.yaml by default', () => {
  const text = fs.readFileSync(example('kubemq-targets.yaml'), 'utf8');
  const cwd = emptyDir();

  const plain = run(['--check'], { env: { CONFIG: text }, cwd });
  assert.strictEqual(plain.code, 0, plain.stderr);
  assert.strictEqual(plain.stdout, 'config OK: 1 bindings\n');

  // base64(1) wraps its output at 76 columns
  const b64 = Buffer.from(text).toString('base64').replace(/(.{76})/g, '$1\n');
  const enc = run(['--check'], { env: { CONFIG: b64 }, cwd });
  assert.strictEqual(enc.code, 0, enc.stderr);

  const json = run(['--check'], { env: { CONFIG: JSON.stringify({ apiPort: 1, bindings: [] }) }, cwd });
  assert.strictEqual(json.code, 0, json.stderr);
  assert.strictEqual(json.stdout, 'config OK: 0 bindings\n');

  const broken = run(['--check'], { env: { CONFIG: 'apiPort: [' }, cwd });
  assert.strictEqual(broken.code, 2);
  assert.match(broken.stderr, /^CONFIG: line \d+, column \d+: /m);

  // --config wins over CONFIG
  const both = run(['--check', '--config', example('kubemq-targets-older-style.yaml')], { env: { CONFIG: 'apiPort: [' }, cwd });
  assert.strictEqual(both.code, 0, both.stderr);

  // neither: ./config.yaml, named when missing
  const none = run(['--check'], { cwd });
  assert.strictEqual(none.code, 2);
  assert.match(none.stderr, /^config\.yaml: cannot read the config: No such file or directory$/m);
  fs.copyFileSync(example('kubemq-targets.yaml'), path.join(cwd, 'config.yaml'));
  const dflt = run(['--check'], { cwd });
  assert.strictEqual(dflt.code, 0, dflt.stderr);
});

test('logLevel in the config sets the level; binding lines carry the binding', () => {
  const file = rig.writeConfig(
    'logLevel: debug\n' + fs.readFileSync(example('kubemq-targets-older-style.yaml'), 'utf8'));
  const r = run(['--check', '--config', file, '--log-format', 'json']);
  assert.strictEqual(r.code, 0, r.stderr);
  const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l));
  // the warning comes before logLevel is known; the debug line after
  assert.ok(lines.some((l) => l.level === 'warn' && l.binding === 'kubemq-query-kafka'));
  assert.ok(lines.every((l) => l.binding === 'kubemq-query-kafka'));

  const debug = run(['--check', '--config', file, '--log-level', 'debug']);
  assert.match(debug.stderr, /debug \[kubemq-query-kafka\] source kubemq\.query /);
  const quiet = run(['--check', '--config', file, '--log-level', 'error']);
  assert.strictEqual(quiet.stderr, '');
});

test('the settings reference in docs/configuration.md equals --print-reference', () => {
  const r = run(['--print-reference']);
  assert.strictEqual(r.code, 0, r.stderr);
  assert.match(r.stdout, /### Source properties/);
  const doc = fs.readFileSync(path.join(REPO, 'docs', 'configuration.md'), 'utf8');
  const m = doc.match(/<!-- reference:begin -->\n([\s\S]*?)<!-- reference:end -->/);
  assert.ok(m, 'docs/configuration.md lacks the reference markers');
  assert.strictEqual(m[1], r.stdout,
    'docs/configuration.md reference is stale: paste the output of `build/kubemq-kinesis --print-reference` between the markers');
});

// Every run of the binary through the rig (rig.invoke, rig.startDaemon) fails when
// it prints the value of a secret property of its config; here it must catch one.
test('the rig catches a printed secret (the check every daemon and invoke run gets)', async () => {
  const leaky = rig.writeConfig([
    'bindings:',
    '  - name: leaky',
    '    source:',
    '      kind: kubemq.query',
    '      name: s',
    '      properties:',
    '        address: "127.0.0.1:1"',
    '        channel: "c"',
    '    target:',
    '      kind: aws.kinesis',
    '      name: t',
    '      properties:',
    '        aws_key: "AKIDLEAKCHECK"',
    '        aws_secret_key: "same-as-the-endpoint-host"',
    // A value the daemon does print (in the endpoint error), equal to the secret.
    '        endpoint: "ftp://same-as-the-endpoint-host"',
    '',
  ].join('\n'));
  await assert.rejects(rig.invoke(leaky, 'leaky', {}), /the value of aws_secret_key was printed on stderr/);
  const d = rig.startDaemon(leaky);
  await assert.rejects(d.waitExit(), /the value of aws_secret_key was printed on stderr/);
  // The same config without the echo passes the check.
  const clean = fs.readFileSync(leaky, 'utf8').replace('ftp://same-as-the-endpoint-host', 'ftp://other-host');
  const r = await rig.invoke(rig.writeConfig(clean), 'leaky', {});
  assert.strictEqual(r.code, 2);
  assert.match(r.stderr, /scheme must be http or https/);
});
