// aws-creds-server.js - stand-in for the AWS credential endpoints, so every
// provider of our credential chain is tested on 127.0.0.1:
//   STS AssumeRoleWithWebIdentity (Query API, XML answer; must be unsigned),
//   the container credentials endpoint (GET /creds, JSON; checks the
//   Authorization token), EC2 IMDSv2 (PUT /latest/api/token, then the role
//   name and its credentials; refuses requests without a valid token),
// plus a Kinesis-like endpoint (POST /kinesis) that checks SigV4 against the
// credentials it has handed out, so a test sees which key signed a call and
// that expired or revoked keys are refused.
//
//   node aws-creds-server.js [--port 0] [--lifetime 3600] [--access-key AK
//     --secret-key SK [--session-token T]] [--role-arn ARN]
//     [--web-identity-token T] [--auth-token T] [--role NAME] [--parent-watch]
// Ready line {"ready":true,"port":N,"url":"http://127.0.0.1:N"}.
//
// Without --access-key every fetch hands out a new key (ASIASTS0001,
// ASIACONTAINER0002, ...), valid for --lifetime seconds. With it, every
// fetch hands out that one key (to pair with the SigV4 gate).
//
// Control (unsigned, JSON):
//   GET  /_stats   {sts, container, imdsToken, imdsRole, imdsCreds, refused:
//                   {sts, container, imds}, kinesis: {accessKey: n},
//                   issued: [{accessKey, provider, expiration, revoked}], lastSts}
//   POST /_set     {lifetime, hang: {sts|container|imds: bool}, fail: {sts|container|imds: status}}
//   POST /_revoke  every key handed out so far is refused from now on
'use strict';

const crypto = require('node:crypto');
const http = require('node:http');
const { verifyRequest } = require('./sigv4');
const { parseArgs, announceReady } = require('./proc');

const argv = parseArgs(process.argv.slice(2), ['parent-watch']);
const settings = {
  lifetime: Number(argv.lifetime || 3600),
  hang: {},
  fail: {},
};
const fixed = argv['access-key']
  ? { accessKey: argv['access-key'], secretKey: argv['secret-key'], sessionToken: argv['session-token'] || '' }
  : null;
const roleName = argv.role || 'kk-test-role';

const stats = {
  sts: 0, container: 0, imdsToken: 0, imdsRole: 0, imdsCreds: 0,
  refused: { sts: 0, container: 0, imds: 0 }, kinesis: {}, lastSts: null,
};
const issued = new Map(); // accessKey -> {secretKey, sessionToken, expiration: Date, provider, revoked}
const imdsTokens = new Map(); // token -> expiry ms
let seq = 0;

const isoSeconds = (d) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

function issue(provider) {
  const expiration = new Date(Date.now() + settings.lifetime * 1000);
  let c;
  if (fixed) {
    c = { ...fixed };
  } else {
    seq++;
    c = {
      accessKey: `ASIA${provider.toUpperCase()}${String(seq).padStart(4, '0')}`,
      secretKey: crypto.randomBytes(30).toString('base64'),
      sessionToken: `IQoJb3JpZ2luX2Vj${crypto.randomBytes(240).toString('base64')}`,
    };
  }
  issued.set(c.accessKey, { ...c, expiration, provider, revoked: false });
  return { ...c, expiration };
}

