'use strict';
// House rules of the C tree that the compiler does not check: includes
// point down the layers, every exported function is declared in its
// module's header and carries its prefix, no typedef'd structs, no banned
// libc calls, code that names no document outside the repo, and (when
// clang-format is installed) no formatting drift.
// Each checker is run on a small bad sample first, so a checker that
// stopped finding anything fails too.
const test = require('node:test');
const assert = require('node:assert');
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const REPO = process.env.KK_SOURCE_DIR || path.resolve(__dirname, '..', '..');
const SRC = path.join(REPO, 'src');

// Lowest first. A layer may include its own headers and those listed.
// Siblings stay apart: aws, kubemq and message; kinesis and source.
const LOWER = {
  base: [],
  aws: ['base'],
  kubemq: ['base'],
  message: ['base'],
  kinesis: ['base', 'aws', 'message'],
  source: ['base', 'kubemq', 'message'],
  binding: ['base', 'aws', 'kubemq', 'message', 'kinesis', 'source'],
  api: ['base', 'aws', 'kubemq', 'message', 'kinesis', 'source', 'binding'],
  cli: ['base', 'aws', 'kubemq', 'message', 'kinesis', 'source', 'binding', 'api'],
  main: ['base', 'aws', 'kubemq', 'message', 'kinesis', 'source', 'binding', 'api', 'cli'],
};
// Headers without a directory: generated into the build tree.
const GENERATED = { 'kubemq.pb-c.h': ['kubemq'], 'kpl_aggregation.pb-c.h': ['kinesis'] };
// Libraries that belong to some layers only: the Kinesis target knows nothing of HTTP/2 or gRPC.
const LIBRARIES = [
  { re: /^nghttp2\//, name: 'nghttp2', layers: ['kubemq'] },
  { re: /^ares\.h$/, name: 'c-ares', layers: ['base'] },
  { re: /^openssl\/ssl\.h$/, name: 'OpenSSL TLS', layers: ['base', 'aws', 'kubemq'] },
  { re: /^protobuf-c\//, name: 'protobuf-c', layers: ['kubemq'] },
  { re: /^curl\//, name: 'libcurl', layers: ['aws'] },
  { re: /^microhttpd\.h$/, name: 'libmicrohttpd', layers: ['api'] },
  { re: /^yaml\.h$/, name: 'libyaml', layers: ['base'] },
];
// Exported-name prefixes besides the directory's and its files' names.
const EXTRA_PREFIXES = { kubemq: ['kk'] }; // kubemq_internal.h, shared by the kubemq_*.c files
// A comment, string or test names what it means, never a document a clone
// does not have: kubemq-targets' aws.kinesis connector, the older
// connector style with put/create, KubeMQ's published schema. "seed" alone
// is fine (FUZZ_SEED, "seeded"); a seed document's name is not.
const OUTSIDE = [
  { re: /\bSPEC\b/, what: 'SPEC' },
  { re: /§/, what: 'a section (§) of an outside document' },
  { re: /\bseed[-_ ]?0\d\d|\bseeds?'?s? (style|styles|way|form|forms|documents?)\b/i, what: 'a seed document' },
  { re: /\.\.\/shared\b/, what: '../shared' },
  { re: /\bdocuments? (we were|you were|I was) given\b/i, what: 'the documents given' },
  { re: /\bthe reference\b|\breference's\b|\breference (connector|implementation)\b/i, what: '"the reference" without saying which' },
];
// Where the rule applies (the documentation has a check of its own).
const OUTSIDE_FILES = [
  { dir: 'src', re: /\.[ch]$/ },
  { dir: 'tests/unit', re: /\.[ch]$/ },
  { dir: 'tests/fuzz', re: /\.(c|h|sh)$/, flat: true },
  { dir: 'bench', re: /\.c$/, flat: true },
  { dir: '.', re: /^CMakeLists\.txt$/, flat: true },
  { dir: 'tests', re: /^tests\.cmake$/, flat: true },
];
const BANNED = ['strcpy', 'strcat', 'sprintf', 'vsprintf', 'gets', 'atoi', 'atol', 'strtok'];

// C text without comments; with blank=true string and char literals are
// emptied too (so a banned name inside a message is no hit).
function stripC(text, blank) {
  let out = '';
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    const d = text[i + 1];
    if (c === '/' && d === '*') {
      const end = text.indexOf('*/', i + 2);
      const stop = end < 0 ? n : end + 2;
      out += text.slice(i, stop).replace(/[^\n]/g, ' ');
      i = stop;
    } else if (c === '/' && d === '/') {
      while (i < n && text[i] !== '\n') i++;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < n && text[j] !== c && text[j] !== '\n') j += text[j] === '\\' ? 2 : 1;
      out += blank ? c + ' '.repeat(Math.max(0, j - i - 1)) + c : text.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

function layerOf(rel) {
  const parts = rel.split('/');
  return parts.length === 1 ? path.basename(rel, '.c') : parts[0];
}

function sourceFiles() {
  const out = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.[ch]$/.test(e.name)) out.push(path.relative(SRC, p).split(path.sep).join('/'));
    }
  };
  walk(SRC);
  return out.sort();
}

function readSrc(rel) {
  return fs.readFileSync(path.join(SRC, rel), 'utf8');
}

// Problems with the includes of one file (rel is relative to src/).
function includeProblems(rel, text) {
  const layer = layerOf(rel);
  const problems = [];
  if (!LOWER[layer]) {
    return [`${rel}: src/${layer}/ is not a known layer; add it to LOWER in tests/e2e/layout.test.js`];
  }
  const lines = stripC(text, false).split('\n');
  lines.forEach((line, idx) => {
    const m = /^\s*#\s*include\s*([<"])([^>"]+)[>"]/.exec(line);
    if (!m) return;
    const where = `${rel}:${idx + 1}`;
    const inc = m[2];
    if (m[1] === '<') {
      for (const lib of LIBRARIES) {
        if (lib.re.test(inc) && !lib.layers.includes(layer)) {
          problems.push(`${where}: <${inc}>: ${lib.name} belongs to src/${lib.layers.join(', src/')}, not src/${layer}`);
        }
      }
      return;
    }
    if (!inc.includes('/')) {
      if (!(GENERATED[inc] || []).includes(layer)) {
        problems.push(`${where}: "${inc}": include with its directory, e.g. "base/buf.h"`);
      }
      return;
    }
    const target = inc.split('/')[0];
    if (target === layer) return;
    if (!LOWER[layer].includes(target)) {
      problems.push(`${where}: "${inc}": src/${layer} must not include src/${target} (allowed: ${[layer, ...LOWER[layer]].join(', ')})`);
    }
  });
  return problems;
}

function bannedProblems(rel, text) {
  const problems = [];
  const re = new RegExp(`\\b(${BANNED.join('|')})\\s*\\(`, 'g');
  stripC(text, true).split('\n').forEach((line, idx) => {
    for (const m of line.matchAll(re)) {
      problems.push(`${rel}:${idx + 1}: ${m[1]}() is banned (use snprintf, strtoll/settings_parse_int, struct buf)`);
    }
  });
  return problems;
}

function typedefProblems(rel, text) {
  const problems = [];
  stripC(text, true).split('\n').forEach((line, idx) => {
    if (/\btypedef\s+struct\b/.test(line)) {
      problems.push(`${rel}:${idx + 1}: typedef struct: write "struct name" instead`);
    }
  });
  return problems;
}

// Global symbols of one object, from nm: [{name, type}].
function globalSymbols(obj) {
  const r = spawnSync('nm', ['--defined-only', '-g', '-P', obj], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(`nm ${obj}: ${r.error ? r.error.message : r.stderr}`);
  }
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 2 && !f[0].startsWith('__')) // sanitizer and compiler internals
    .map((f) => ({ name: f[0], type: f[1] }));
}

// Problems with the exported symbols of src/<rel> given the text of the
// headers of its directory and the names of the files there.
function exportProblems(rel, symbols, headerText, dirFiles) {
  const layer = layerOf(rel);
  const problems = [];
  const prefixes = new Set([layer, ...(EXTRA_PREFIXES[layer] || [])]);
  for (const f of dirFiles) prefixes.add(f.replace(/\..*$/, '').split('_')[0]);
  for (const { name, type } of symbols) {
    if (layer === 'main') {
      if (name !== 'main') problems.push(`${rel}: ${name}: main.c exports only main; make it static`);
      continue;
    }
    const esc = name.replace(/[$]/g, '\\$');
    if (/[Tt]/.test(type)) {
      if (!new RegExp(`(^|[^\\w])${esc}\\s*\\(`).test(headerText)) {
        problems.push(`${rel}: ${name}(): exported but declared in no src/${layer}/*.h; make it static or declare it`);
      }
    } else if (!new RegExp(`\\bextern\\b[^;]*\\b${esc}\\b`).test(headerText)) {
      problems.push(`${rel}: ${name}: exported data but declared extern in no src/${layer}/*.h; make it static or declare it`);
    }
    if (!prefixes.has(name.split('_')[0])) {
      problems.push(`${rel}: ${name}: exported names carry the module prefix (one of ${[...prefixes].sort().join('_, ')}_)`);
    }
  }
  return problems;
}

function buildDir() {
  return process.env.KK_BIN ? path.dirname(process.env.KK_BIN) : path.join(REPO, 'build-test');
}

// One static library per layer (cli's is kk_core: it holds the top).
const LAYER_LIBRARY = {
  base: 'kk_base', aws: 'kk_aws', kubemq: 'kk_kubemq', message: 'kk_message', kinesis: 'kk_kinesis', source: 'kk_source',
  binding: 'kk_binding', api: 'kk_api', cli: 'kk_core',
};

function objectOf(rel) {
  const target = rel === 'main.c' ? 'kubemq-kinesis' : LAYER_LIBRARY[layerOf(rel)];
  return path.join(buildDir(), 'CMakeFiles', `${target}.dir`, 'src', `${rel}.o`);
}

function outsideProblems(rel, text) {
  const problems = [];
  text.split('\n').forEach((line, idx) => {
    for (const { re, what } of OUTSIDE) {
      const m = re.exec(line);
      if (m) {
        problems.push(`${rel}:${idx + 1}: "${m[0]}": ${what}; say the thing itself (e.g. kubemq-targets' aws.kinesis connector)`);
      }
    }
  });
  return problems;
}

function outsideFiles() {
  const out = [];
  for (const { dir, re, flat } of OUTSIDE_FILES) {
    const walk = (d) => {
      if (!fs.existsSync(d)) return;
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) {
          if (!flat) walk(p);
        } else if (re.test(e.name)) {
          out.push(path.relative(REPO, p));
        }
      }
    };
    walk(path.join(REPO, dir));
  }
  return out.sort();
}

