'use strict';
// kubemq.js - send KubeMQ queries and commands with the real client, kubemq-js 1.2.3,
// the way services talk to kubemq-kinesis.
//
//   const { openClient, sendQuery, sendCommand } = require('../rig/kubemq');
//   const r = await sendQuery('127.0.0.1:50000', 'query.aws.kinesis',
//     { metadata: { method: 'list_streams' } });
//   r.executed, r.error, r.reply (the reply envelope, parsed), r.body (Buffer)
//
// kubemq-js quirks handled here: the body must be bytes (a Buffer is fine), tags must
// not be set, and a clientId must be given.
const { QueriesClient, CommandsClient } = require('kubemq-js');

let seq = 0;
const nextId = (prefix) => `${prefix}-${process.pid}-${Date.now().toString(36)}-${++seq}`;

// An envelope object -> its JSON; a string or Buffer goes as it is.
function toBytes(body) {
  if (Buffer.isBuffer(body)) return body;
  if (body instanceof Uint8Array) return Buffer.from(body);
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  return Buffer.from(JSON.stringify(body), 'utf8');
}

function parseReply(bytes) {
  const text = Buffer.from(bytes || []).toString('utf8');
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

// One connection for many requests. opts: clientId, authToken.
function openClient(address, opts = {}) {
  const base = { address, clientId: opts.clientId || nextId('kk-test') };
  if (opts.authToken) base.authToken = opts.authToken;
  let queries = null;
  let commands = null;
  const q = () => (queries ||= new QueriesClient(base));
  const c = () => (commands ||= new CommandsClient(base));
  return {
    // -> {executed, error, body: Buffer, reply: parsed JSON or null, id, clientId, metadata}
    async query(channel, body, { timeoutMs = 10000, metadata = '' } = {}) {
      const r = await q().send({ channel, body: toBytes(body), metadata, timeout: timeoutMs, id: nextId('q') });
      const out = Buffer.from(r.body || []);
      return { executed: r.executed, error: r.error, body: out, reply: parseReply(out), id: r.id, clientId: r.clientId, metadata: r.metadata };
    },
    // -> {executed, error, id, clientId}
    async command(channel, body, { timeoutMs = 10000, metadata = '' } = {}) {
      const r = await c().send({ channel, body: toBytes(body), metadata, timeout: timeoutMs, id: nextId('c') });
      return { executed: r.executed, error: r.error, id: r.id, clientId: r.clientId };
    },
    close() {
      if (queries) queries.close();
      if (commands) commands.close();
      queries = null;
      commands = null;
    },
  };
}

// One query on its own connection. opts: timeoutMs, authToken, clientId, metadata.
async function sendQuery(address, channel, body, opts = {}) {
  const cl = openClient(address, opts);
  try {
    return await cl.query(channel, body, opts);
  } finally {
    cl.close();
  }
}

async function sendCommand(address, channel, body, opts = {}) {
  const cl = openClient(address, opts);
  try {
    return await cl.command(channel, body, opts);
  } finally {
    cl.close();
  }
}

module.exports = { openClient, sendQuery, sendCommand, toBytes, parseReply };
