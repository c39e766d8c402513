'use strict';
// The documentation reads on its own: every relative link in README.md,
// docs/ and tests/rig/README.md points at a file of the repository, and every
// #anchor at a heading that GitHub renders with that id; every page of docs/
// is reachable from README.md; and the text we write (docs, examples,
// deployment files, tests, the rig, bench scripts, CI) names no document a
// clone does not have. Each checker is run on a small bad sample first, so a
// checker that stopped finding anything fails too.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const os = require('os');
const path = require('path');

const REPO = process.env.KK_SOURCE_DIR || path.resolve(__dirname, '..', '..');

// ---- markdown ------------------------------------------------------------

// Lines outside fenced code blocks, with their numbers; inline code spans
// blanked (a link or a heading mark inside code is none).
function proseLines(text) {
  const out = [];
  let fence = null;
  text.split('\n').forEach((line, i) => {
    const f = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (f) {
      if (!fence) fence = f[1][0].repeat(f[1].length);
      else if (line.trim().startsWith(fence)) fence = null;
      return;
    }
    if (fence) return;
    out.push({ n: i + 1, text: line.replace(/(`+)([\s\S]*?)\1/g, (m, ticks, body) => 'x'.repeat(body.length || 1)) });
  });
  return out;
}

// A heading's id as GitHub makes it: the rendered text (markup gone), lower
// case, every character that is not a letter, digit, mark, connector (_),
// space or hyphen removed, each space a hyphen; a repeated id gets -1, -2...
function slug(raw) {
  const rendered = raw
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // links and images: their text
    .replace(/<[^>]+>/g, '') // inline HTML tags
    .replace(/`/g, '')
    .replace(/(\*\*|__|\*)/g, '') // emphasis marks (a lone _ stays: it is text)
    .trim();
  return rendered.toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-');
}

// The ids a markdown text offers as #anchors.
function anchorsOf(text) {
  const ids = new Set();
  const seen = new Map();
  const raw = text.split('\n');
  let fence = null;
  raw.forEach((line, i) => {
    const f = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (f) {
      if (!fence) fence = f[1][0].repeat(f[1].length);
      else if (line.trim().startsWith(fence)) fence = null;
      return;
    }
    if (fence) return;
    let title = null;
    const atx = /^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/.exec(line);
    if (atx) title = atx[1];
    else if (/^ {0,3}(=+|-+)[ \t]*$/.test(line) && i > 0 && /\S/.test(raw[i - 1]) &&
      !/^ {0,3}([-*+>|#]|\d+[.)])/.test(raw[i - 1])) {
      title = raw[i - 1].trim(); // setext heading: the line above
    }
    for (const m of line.matchAll(/<a\s[^>]*\b(?:name|id)="([^"]+)"/gi)) ids.add(m[1]);
    if (title === null) return;
    const base = slug(title);
    const k = seen.get(base) || 0;
    seen.set(base, k + 1);
    ids.add(k === 0 ? base : `${base}-${k}`);
  });
  return ids;
}

// [text](target "title"), [label]: target, <a href="target">.
function linksOf(text) {
  const links = [];
  for (const { n, text: line } of proseLines(text)) {
    for (const m of line.matchAll(/\]\(\s*<?([^)\s>]*)>?(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/g)) {
      links.push({ line: n, target: m[1] });
    }
    const ref = /^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?/.exec(line);
    if (ref) links.push({ line: n, target: ref[1] });
    for (const m of line.matchAll(/<a\s[^>]*\bhref="([^"]*)"/gi)) links.push({ line: n, target: m[1] });
  }
  return links;
}

// Problems with the relative links of the markdown files (paths from root).
function linkProblems(root, files) {
  const problems = [];
  const anchorCache = new Map();
  const anchors = (abs) => {
    if (!anchorCache.has(abs)) anchorCache.set(abs, anchorsOf(fs.readFileSync(abs, 'utf8')));
    return anchorCache.get(abs);
  };
  for (const rel of files) {
    const abs = path.join(root, rel);
    for (const { line, target } of linksOf(fs.readFileSync(abs, 'utf8'))) {
      const where = `${rel}:${line}: (${target})`;
      if (target === '') {
        problems.push(`${where}: empty link`);
        continue;
      }
      if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) continue; // https:, mailto:
      const hash = target.indexOf('#');
      const filePart = decodeURIComponent(hash < 0 ? target : target.slice(0, hash));
      const anchor = hash < 0 ? null : decodeURIComponent(target.slice(hash + 1));
      const dest = filePart === '' ? abs
        : filePart.startsWith('/') ? path.join(root, filePart) : path.resolve(path.dirname(abs), filePart);
      const inRepo = path.relative(root, dest);
      if (inRepo.startsWith('..') || path.isAbsolute(inRepo)) {
        problems.push(`${where}: points outside the repository`);
        continue;
      }
      if (!fs.existsSync(dest)) {
        problems.push(`${where}: no such file or directory: ${inRepo || '.'}`);
        continue;
      }
      if (anchor !== null && /\.md$/i.test(dest) && fs.statSync(dest).isFile() && !anchors(dest).has(anchor)) {
        problems.push(`${where}: no heading with the id #${anchor} in ${path.relative(root, dest)}`);
      }
    }
  }
  return problems;
}

function walk(dir, keep, out = []) {
  if (!fs.existsSync(dir)) return out;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules') walk(p, keep, out);
    } else if (keep(e.name)) out.push(p);
  }
  return out;
}

const rel = (p) => path.relative(REPO, p).split(path.sep).join('/');

function markdownFiles() {
  return ['README.md', 'tests/rig/README.md', ...walk(path.join(REPO, 'docs'), (n) => n.endsWith('.md')).map(rel)]
    .filter((f) => fs.existsSync(path.join(REPO, f))).sort();
}

// ---- text naming documents a clone does not have --------------------------

// The forms those references took: a product spec by name, the numbered seed
// documents, the directory they sat in, and "the documents we were given".
// "seed" alone stays legitimate (FUZZ_SEED, a seeded fuzz test).
const OUTSIDE = [
  { re: /\bSPEC\b/, what: 'SPEC (an outside document)' },
  { re: /\bseed[ _-]?0\d\d\b/i, what: 'a numbered seed document' },
  { re: /\bseed[ _-]?0\b/i, what: 'a numbered seed document' },
  { re: /\bseed documents?\b/i, what: 'the seed documents' },
  { re: /\.\.\/shared\b/, what: '../shared (outside the repository)' },
  { re: /\bdocuments we were given\b/i, what: 'the documents we were given' },
];

function outsideProblems(files) {
  const problems = [];
  for (const abs of files) {
    fs.readFileSync(abs, 'utf8').split('\n').forEach((line, i) => {
      for (const { re, what } of OUTSIDE) {
        if (re.test(line)) problems.push(`${rel(abs)}:${i + 1}: names ${what}: ${line.trim().slice(0, 120)}`);
      }
    });
  }
  return problems;
}

// What the documentation side writes: the C tree (src/, tests/unit/) has its
// own owner and checks; layout.test.js and this file quote the forms.
function ownedTextFiles() {
  const here = path.basename(__filename);
  const files = [
    'README.md', 'Dockerfile', 'Makefile', '.ci/run', 'bench/run.sh', 'bench/report.js',
  ].map((f) => path.join(REPO, f)).filter((f) => fs.existsSync(f));
  files.push(...walk(path.join(REPO, 'docs'), () => true));
  files.push(...walk(path.join(REPO, 'examples'), () => true));
  files.push(...walk(path.join(REPO, 'deploy'), () => true));
  files.push(...walk(path.join(REPO, 'tests', 'e2e'), (n) => n.endsWith('.js') && n !== 'layout.test.js' && n !== here));
  files.push(...walk(path.join(REPO, 'tests', 'rig'), (n) => /\.(js|md|sh)$/.test(n)));
  return files.sort();
}

// ---- tests ----------------------------------------------------------------

test('the link checker finds a broken file link and a broken anchor (bad sample)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kk-docs-'));
  try {
    fs.mkdirSync(path.join(dir, 'docs'));
    fs.writeFileSync(path.join(dir, 'docs', 'b.md'), [
      '# Page B',
      '## Target `aws.kinesis` (also `target.aws.kinesis`)',
      '## Reload: SIGHUP and the config file watch',
      '## put and create (the older connector\'s forms)',
      '## Twice', '## Twice',
      'Set-ext title', '-------------',
      '```sh', '# not a heading', '```',
      '<a id="by-hand"></a>',
      '',
    ].join('\n'));
    fs.writeFileSync(path.join(dir, 'README.md'), [
      '# Top',
      'Fine: [b](docs/b.md), [dir](docs/), [x](docs/b.md#target-awskinesis-also-targetawskinesis),',
      '[r](docs/b.md#reload-sighup-and-the-config-file-watch) [p](docs/b.md#put-and-create-the-older-connectors-forms)',
      '[t](docs/b.md#twice-1) [s](docs/b.md#set-ext-title) [h](docs/b.md#by-hand) [self](#top)',
      '[web](https://example.invalid/x) `[code](nowhere.md)`',
      'Broken: [missing](docs/missing.md) and [anchor](docs/b.md#no-such-heading)',
      '[self](#nowhere) [fenced](docs/b.md#not-a-heading) [out](../../etc/passwd)',
      '[twice](docs/b.md#twice-2)',
      '',
    ].join('\n'));
    const problems = linkProblems(dir, ['README.md', 'docs/b.md']);
    const expect = [
      /README\.md:6: \(docs\/missing\.md\): no such file/,
      /README\.md:6: \(docs\/b\.md#no-such-heading\): no heading with the id #no-such-heading/,
      /README\.md:7: \(#nowhere\): no heading/,
      /README\.md:7: \(docs\/b\.md#not-a-heading\): no heading/,
      /README\.md:7: \(\.\.\/\.\.\/etc\/passwd\): points outside the repository/,
      /README\.md:8: \(docs\/b\.md#twice-2\): no heading/,
    ];
    for (const re of expect) assert.ok(problems.some((p) => re.test(p)), `not found: ${re}\n${problems.join('\n')}`);
    assert.strictEqual(problems.length, expect.length, problems.join('\n'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('every relative link and #anchor in README.md and docs/ resolves', () => {
  const files = markdownFiles();
  assert.ok(files.includes('README.md') && files.some((f) => f.startsWith('docs/')), files.join(' '));
  const problems = linkProblems(REPO, files);
  assert.deepStrictEqual(problems, [], `broken links:\n${problems.join('\n')}`);
});

test('README.md is a front page: at most 200 lines, linking every page of docs/', () => {
  const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const lines = readme.split('\n').length;
  assert.ok(lines <= 200, `README.md has ${lines} lines; move the detail into a page of docs/`);
  const linked = new Set(linksOf(readme).map((l) => path.normalize(l.target.split('#')[0])));
  const pages = walk(path.join(REPO, 'docs'), (n) => n.endsWith('.md')).map(rel);
  assert.ok(pages.length >= 8, `docs/ has ${pages.length} pages`);
  const orphans = pages.filter((p) => !linked.has(path.normalize(p)));
  assert.deepStrictEqual(orphans, [], 'pages of docs/ that README.md does not link');
});

test('the outside-document check finds SPEC, seed 000, ../shared (bad sample) and spares FUZZ_SEED', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kk-docs-'));
  try {
    const bad = path.join(dir, 'bad.md');
    fs.writeFileSync(bad, [
      'as SPEC §3 says', 'the example of seed 000', 'see examples/seed-001.yaml',
      'read ../shared/reference', 'in the documents we were given', 'the seed document',
    ].join('\n'));
    const good = path.join(dir, 'good.md');
    fs.writeFileSync(good, [
      'FUZZ_SEED=7 build-test/test_fuzz_config', 'a seeded mix of faults, seed 42',
      'spec: (Kubernetes)', 'a fault spec', 'make fuzz FUZZ_SEEDS="1 200"', 'the seeds are fixed',
    ].join('\n'));
    const problems = outsideProblems([bad, good]);
    assert.strictEqual(problems.filter((p) => p.includes('bad.md')).length, 6, problems.join('\n'));
    assert.deepStrictEqual(problems.filter((p) => p.includes('good.md')), []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('docs, examples, deployment files, tests, the rig and scripts name no outside document', () => {
  const files = ownedTextFiles();
  assert.ok(files.some((f) => rel(f) === 'tests/e2e/config.test.js'), 'the walk found the e2e tests');
  assert.ok(files.some((f) => rel(f).startsWith('examples/')), 'the walk found the examples');
  const problems = outsideProblems(files);
  assert.deepStrictEqual(problems, [], `name the thing itself (e.g. "kubemq-targets' aws.kinesis connector"):\n${problems.join('\n')}`);
});