function report(problems) {
  assert.deepStrictEqual(problems, [], `\n${problems.join('\n')}\n`);
}

test('the checkers find what they look for', () => {
  const bad = [
    '#include "binding/config.h"',
    '#include "kubemq/kubemq_client.h"',
    '#include "aws/aws_client.h"',
    '#include <nghttp2/nghttp2.h>',
    '#include "buf.h"',
    '/* #include "cli/cli.h" in a comment is fine */',
    'typedef struct foo foo_t;',
    'static void f(char *d) { strcpy(d, "x"); sprintf(d, "%d", atoi("1")); }',
    'static const char *m = "strcat( in a string is fine";',
  ].join('\n');
  assert.deepStrictEqual(includeProblems('kinesis/x.c', bad).length, 4);
  assert.match(includeProblems('kinesis/x.c', bad)[0], /src\/kinesis must not include src\/binding/);
  assert.match(includeProblems('kinesis/x.c', bad)[1], /must not include src\/kubemq/);
  assert.match(includeProblems('kinesis/x.c', bad)[2], /nghttp2 belongs to src\/kubemq/);
  assert.match(includeProblems('kinesis/x.c', bad)[3], /include with its directory/);
  assert.deepStrictEqual(includeProblems('binding/x.c', '#include "aws/aws_client.h"\n#include "cli/cli.h"\n').length, 1);
  assert.deepStrictEqual(includeProblems('source/x.c', '#include "kinesis/target.h"\n#include "aws/sigv4.h"\n').length, 2);
  assert.deepStrictEqual(includeProblems('aws/x.c', '#include "kubemq/kubemq_client.h"\n').length, 1);
  assert.deepStrictEqual(includeProblems('kubemq/x.c', '#include "aws/sigv4.h"\n#include "kubemq.pb-c.h"\n').length, 1);
  assert.deepStrictEqual(includeProblems('message/x.c', '#include "kubemq/kubemq_client.h"\n#include <curl/curl.h>\n#include "base/buf.h"\n').length, 2);
  assert.deepStrictEqual(includeProblems('kinesis/x.c', '#include "message/envelope.h"\n').length, 0);
  assert.deepStrictEqual(includeProblems('newlayer/x.c', '').length, 1);
  assert.deepStrictEqual(bannedProblems('x.c', bad).map((p) => p.split(': ')[1]), ['strcpy() is banned (use snprintf, strtoll/settings_parse_int, struct buf)', 'sprintf() is banned (use snprintf, strtoll/settings_parse_int, struct buf)', 'atoi() is banned (use snprintf, strtoll/settings_parse_int, struct buf)']);
  assert.deepStrictEqual(typedefProblems('x.h', bad).length, 1);
  const hdr = 'int buf_ok(void);\nextern const int buf_table[];\n';
  const syms = [
    { name: 'buf_ok', type: 'T' },
    { name: 'buf_hidden', type: 'T' },
    { name: 'buf_table', type: 'D' },
    { name: 'helper', type: 'T' },
  ];
  const p = exportProblems('base/buf.c', syms, hdr, ['buf.c', 'buf.h']);
  assert.strictEqual(p.length, 3, p.join('\n'));
  assert.match(p[0], /buf_hidden\(\): exported but declared in no/);
  assert.match(p[1], /helper\(\): exported but declared/);
  assert.match(p[2], /helper: exported names carry the module prefix/);
  const outside = [
    '/* kinesis.h - the aws.kinesis target (SPEC §4). */',
    '/* seed 001 form: the stream key is spelled "stream" */',
    'static const char seed000[] = "x"; /* examples/seed-000.yaml */',
    '# see ../shared/reference/peers.md (the seeds\' way)',
    '/* as in the documents we were given */',
    '/* the reference\'s fields, as the reference connector writes them */',
  ].join('\n');
  assert.deepStrictEqual(outsideProblems('x.c', outside).map((l) => l.split(': ')[0]),
    ['x.c:1', 'x.c:1', 'x.c:2', 'x.c:3', 'x.c:4', 'x.c:4', 'x.c:5', 'x.c:6']);
  const fine = [
    'FUZZ_SEED=7 build-test/test_fuzz_base; fuzz_seed(&f, 0xc0f1); /* seeded mutations */',
    'hints.ai_family = AF_UNSPEC; /* a reference is taken; the settings reference */',
    '/* kubemq-targets\' aws.kinesis connector answers this way; KubeMQ\'s published schema */',
  ].join('\n');
  assert.deepStrictEqual(outsideProblems('x.c', fine), []);
});

