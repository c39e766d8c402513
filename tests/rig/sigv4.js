'use strict';
// AWS SigV4 for the rig, on AWS's own JS signer (@smithy/signature-v4):
// sign requests the way an AWS client does, and verify what a client sent
// (recipe: copy only the signed headers, date from X-Amz-Date, region and
// service from the scope, the client's SignedHeaders list, no checksum header).
const crypto = require('crypto');
const sv4 = require('@smithy/signature-v4');
const { Sha256 } = require('@aws-crypto/sha256-js');
const { HttpRequest } = require('@smithy/protocol-http');

const KINESIS_TARGET_PREFIX = 'Kinesis_20131202.';
const AMZ_JSON = 'application/x-amz-json-1.1';
const MAX_SKEW_MS = 15 * 60 * 1000;
const MISMATCH_MESSAGE = 'The request signature we calculated does not match the signature you provided. ' +
  'Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';

const sha256hex = (b) => crypto.createHash('sha256').update(b).digest('hex');

function toBuffer(body) {
  if (body === undefined || body === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  return Buffer.from(JSON.stringify(body), 'utf8');
}

// 20240102T030405Z <-> Date
function parseAmzDate(s) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s || '');
  if (!m) return null;
  const d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
  return Number.isNaN(d.getTime()) ? null : d;
}
const amzDate = (d) => d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');

// Sign a Kinesis JSON 1.1 call. opts: url, accessKey, secretKey, sessionToken,
// region ('us-east-1'), service ('kinesis'), operation (e.g. 'PutRecord') or
// target (full X-Amz-Target), body (object, string or Buffer), date (now),
// headers (extra, signed), applyChecksum (false: no x-amz-content-sha256).
// Returns {method, url, headers (lower-case names incl. authorization), body}.
async function signKinesis(opts) {
  const u = new URL(opts.url);
  const body = toBuffer(opts.body);
  const headers = {
    host: u.host,
    'content-type': AMZ_JSON,
    ...(opts.operation || opts.target
      ? { 'x-amz-target': opts.target || KINESIS_TARGET_PREFIX + opts.operation } : {}),
  };
  for (const [k, v] of Object.entries(opts.headers || {})) headers[k.toLowerCase()] = String(v);
  const signer = new sv4.SignatureV4({
    credentials: { accessKeyId: opts.accessKey, secretAccessKey: opts.secretKey, sessionToken: opts.sessionToken },
    region: opts.region || 'us-east-1',
    service: opts.service || 'kinesis',
    sha256: Sha256,
    applyChecksum: !!opts.applyChecksum,
    uriEscapePath: true,
  });
  const req = new HttpRequest({
    method: opts.method || 'POST', protocol: u.protocol, hostname: u.hostname, port: u.port ? +u.port : undefined,
    path: u.pathname || '/', query: Object.fromEntries(u.searchParams), headers, body,
  });
  const signed = await signer.sign(req, { signingDate: opts.date || new Date() });
  const out = {};
  for (const [k, v] of Object.entries(signed.headers)) out[k.toLowerCase()] = v;
  return { method: signed.method, url: opts.url, headers: out, body };
}

function parseAuthorization(h) {
  const out = { raw: h };
  const m = /^AWS4-HMAC-SHA256\s+(.*)$/.exec(h || '');
  if (!m) return out;
  out.algorithm = 'AWS4-HMAC-SHA256';
  for (const part of m[1].split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k === 'Credential') out.credential = v;
    else if (k === 'SignedHeaders') out.signedHeaders = v;
    else if (k === 'Signature') out.signature = v;
  }
  return out;
}

const fail = (type, message, extra = {}) => ({ ok: false, status: 400, type, message, ...extra });

