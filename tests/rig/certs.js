'use strict';
// Throwaway TLS material for tests: a self-signed certificate for 127.0.0.1
// (SAN IP:127.0.0.1 and DNS:localhost), made with the openssl CLI.
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

// Returns {dir, keyPath, certPath, key (PEM), cert (PEM)}; the cert is its own CA.
function makeTestCert({ dir, days = 2, cn = '127.0.0.1' } = {}) {
  const d = dir || fs.mkdtempSync(path.join(os.tmpdir(), 'kk-cert-'));
  const keyPath = path.join(d, 'key.pem');
  const certPath = path.join(d, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256',
    '-keyout', keyPath, '-out', certPath, '-days', String(days), '-subj', `/CN=${cn}`,
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-addext', 'basicConstraints=critical,CA:TRUE'], { stdio: ['ignore', 'ignore', 'pipe'] });
  return { dir: d, keyPath, certPath, key: fs.readFileSync(keyPath, 'utf8'), cert: fs.readFileSync(certPath, 'utf8') };
}

module.exports = { makeTestCert };