function send(res, status, body, type = 'application/json') {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const xmlEscape = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function stsError(res, status, code, message) {
  stats.refused.sts++;
  send(res, status, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>${code}</Code><Message>${xmlEscape(message)}</Message></Error>
  <RequestId>${crypto.randomUUID()}</RequestId>
</ErrorResponse>`, 'text/xml');
}

function handleSts(req, res, params) {
  stats.sts++;
  stats.lastSts = { method: req.method, params: { ...params, WebIdentityToken: params.WebIdentityToken ? '(set)' : '' } };
  if (req.headers.authorization) return stsError(res, 400, 'InvalidParameterValue', 'AssumeRoleWithWebIdentity must not be signed');
  if (params.Action !== 'AssumeRoleWithWebIdentity') return stsError(res, 400, 'InvalidAction', `Could not find operation ${params.Action}`);
  if (params.Version !== '2011-06-15') return stsError(res, 400, 'InvalidParameterValue', `bad Version ${params.Version}`);
  for (const p of ['RoleArn', 'RoleSessionName', 'WebIdentityToken']) {
    if (!params[p]) return stsError(res, 400, 'MissingParameter', `The request must contain the parameter ${p}`);
  }
  if (!/^[\w+=,.@-]{2,64}$/.test(params.RoleSessionName)) {
    return stsError(res, 400, 'ValidationError', `1 validation error detected: Value '${params.RoleSessionName}' at 'roleSessionName' failed to satisfy constraint`);
  }
  if (argv['role-arn'] ? params.RoleArn !== argv['role-arn'] : !/^arn:aws:iam::\d{12}:role\//.test(params.RoleArn)) {
    return stsError(res, 403, 'AccessDenied', `Not authorized to perform sts:AssumeRoleWithWebIdentity on ${params.RoleArn}`);
  }
  if (argv['web-identity-token'] && params.WebIdentityToken !== argv['web-identity-token']) {
    return stsError(res, 400, 'InvalidIdentityToken', 'Couldn\'t retrieve verification key from your identity provider');
  }
  const c = issue('sts');
  send(res, 200, `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:default:kk</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>${xmlEscape(params.RoleArn.replace(':iam::', ':sts::').replace(':role/', ':assumed-role/'))}/${xmlEscape(params.RoleSessionName)}</Arn>
      <AssumedRoleId>AROAEXAMPLE:${xmlEscape(params.RoleSessionName)}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>${xmlEscape(c.sessionToken)}</SessionToken>
      <SecretAccessKey>${xmlEscape(c.secretKey)}</SecretAccessKey>
      <Expiration>${isoSeconds(c.expiration)}</Expiration>
      <AccessKeyId>${xmlEscape(c.accessKey)}</AccessKeyId>
    </Credentials>
    <Provider>arn:aws:iam::123456789012:oidc-provider/oidc.eks.example</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>${crypto.randomUUID()}</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>`, 'text/xml');
}

function handleContainer(req, res) {
  stats.container++;
  if (argv['auth-token'] && req.headers.authorization !== argv['auth-token']) {
    stats.refused.container++;
    return send(res, req.headers.authorization ? 403 : 401,
      { code: 'AccessDenied', message: 'Authorization token missing or not valid' });
  }
  const c = issue('container');
  send(res, 200, {
    AccessKeyId: c.accessKey, SecretAccessKey: c.secretKey, Token: c.sessionToken,
    Expiration: isoSeconds(c.expiration), RoleArn: 'arn:aws:iam::123456789012:role/kk-task',
  });
}

function imdsTokenValid(req) {
  const t = req.headers['x-aws-ec2-metadata-token'];
  const exp = t && imdsTokens.get(t);
  return !!exp && exp > Date.now();
}

function handleImds(req, res, path) {
  if (path === '/latest/api/token') {
    stats.imdsToken++;
    const ttl = Number(req.headers['x-aws-ec2-metadata-token-ttl-seconds']);
    if (req.method !== 'PUT' || !Number.isInteger(ttl) || ttl < 1 || ttl > 21600 || req.headers['x-forwarded-for']) {
      stats.refused.imds++;
      return send(res, req.method !== 'PUT' ? 405 : 400, '', 'text/plain');
    }
    const token = crypto.randomBytes(42).toString('base64').replace(/=+$/, '');
    imdsTokens.set(token, Date.now() + ttl * 1000);
    return send(res, 200, token, 'text/plain');
  }
  const prefix = '/latest/meta-data/iam/security-credentials/';
  if (req.method !== 'GET' || !imdsTokenValid(req)) {
    stats.refused.imds++;
    return send(res, 401, '', 'text/plain');
  }
  if (path === prefix) {
    stats.imdsRole++;
    return send(res, 200, roleName, 'text/plain');
  }
  if (path.startsWith(prefix) && path.slice(prefix.length) === roleName) {
    stats.imdsCreds++;
    const c = issue('imds');
    return send(res, 200, {
      Code: 'Success', LastUpdated: isoSeconds(new Date()), Type: 'AWS-HMAC',
      AccessKeyId: c.accessKey, SecretAccessKey: c.secretKey, Token: c.sessionToken,
      Expiration: isoSeconds(c.expiration),
    });
  }
  return send(res, 404, '', 'text/plain');
}

async function handleKinesis(req, res, body) {
  const v = await verifyRequest({ method: req.method, path: req.url, headers: req.headers, body }, (ak) => {
    const c = issued.get(ak);
    return c ? { secretKey: c.secretKey, sessionToken: c.sessionToken } : null;
  });
  if (!v.ok) return send(res, v.status, { __type: v.type, message: v.message }, 'application/x-amz-json-1.1');
  const c = issued.get(v.accessKey);
  stats.kinesis[v.accessKey] = (stats.kinesis[v.accessKey] || 0) + 1;
  if (c.revoked || c.expiration.getTime() <= Date.now()) {
    return send(res, 400, { __type: 'ExpiredTokenException', message: 'The security token included in the request is expired' },
      'application/x-amz-json-1.1');
  }
  return send(res, 200, { accessKeyId: v.accessKey, provider: c.provider }, 'application/x-amz-json-1.1');
}

function providerOf(path, params) {
  if (path.startsWith('/latest/')) return 'imds';
  if (path === '/creds' || path.startsWith('/creds/')) return 'container';
  if (params.Action) return 'sts';
  return null;
}

async function handle(req, res) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const body = Buffer.concat(chunks);
  const u = new URL(req.url, 'http://127.0.0.1');
  const path = u.pathname;
  if (path === '/_stats') {
    return send(res, 200, {
      ...stats,
      issued: [...issued.entries()].map(([accessKey, c]) => ({
        accessKey, provider: c.provider, expiration: c.expiration.toISOString(), revoked: c.revoked,
      })),
    });
  }
  if (path === '/_set' && req.method === 'POST') {
    const s = body.length ? JSON.parse(body.toString('utf8')) : {};
    if (s.lifetime !== undefined) settings.lifetime = Number(s.lifetime);
    if (s.hang) Object.assign(settings.hang, s.hang);
    if (s.fail) Object.assign(settings.fail, s.fail);
    return send(res, 200, settings);
  }
  if (path === '/_revoke' && req.method === 'POST') {
    for (const c of issued.values()) c.revoked = true;
    return send(res, 200, { revoked: issued.size });
  }
  if (path === '/kinesis') return handleKinesis(req, res, body);
  const params = Object.fromEntries(u.searchParams);
  if (req.method === 'POST' && /x-www-form-urlencoded/.test(req.headers['content-type'] || '')) {
    Object.assign(params, Object.fromEntries(new URLSearchParams(body.toString('utf8'))));
  }
  const provider = providerOf(path, params);
  if (!provider) return send(res, 404, { message: `nothing at ${path}` });
  if (settings.hang[provider]) return undefined; // never answers: timeouts
  if (settings.fail[provider]) {
    stats.refused[provider]++;
    return send(res, settings.fail[provider], { message: `${provider} fails on purpose` });
  }
  if (provider === 'sts') return handleSts(req, res, params);
  if (provider === 'container') return handleContainer(req, res);
  return handleImds(req, res, path);
}

const server = http.createServer({ keepAliveTimeout: 60000 }, (req, res) => {
  handle(req, res).catch((e) => { if (!res.headersSent) send(res, 500, { message: String(e) }); });
});
server.listen(Number(argv.port || 0), '127.0.0.1', () => {
  const { port } = server.address();
  announceReady({ port, url: `http://127.0.0.1:${port}` }, {
    parentWatch: !!argv['parent-watch'],
    onStop: () => new Promise((r) => {
      if (server.closeAllConnections) server.closeAllConnections();
      server.close(() => r());
    }),
  });
});
