// sigv4-verify.js - checks a SigV4 Authorization header with AWS's own JS
// signer (@smithy/signature-v4), as in kinesis-peers.md §6:
// copy only the signed headers, take the date from X-Amz-Date and region
// and service from the credential scope, re-sign with the client's own
// SignedHeaders list, compare; x-amz-content-sha256 (if signed) must match
// the body.
//
// As a module: verify({method, path, query, headers, body}, secretFor)
//   headers: [[name, value], ...] as received; body: Buffer or string;
//   secretFor(accessKeyId) -> secret. Resolves {ok, reason, signedHeaders}.
// As a program: node sigv4-verify.js CASES.json
//   CASES.json: [{name, secret, method, path, query, headers, body, expect}]
//   with expect "match" or "mismatch". Prints one line per case and exits
//   0 only when every case came out as expected.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const { SignatureV4 } = require('@smithy/signature-v4');
const { Sha256 } = require('@aws-crypto/sha256-js');
const { HttpRequest } = require('@smithy/protocol-http');

function parseAuthorization(value) {
  const m = /^AWS4-HMAC-SHA256 Credential=([^,]+), ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(
    (value || '').trim());
  if (!m) return null;
  const scope = m[1].split('/');
  if (scope.length !== 5 || scope[4] !== 'aws4_request') return null;
  return {
    accessKeyId: scope[0], date: scope[1], region: scope[2], service: scope[3],
    signedHeaders: m[2].split(';'), signature: m[3],
  };
}

function amzDateToDate(s) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s || '');
  if (!m) return null;
  return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
}

function parseQuery(q) {
  const out = {};
  if (!q) return out;
  for (const part of q.split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const k = decodeURIComponent(eq < 0 ? part : part.slice(0, eq));
    const v = eq < 0 ? '' : decodeURIComponent(part.slice(eq + 1));
    if (k in out) out[k] = [].concat(out[k], v);
    else out[k] = v;
  }
  return out;
}

async function verify(req, secretFor) {
  const headers = req.headers || [];
  const get = (n) => {
    const vals = headers.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v);
    return vals.length ? vals.join(',') : undefined;
  };
  const auth = parseAuthorization(get('authorization'));
  if (!auth) return { ok: false, reason: 'malformed Authorization header' };
  const secret = secretFor(auth.accessKeyId);
  if (secret === undefined) return { ok: false, reason: `unknown access key ${auth.accessKeyId}` };
  const amzDate = get('x-amz-date');
  const signingDate = amzDateToDate(amzDate && amzDate.trim());
  if (!signingDate) return { ok: false, reason: 'missing or malformed X-Amz-Date' };
  if (amzDate.trim().slice(0, 8) !== auth.date) return { ok: false, reason: 'X-Amz-Date does not match the credential scope' };
  const body = Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body || '', 'utf8');
  const copied = {};
  for (const name of auth.signedHeaders) {
    const v = get(name);
    if (v === undefined) return { ok: false, reason: `signed header ${name} is missing` };
    copied[name] = v;
  }
  if (!auth.signedHeaders.includes('host')) return { ok: false, reason: 'host is not signed' };
  const sha = copied['x-amz-content-sha256'];
  if (sha !== undefined && sha.trim() !== crypto.createHash('sha256').update(body).digest('hex')) {
    return { ok: false, reason: 'x-amz-content-sha256 does not match the body' };
  }
  const credentials = { accessKeyId: auth.accessKeyId, secretAccessKey: secret };
  const signer = new SignatureV4({
    credentials, region: auth.region, service: auth.service, sha256: Sha256,
    applyChecksum: false, uriEscapePath: true,
  });
  const hostHeader = copied.host;
  const signed = await signer.sign(new HttpRequest({
    method: req.method, hostname: hostHeader.split(':')[0], path: req.path || '/',
    query: parseQuery(req.query), headers: copied, body,
  }), { signingDate, signableHeaders: new Set(auth.signedHeaders) });
  const again = parseAuthorization(signed.headers.authorization);
  if (!again) return { ok: false, reason: 'reference signer produced no Authorization' };
  if (again.signedHeaders.join(';') !== auth.signedHeaders.join(';')) {
    return { ok: false, reason: `SignedHeaders differ: ${again.signedHeaders.join(';')}` };
  }
  if (again.signature !== auth.signature) return { ok: false, reason: 'signature mismatch' };
  return { ok: true, reason: 'signature matches', signedHeaders: auth.signedHeaders };
}

async function main() {
  const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  let bad = 0;
  for (const c of cases) {
    const r = await verify(c, (ak) => (ak === c.access_key ? c.secret : undefined));
    const got = r.ok ? 'match' : 'mismatch';
    const good = got === c.expect;
    if (!good) bad++;
    console.log(`${good ? 'ok' : 'FAIL'} ${c.name}: ${got} (${r.reason})`);
  }
  console.log(`${cases.length - bad}/${cases.length} as expected`);
  process.exit(bad ? 1 : 0);
}

module.exports = { verify, parseAuthorization };

if (require.main === module) {
  main().catch((e) => { console.error(e); process.exit(2); });
}
