// sigv4-verify.js - checks the signatures our C signer makes with AWS's own
// JS signer, through the rig's verifier (sigv4.js verifyRequest: copy only
// the signed headers, date from X-Amz-Date, region and service from the
// scope, the client's SignedHeaders list, no checksum header).
//
// As a module: verify({method, path, query, headers, body}, secretFor)
//   headers: [[name, value], ...] as sent; body: Buffer or string;
//   secretFor(accessKeyId) -> secret. The clock is taken from the request
//   (signatures made for past dates verify too). Resolves {ok, reason}.
// As a program: node sigv4-verify.js CASES.json
//   CASES.json: [{name, access_key, secret, method, path, query, headers,
//   body, expect}] with expect "match" or "mismatch". Prints one line per
//   case and exits 0 only when every case came out as expected.
'use strict';

const fs = require('node:fs');
const { verifyRequest, parseAmzDate } = require('./sigv4');

async function verify(req, secretFor) {
  const headers = {};
  for (const [name, value] of req.headers || []) {
    const k = name.toLowerCase();
    headers[k] = k in headers ? [].concat(headers[k], value) : value;
  }
  const token = headers['x-amz-security-token'];
  const date = parseAmzDate(String(headers['x-amz-date'] || '').trim()) || new Date();
  const path = (req.path || '/') + (req.query ? `?${req.query}` : '');
  const r = await verifyRequest({ method: req.method, path, headers, body: req.body },
    (ak) => {
      const secretKey = secretFor(ak);
      return secretKey === undefined ? null : { secretKey, sessionToken: token };
    }, date);
  return { ok: r.ok, reason: r.ok ? 'signature matches' : `${r.type}: ${r.message}` };
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

module.exports = { verify };

if (require.main === module) {
  main().catch((e) => { console.error(e); process.exit(2); });
}
