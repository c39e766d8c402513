#!/usr/bin/env node
'use strict';
// kubemq-query.js - send one KubeMQ query (or command) with kubemq-js and print the reply.
//
//   node tests/rig/kubemq-query.js --address 127.0.0.1:50000 --channel query.aws.kinesis \
//     '{"metadata":{"method":"list_streams"}}'
//   node tests/rig/kubemq-query.js --address A --channel C --command '<json body>'
//
// Options: --timeout MS (10000), --auth-token T, --client-id ID, --raw (print the reply
// body as it is, no pretty-printing). The body argument may be "-" to read stdin.
// Query: the reply body (the reply envelope) on stdout; a KubeMQ-level error on stderr.
// Command: {"executed":..,"error":".."} on stdout.
// Exit status: 0 executed, 1 not executed or failed, 2 usage.
const { sendQuery, sendCommand } = require('./kubemq');

function usage(msg) {
  if (msg) process.stderr.write(`kubemq-query: ${msg}\n`);
  process.stderr.write('usage: kubemq-query.js --address HOST:PORT --channel CH [--command] [--timeout MS]\n' +
    '                        [--auth-token T] [--client-id ID] [--raw] BODY|-\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { timeoutMs: 10000, command: false, raw: false };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--address') o.address = val();
    else if (a === '--channel') o.channel = val();
    else if (a === '--command') o.command = true;
    else if (a === '--timeout') o.timeoutMs = Number(val());
    else if (a === '--auth-token') o.authToken = val();
    else if (a === '--client-id') o.clientId = val();
    else if (a === '--raw') o.raw = true;
    else if (a === '--help' || a === '-h') usage();
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else positional.push(a);
  }
  if (!o.address || !o.channel) usage('--address and --channel are required');
  if (positional.length !== 1) usage('exactly one BODY argument is required');
  if (!Number.isInteger(o.timeoutMs) || o.timeoutMs <= 0) usage('--timeout must be a positive integer');
  o.body = positional[0];
  return o;
}

async function readStdin() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return Buffer.concat(chunks);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const body = o.body === '-' ? await readStdin() : Buffer.from(o.body, 'utf8');
  const opts = { timeoutMs: o.timeoutMs, authToken: o.authToken, clientId: o.clientId };
  if (o.command) {
    const r = await sendCommand(o.address, o.channel, body, opts);
    process.stdout.write(JSON.stringify({ executed: r.executed, error: r.error }) + '\n');
    return r.executed ? 0 : 1;
  }
  const r = await sendQuery(o.address, o.channel, body, opts);
  if (o.raw || !r.reply) process.stdout.write(r.body.toString('utf8') + '\n');
  else process.stdout.write(JSON.stringify(r.reply, null, 2) + '\n');
  if (r.error) process.stderr.write(`kubemq-query: error: ${r.error}\n`);
  return r.executed ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`kubemq-query: ${e.details || e.message}\n`);
    process.exit(1);
  },
);
