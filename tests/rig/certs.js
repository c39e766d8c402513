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

const openssl = (args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });

// A throwaway CA that issues server and client certificates (mutual TLS):
//   const ca = makeTestCA();  ca.certPath / ca.cert
//   const srv = ca.issue('server');              // SAN IP:127.0.0.1, DNS:localhost; serverAuth
//   const cli = ca.issue('client', {client: true}); // clientAuth
// issue() -> {keyPath, certPath, key, cert}; everything lives in ca.dir.
function makeTestCA({ dir, days = 2, cn = 'kubemq-kinesis test CA' } = {}) {
  const d = dir || fs.mkdtempSync(path.join(os.tmpdir(), 'kk-ca-'));
  const keyPath = path.join(d, 'ca-key.pem');
  const certPath = path.join(d, 'ca.pem');
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-keyout', keyPath, '-out', certPath,
    '-days', String(days), '-subj', `/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  let serial = 1;
  const issue = (name, { client = false, cn: leafCn = name } = {}) => {
    const k = path.join(d, `${name}-key.pem`);
    const c = path.join(d, `${name}.pem`);
    const csr = path.join(d, `${name}.csr`);
    const ext = path.join(d, `${name}.ext`);
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-keyout', k, '-out', csr, '-subj', `/CN=${leafCn}`]);
    fs.writeFileSync(ext, client
      ? 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n'
      : 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n');
    openssl(['x509', '-req', '-in', csr, '-CA', certPath, '-CAkey', keyPath, '-set_serial', String(serial++),
      '-out', c, '-days', String(days), '-sha256', '-extfile', ext]);
    return { keyPath: k, certPath: c, key: fs.readFileSync(k, 'utf8'), cert: fs.readFileSync(c, 'utf8') };
  };
  return { dir: d, keyPath, certPath, cert: fs.readFileSync(certPath, 'utf8'), issue };
}

module.exports = { makeTestCert, makeTestCA };
