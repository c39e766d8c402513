'use strict';
// The AWS credential chain end to end: `kubemq-kinesis invoke` with a config
// that has no aws_key, credentials from the stand-in endpoints
// (aws-creds-server.js: container endpoint, STS web identity, IMDSv2) or a
// profile file, against kinesalite behind the SigV4 gate that knows only the
// key the stand-in hands out. Everything on 127.0.0.1; IMDS is disabled
// unless pointed at the stand-in, so 169.254.169.254 is never contacted.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const rig = require('../rig/lib');
const { binding, ok, fails, b64, req, dataOf } = require('./kinesis_lib');

const AK = 'ASIACHAINE2E0001';
const SK = 'chain/e2e+SECRET/abcdef0123456789';
const TOKEN = 'IQoJb3JpZ2luX2VjE2e2SessionToken/with+slash==';
const ROLE_ARN = 'arn:aws:iam::123456789012:role/kk-irsa-e2e';
const WEB_TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJlMmUifQ.c2ln';
const AUTH = 'pod-identity-token-e2e';

// Every variable the chain reads, off: each test turns on what it uses.
const QUIET = {
  AWS_REGION: '', AWS_ENDPOINT_URL: '', AWS_ENDPOINT_URL_KINESIS: '', AWS_ENDPOINT_URL_STS: '',
  AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_SESSION_TOKEN: '',
  AWS_PROFILE: '', AWS_DEFAULT_PROFILE: '',
  AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/credentials', AWS_CONFIG_FILE: '/nonexistent/config',
  AWS_ROLE_ARN: '', AWS_WEB_IDENTITY_TOKEN_FILE: '', AWS_ROLE_SESSION_NAME: '',
  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: '', AWS_CONTAINER_CREDENTIALS_FULL_URI: '',
  AWS_CONTAINER_AUTHORIZATION_TOKEN: '', AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: '',
  AWS_EC2_METADATA_SERVICE_ENDPOINT: '', AWS_EC2_METADATA_DISABLED: 'true',
};