test('includes only point down the layers', () => {
  const files = sourceFiles();
  assert.ok(files.length > 20, `too few sources under ${SRC}`);
  report(files.flatMap((rel) => includeProblems(rel, readSrc(rel))));
});

test('code, unit tests, fuzz harnesses and benchmarks name no outside document', () => {
  const files = outsideFiles();
  assert.ok(files.length > 60, 'too few files found');
  assert.ok(files.includes('CMakeLists.txt') && files.includes(path.join('tests', 'tests.cmake')));
  report(files.flatMap((rel) => outsideProblems(rel, fs.readFileSync(path.join(REPO, rel), 'utf8'))));
});

test('no banned libc functions, no typedef struct', () => {
  report(sourceFiles().flatMap((rel) => {
    const text = readSrc(rel);
    return [...bannedProblems(rel, text), ...typedefProblems(rel, text)];
  }));
});

test('every file starts with a header comment naming it', () => {
  report(sourceFiles().flatMap((rel) => {
    const first = readSrc(rel).split('\n')[0];
    const want = `/* ${path.basename(rel)} - `;
    return first.startsWith(want) ? [] : [`${rel}:1: starts with "${first.slice(0, 60)}", want "${want}<what the file is>"`];
  }));
});

test('exported functions are declared in their module header and prefixed', () => {
  const files = sourceFiles();
  const headers = {};
  const names = {};
  for (const rel of files) {
    const layer = layerOf(rel);
    names[layer] = (names[layer] || []).concat(path.basename(rel));
    if (rel.endsWith('.h')) headers[layer] = (headers[layer] || '') + stripC(readSrc(rel), true) + '\n';
  }
  const problems = [];
  let objects = 0;
  for (const rel of files.filter((f) => f.endsWith('.c'))) {
    const obj = objectOf(rel);
    if (!fs.existsSync(obj)) {
      problems.push(`${rel}: no object file ${obj} (build first: make test)`);
      continue;
    }
    objects++;
    const layer = layerOf(rel);
    problems.push(...exportProblems(rel, globalSymbols(obj), headers[layer] || '', names[layer] || []));
  }
  report(problems);
  assert.ok(objects > 20, 'too few object files checked');
});

test('C sources are clang-formatted', (t) => {
  const probe = spawnSync('clang-format', ['--version'], { encoding: 'utf8' });
  if (probe.error) {
    t.skip('clang-format is not installed');
    return;
  }
  const files = [];
  for (const dir of ['src', 'tests/unit', 'tests/fuzz', 'bench']) {
    const walk = (d) => {
      if (!fs.existsSync(d)) return;
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (/\.[ch]$/.test(e.name)) files.push(path.relative(REPO, p));
      }
    };
    walk(path.join(REPO, dir));
  }
  assert.ok(files.length > 20, 'too few C files found');
  const r = spawnSync('clang-format', ['--dry-run', '-Werror', '--style=file', ...files], {
    cwd: REPO,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const drift = [...new Set((r.stderr.match(/^[^\s:]+\.[ch](?=:\d+:\d+: error)/gm) || []))];
  assert.strictEqual(r.status, 0, `clang-format drift (run: make format):\n${drift.join('\n') || r.stderr}`);
});
