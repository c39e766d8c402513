'use strict';
// `make install PREFIX=...` is cmake --install of the build: install this
// build into a temporary prefix and run what landed there.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

test('install puts the binary and the example configs under PREFIX', (t) => {
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'kk-prefix-'));
  t.after(() => fs.rmSync(prefix, { recursive: true, force: true }));
  const buildDir = path.dirname(process.env.KK_BIN);
  const inst = spawnSync('cmake', ['--install', buildDir, '--prefix', prefix], { encoding: 'utf8' });
  assert.strictEqual(inst.status, 0, inst.stdout + inst.stderr);
  const bin = path.join(prefix, 'bin', 'kubemq-kinesis');
  const v = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  assert.strictEqual(v.status, 0, v.stderr);
  assert.match(v.stdout, /^kubemq-kinesis \d+\.\d+\.\d+/);
  for (const name of ['kubemq-targets.yaml', 'kubemq-targets-older-style.yaml', 'local.yaml']) {
    const cfg = path.join(prefix, 'share', 'kubemq-kinesis', 'examples', name);
    const c = spawnSync(bin, ['--check', '--config', cfg], { encoding: 'utf8' });
    assert.strictEqual(c.status, 0, `${name}: ${c.stdout}${c.stderr}`);
  }
});
