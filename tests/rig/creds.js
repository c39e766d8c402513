'use strict';
// Module API for aws-creds-server.js, the stand-in for the AWS credential
// endpoints (STS web identity, container endpoint, IMDSv2) with a Kinesis-like
// signature check on /kinesis. Runs as a child process on 127.0.0.1.
const { startScript, httpRequest } = require('./proc');

// opts: port (0), lifetime (s, 3600), accessKey/secretKey/sessionToken (hand
// out this one key every time, e.g. the gate's), roleArn, webIdentityToken,
// authToken (container Authorization), role (IMDS role name), env, timeoutMs.
// Resolves {url, port, pid, stop(), stderr(), exited, stats(), set(obj), revoke()}.
async function startCredsServer(opts = {}) {
  const args = ['--port', String(opts.port || 0), '--lifetime', String(opts.lifetime || 3600)];
  if (opts.accessKey) {
    args.push('--access-key', opts.accessKey, '--secret-key', opts.secretKey);
    if (opts.sessionToken) args.push('--session-token', opts.sessionToken);
  }
  if (opts.roleArn) args.push('--role-arn', opts.roleArn);
  if (opts.webIdentityToken) args.push('--web-identity-token', opts.webIdentityToken);
  if (opts.authToken) args.push('--auth-token', opts.authToken);
  if (opts.role) args.push('--role', opts.role);
  const p = await startScript('aws-creds-server.js', args, {
    env: opts.env, timeoutMs: opts.timeoutMs || 30000, name: 'aws-creds-server',
  });
  const { port, url } = p.ready;
  const call = async (method, what, body) => {
    const r = await httpRequest(`${url}/${what}`, {
      method, body: body === undefined ? undefined : JSON.stringify(body),
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
    });
    if (r.status !== 200) throw new Error(`aws-creds-server ${method} /${what}: ${r.status} ${r.text}`);
    return r.json;
  };
  return {
    url, port, pid: p.pid, stop: p.stop, stderr: p.stderr, exited: p.exited,
    stats: () => call('GET', '_stats'),
    set: (s) => call('POST', '_set', s),
    revoke: () => call('POST', '_revoke', {}),
  };
}

module.exports = { startCredsServer };