// Verify one received request. req: {method, path, headers: {name: string |
// string[]} (lower-case names, as node gives them), body: Buffer}.
// lookup(accessKey) -> {secretKey, sessionToken} | null. now: Date.
// Resolves {ok: true, accessKey, region, service, date} or {ok: false, status,
// type, message, canonicalRequest?, stringToSign?}.
async function verifyRequest(req, lookup, now = new Date()) {
  const hv = (n) => {
    const v = req.headers[n];
    return Array.isArray(v) ? v.join(',') : v;
  };
  const authz = hv('authorization');
  if (!authz) return fail('MissingAuthenticationTokenException', 'Missing Authentication Token');
  const a = parseAuthorization(authz);
  const missing = [];
  if (!a.credential) missing.push("Authorization header requires 'Credential' parameter.");
  if (!a.signature) missing.push("Authorization header requires 'Signature' parameter.");
  if (!a.signedHeaders) missing.push("Authorization header requires 'SignedHeaders' parameter.");
  const xdate = hv('x-amz-date');
  if (!xdate) missing.push("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.");
  if (!a.algorithm || missing.length) {
    if (!a.algorithm && !missing.length) missing.push('Unsupported AWS signing algorithm; expected AWS4-HMAC-SHA256.');
    return fail('IncompleteSignatureException', `${missing.join(' ')} Authorization=${authz}`);
  }
  const date = parseAmzDate(xdate);
  if (!date) return fail('IncompleteSignatureException', `X-Amz-Date must be in ISO 8601 basic format (yyyyMMddTHHmmssZ), got '${xdate}'.`);
  const scope = a.credential.split('/');
  if (scope.length !== 5) {
    return fail('IncompleteSignatureException', `Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '${a.credential}'`);
  }
  const [accessKey, shortDate, region, service, term] = scope;
  if (shortDate !== xdate.slice(0, 8)) {
    return fail('InvalidSignatureException', `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${shortDate}' != '${xdate.slice(0, 8)}', from '${xdate}'.`);
  }
  if (term !== 'aws4_request') return fail('InvalidSignatureException', `Credential should be scoped with a valid terminator: 'aws4_request', not '${term}'.`);
  if (service !== 'kinesis') return fail('InvalidSignatureException', `Credential should be scoped to correct service: 'kinesis'.`);
  const signedList = a.signedHeaders.split(';');
  if (!signedList.includes('host')) {
    return fail('InvalidSignatureException', "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.");
  }
  const skew = date.getTime() - now.getTime();
  if (skew < -MAX_SKEW_MS) {
    return fail('InvalidSignatureException', `Signature expired: ${xdate} is now earlier than ${amzDate(new Date(now.getTime() - MAX_SKEW_MS))} (${amzDate(now)} - 15 min.)`);
  }
  if (skew > MAX_SKEW_MS) {
    return fail('InvalidSignatureException', `Signature not yet current: ${xdate} is still later than ${amzDate(new Date(now.getTime() + MAX_SKEW_MS))} (${amzDate(now)} + 15 min.)`);
  }
  const cred = lookup(accessKey);
  if (!cred) return fail('UnrecognizedClientException', 'The security token included in the request is invalid.');
  const token = hv('x-amz-security-token');
  if ((cred.sessionToken || '') !== (token || '') ||
      (token && !signedList.includes('x-amz-security-token'))) {
    return fail('UnrecognizedClientException', 'The security token included in the request is invalid.');
  }
  const body = toBuffer(req.body);
  const claimed = hv('x-amz-content-sha256');
  if (claimed !== undefined && claimed !== sha256hex(body)) {
    return fail('InvalidSignatureException', "The provided 'x-amz-content-sha256' header does not match what was computed.");
  }

  const headers = {};
  for (const name of signedList) {
    const v = req.headers[name];
    if (v === undefined) continue; // signed but not sent: the signatures will differ
    headers[name] = Array.isArray(v) ? v.map((x) => x.trim()).join(',') : v;
  }
  const qIndex = req.path.indexOf('?');
  const path = qIndex >= 0 ? req.path.slice(0, qIndex) : req.path;
  const query = {};
  if (qIndex >= 0) {
    for (const [k, v] of new URLSearchParams(req.path.slice(qIndex + 1))) {
      if (k in query) query[k] = [].concat(query[k], v); else query[k] = v;
    }
  }
  const hreq = new HttpRequest({ method: req.method, hostname: 'unused', path, query, headers, body });
  const signer = new sv4.SignatureV4({
    credentials: { accessKeyId: accessKey, secretAccessKey: cred.secretKey },
    region, service, sha256: Sha256, applyChecksum: false, uriEscapePath: true,
  });
  const signableHeaders = new Set(signedList);
  const resigned = await signer.sign(hreq, { signingDate: date, signableHeaders });
  const ours = parseAuthorization(resigned.headers.authorization);
  if (ours.signature === a.signature && ours.signedHeaders === a.signedHeaders) {
    return { ok: true, accessKey, region, service, date };
  }
  // Explain the mismatch for whoever reads the gate log.
  const prepared = sv4.prepareRequest(hreq);
  prepared.headers['x-amz-date'] = xdate;
  const canon = sv4.getCanonicalHeaders(prepared, undefined, signableHeaders);
  const payloadHash = await sv4.getPayloadHash(prepared, Sha256);
  const canonicalRequest = signer.createCanonicalRequest(prepared, canon, payloadHash);
  const stringToSign = await signer.createStringToSign(xdate, sv4.createScope(shortDate, region, service),
    canonicalRequest, 'AWS4-HMAC-SHA256');
  return fail('InvalidSignatureException', MISMATCH_MESSAGE, { canonicalRequest, stringToSign });
}

// Sign and send one Kinesis call over HTTP/1.1 (the rig's own client).
// opts: accessKey, secretKey, sessionToken, region, date, headers, applyChecksum,
// timeoutMs, tamper(signed) (mutate the signed request before sending).
// Resolves {status, headers, body, text, json}.
async function kinesisCall(url, operation, payload, opts = {}) {
  const { httpRequest } = require('./proc');
  const signed = await signKinesis({ ...opts, url, operation, body: payload === undefined ? {} : payload });
  if (opts.tamper) opts.tamper(signed);
  return httpRequest(url, {
    method: signed.method, headers: signed.headers, body: signed.body, timeoutMs: opts.timeoutMs || 30000,
    agent: opts.agent || false,
  });
}

module.exports = {
  signKinesis, kinesisCall, verifyRequest, parseAuthorization, parseAmzDate, amzDate, sha256hex,
  KINESIS_TARGET_PREFIX, AMZ_JSON, MISMATCH_MESSAGE,
};
