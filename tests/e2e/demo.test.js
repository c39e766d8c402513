'use strict';
// `make demo` must keep working: run its script against this build's
// binary and check the story's results and that it leaves no process.
const test = require('node:test');
const assert = require('node:assert');
const path = require('path');
const { spawnSync } = require('child_process');
const { pidAlive } = require('../rig/lib');

const ROOT = process.env.KK_SOURCE_DIR || path.join(__dirname, '..', '..');

test('make demo runs start to finish and stops what it started', () => {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'tests', 'rig', 'demo.js')], {
    env: { ...process.env, NODE_NO_WARNINGS: '1' },
    encoding: 'utf8',
    timeout: 180000,
  });
  const out = r.stdout + r.stderr;
  assert.strictEqual(r.status, 0, out);
  for (const who of ['alice', 'bob', 'carol', 'dave', 'erin']) {
    assert.match(out, new RegExp(`${who}\\s+\\{"n":\\d,"user":"${who}"\\}`), out);
  }
  assert.match(out, /partition_key: must be 1 to 256 characters, got 257/);
  assert.match(out, /kubemq_targets_requests_count\{binding="kinesis-query".*\} 8/);
  const pids = [...out.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
  assert.ok(pids.length >= 3, `expected the demo to print its processes' pids:\n${out}`);
  for (const pid of pids) assert.ok(!pidAlive(pid), `pid ${pid} is still running after the demo`);
});