describe('credentials from the chain, through the gate to kinesalite', () => {
  let peer; let gate; let creds; let cfg; let dir;
  let refusedOnPurpose = 0;
  const handles = [];

  before(async () => {
    peer = await rig.startKinesalite();
    handles.push(peer);
    gate = await rig.startGate({ upstream: peer.url, accessKey: AK, secretKey: SK, sessionToken: TOKEN });
    handles.push(gate);
    creds = await rig.startCredsServer({
      accessKey: AK, secretKey: SK, sessionToken: TOKEN, roleArn: ROLE_ARN, webIdentityToken: WEB_TOKEN,
      authToken: AUTH,
    });
    handles.push(creds);
    // no aws_key / aws_secret_key: the chain supplies them
    cfg = rig.writeConfig({
      apiPort: 0,
      bindings: [binding('kinesis', { region: 'us-east-1', endpoint: gate.url, max_attempts: '3' })],
    });
    dir = rig.tempDir();
  });

  after(async () => {
    try {
      const s = await gate.stats();
      assert.equal(s.sigFailures, refusedOnPurpose, 'every other signature the gate saw was right');
    } finally {
      for (const h of handles.reverse()) await h.stop();
      for (const h of handles) assert.equal(rig.pidAlive(h.pid), false, `pid ${h.pid} still alive`);
    }
  });

  const run = async (env, envelope) => {
    const r = await rig.invoke(cfg, 'kinesis', envelope, { env: { ...QUIET, ...env }, args: ['--log-level', 'info'] });
    // never a secret in a log line
    for (const secret of [SK, TOKEN, WEB_TOKEN, AUTH]) {
      assert.ok(!r.stderr.includes(secret), `a secret in the log:\n${r.stderr}`);
    }
    return r;
  };
  const put = async (env, stream) => {
    const r = await run(env, req({ method: 'put_record', stream_name: stream, partition_key: 'pk' }, b64('hello chain')));
    assert.equal(r.code, 0, r.stderr);
    ok(r.reply);
    assert.match(r.reply.metadata.shard_id, /^shardId-/);
    return r;
  };

  it('container endpoint (FULL_URI on loopback, Authorization token)', async () => {
    const env = { AWS_CONTAINER_CREDENTIALS_FULL_URI: `${creds.url}/creds`, AWS_CONTAINER_AUTHORIZATION_TOKEN: AUTH };
    const s0 = await creds.stats();
    const c = await run(env, req({ method: 'create_stream', stream_name: 'chain1', shard_count: '1' }));
    assert.equal(c.code, 0, c.stderr);
    ok(c.reply);
    const p = await put(env, 'chain1');
    assert.match(p.stderr, /aws credentials: from container endpoint, expire at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/);
    const s1 = await creds.stats();
    assert.equal(s1.container - s0.container, 2, 'one fetch per invoke');
    assert.equal(s1.refused.container, s0.refused.container);
    // the token from a file, as EKS Pod Identity mounts it
    const tokenFile = path.join(dir, 'pod-token');
    fs.writeFileSync(tokenFile, `${AUTH}\n`);
    await put({ AWS_CONTAINER_CREDENTIALS_FULL_URI: `${creds.url}/creds`, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: tokenFile }, 'chain1');
    const got = dataOf(ok((await run(env, req({ method: 'get_records', stream_name: 'chain1', limit: '10' }))).reply));
    assert.equal(got.Records.length, 2);
    assert.equal(Buffer.from(got.Records[0].Data, 'base64').toString(), 'hello chain');
  });

  it('web identity (STS AssumeRoleWithWebIdentity at AWS_ENDPOINT_URL_STS)', async () => {
    const tokenFile = path.join(dir, 'web-identity-token');
    fs.writeFileSync(tokenFile, WEB_TOKEN);
    const env = {
      AWS_ROLE_ARN: ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile, AWS_ROLE_SESSION_NAME: 'kk-e2e',
      AWS_ENDPOINT_URL_STS: `${creds.url}/sts`,
      // also set, but web identity comes first
      AWS_CONTAINER_CREDENTIALS_FULL_URI: `${creds.url}/creds`, AWS_CONTAINER_AUTHORIZATION_TOKEN: AUTH,
    };
    const s0 = await creds.stats();
    const c = await run(env, req({ method: 'create_stream', stream_name: 'chain2', shard_count: '1' }));
    assert.equal(c.code, 0, c.stderr);
    ok(c.reply);
    const p = await put(env, 'chain2');
    assert.match(p.stderr, /aws credentials: from web identity, expire at /);
    const s1 = await creds.stats();
    assert.equal(s1.sts - s0.sts, 2);
    assert.equal(s1.container, s0.container);
    assert.equal(s1.lastSts.method, 'POST');
    assert.deepEqual(s1.lastSts.params, {
      Action: 'AssumeRoleWithWebIdentity', Version: '2011-06-15', RoleArn: ROLE_ARN,
      RoleSessionName: 'kk-e2e', WebIdentityToken: '(set)',
    });
  });

  it('EC2 IMDSv2 at AWS_EC2_METADATA_SERVICE_ENDPOINT', async () => {
    const env = { AWS_EC2_METADATA_DISABLED: '', AWS_EC2_METADATA_SERVICE_ENDPOINT: creds.url };
    const s0 = await creds.stats();
    const p = await put(env, 'chain1');
    assert.match(p.stderr, /aws credentials: from IMDS, expire at /);
    const s1 = await creds.stats();
    assert.equal(s1.imdsToken - s0.imdsToken, 1);
    assert.equal(s1.imdsRole - s0.imdsRole, 1);
    assert.equal(s1.imdsCreds - s0.imdsCreds, 1);
    assert.equal(s1.refused.imds, s0.refused.imds, 'every IMDS request carried the session token');
  });

  it('shared credentials file and AWS_PROFILE', async () => {
    const file = path.join(dir, 'credentials');
    fs.writeFileSync(file, [
      '[default]', 'aws_access_key_id = AKIAWRONGDEFAULT', 'aws_secret_access_key = wrong', '',
      '# the one the gate knows', '[kk]', `aws_access_key_id = ${AK}`, `aws_secret_access_key = ${SK}`,
      `aws_session_token = ${TOKEN}`, ''].join('\n'));
    const p = await put({ AWS_SHARED_CREDENTIALS_FILE: file, AWS_PROFILE: 'kk' }, 'chain1');
    assert.match(p.stderr, /aws credentials: from profile "kk", no expiry/);
    // the environment comes before the profile; a refused key is fetched
    // again once (the same here), so the gate sees two requests
    const g0 = await gate.stats();
    const r = await run({ AWS_SHARED_CREDENTIALS_FILE: file, AWS_PROFILE: 'kk', AWS_ACCESS_KEY_ID: 'AKIAENVWRONG', AWS_SECRET_ACCESS_KEY: 'x' },
      req({ method: 'list_streams' }));
    assert.equal(r.code, 0, r.stderr);
    fails(r.reply, /^UnrecognizedClientException: /);
    assert.match(r.stderr, /aws credentials: from environment/);
    const g1 = await gate.stats();
    assert.equal(g1.sigFailures - g0.sigFailures, 2);
    refusedOnPurpose += 2;
  });

  it('nothing anywhere: the binding does not start, and says what it tried', async () => {
    const r = await run({}, req({ method: 'list_streams' }));
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.reply, null);
    assert.match(r.stderr, /no AWS credentials: tried config, environment, profile "default" \(no file\), web identity \(AWS_ROLE_ARN not set\), container endpoint \(not set\), IMDS \(disabled by AWS_EC2_METADATA_DISABLED\)/);
  });

  it('a provider that refuses: the call fails with CredentialsError naming it', async () => {
    const r = await run({ AWS_CONTAINER_CREDENTIALS_FULL_URI: `${creds.url}/creds`, AWS_CONTAINER_AUTHORIZATION_TOKEN: 'wrong' },
      req({ method: 'list_streams' }));
    assert.equal(r.code, 0, r.stderr);
    fails(r.reply, new RegExp('^CredentialsError: no AWS credentials: tried config, environment, profile "default" \\(no file\\), '
      + `web identity \\(AWS_ROLE_ARN not set\\), container endpoint \\(${creds.url}/creds: HTTP 403: .*AccessDenied.*\\), `
      + 'IMDS \\(disabled by AWS_EC2_METADATA_DISABLED\\)$'));
  });

  it('a FULL_URI off loopback is refused without a request', async () => {
    const s0 = await creds.stats();
    const r = await run({ AWS_CONTAINER_CREDENTIALS_FULL_URI: 'http://192.0.2.10/creds', AWS_CONTAINER_AUTHORIZATION_TOKEN: AUTH },
      req({ method: 'list_streams' }));
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /container endpoint \(AWS_CONTAINER_CREDENTIALS_FULL_URI host 192\.0\.2\.10 is not allowed: use https, a loopback address, 169\.254\.170\.2 or 169\.254\.170\.23\)/);
    const s1 = await creds.stats();
    assert.equal(s1.container, s0.container);
  });
});
