// broker-common.js - error texts, validation rules and small helpers of the stand-in KubeMQ broker.
//
// Texts and check order follow kubemq-community v2.4.0 (pkg/entities errors and
// pkg/client validation); see tests/rig/README.md.
'use strict';

const crypto = require('node:crypto');

const ERR = {
  101: 'Error 101: invalid clientID value, cannot be empty',
  102: 'Error 102: invalid channel value, cannot be empty',
  107: 'Error 107: invalid channel value, no wildcards are allowed',
  108: 'Error 108: invalid channel value, no white spaces are allowed',
  109: 'Error 109: invalid set timeout value, cannot be 0 or negative',
  110: 'Error 110: invalid message, cannot be empty',
  111: 'Error 111: invalid subscription type, cannot be undefined or 0',
  112: 'Error 112: invalid subscription type start at sequence value, cannot by 0 or negative',
  113: 'Error 113: invalid subscription type start at time value, cannot by 0 or negative',
  114: 'Error 114: invalid subscription type start at time delta value, cannot by 0 or negative',
  115: 'Error 115: invalid request, cannot be empty',
  116: 'Error 116: invalid cache ttl value, cannot be 0 or negative',
  117: 'Error 117: invalid request id, cannot be empty',
  118: 'Error 118: event store parameters were set but subscribe type is not event store',
  119: 'Error 119: invalid channel value, cannot end with `.`',
  120: 'Error 120: invalid queue name value, cannot be empty, contains wildcards ,white spaces and end with dot',
  122: 'Error 122: max messages should be between 1 and max message setting in kubemq config  ',
  124: 'Error 124: no active message to ack',
  125: 'Error 125: ack sequence cannot be 0 or negative',
  126: 'Error 126: no active message to send',
  127: 'Error 127: invalid visibility time, cannot be negative or exceed setting in kubemq config',
  128: 'Error 128: subscription to queue is already active',
  129: 'Error 129: current visibility timer expired',
  131: 'Error 131: invalid queue message',
  132: 'Error 132: invalid stream queue messages request type',
  133: 'Error 133: invalid expiration seconds, exceed max expiration seconds setting in kubemq config',
  134: 'Error 134: invalid max received count, cannot be negative or exceed max receive count setting in kubemq config',
  135: 'Error 135: invalid delay seconds, exceed max delay seconds setting in kubemq config',
  136: 'Error 136: invalid wait timeout, value cannot be negative or exceed max wait timeout seconds setting in kubemq config',
  137: 'Error 137: no active message to reject',
  138: 'Error 138: no new message in queue, wait time expired',
  206: 'Error 206: invalid request type',
  207: 'Error 207: invalid subscribe type',
  301: 'Error 301: timeout for request message',
  421: 'Error 421: authentication verification failed, missing or invalid authorization token',
};

// Queue limits of the community server's default config.
const LIMITS = {
  maxNumberOfMessages: 1024,
  maxWaitTimeoutSeconds: 3600,
  maxExpirationSeconds: 43200,
  maxDelaySeconds: 43200,
  maxVisibilitySeconds: 43200,
  maxReceiveCount: 1024,
  defaultVisibilitySeconds: 60,
  defaultWaitTimeoutSeconds: 1,
};

const SUB = { Events: 1, EventsStore: 2, Commands: 3, Queries: 4 };
const START = { NewOnly: 1, FromFirst: 2, FromLast: 3, AtSequence: 4, AtTime: 5, AtTimeDelta: 6 };
const REQ = { Command: 1, Query: 2 };

const hasWildcard = (s) => s.includes('*') || s.includes('>');
const isEmptyMsg = (m) => !m.Metadata && !(m.Body && m.Body.length);

// Shared channel checks: 102 -> 119 -> 108 (-> 107 unless wildcards are allowed).
function channelError(ch, wildcardsAllowed) {
  if (!ch) return ERR[102];
  if (ch.endsWith('.')) return ERR[119];
  if (ch.includes(' ')) return ERR[108];
  if (!wildcardsAllowed && hasWildcard(ch)) return ERR[107];
  return null;
}

function queueNameError(ch) {
  if (!ch || ch.endsWith('.') || ch.includes(' ') || hasWildcard(ch)) return ERR[120];
  return null;
}

function validateEvent(ev) {
  if (!ev.ClientID) return ERR[101];
  return channelError(ev.Channel, false) || (isEmptyMsg(ev) ? ERR[110] : null);
}

function validateRequest(req) {
  if (!req.ClientID) return ERR[101];
  const e = channelError(req.Channel, false);
  if (e) return e;
  if (!(req.Timeout > 0)) return ERR[109];
  if (isEmptyMsg(req)) return ERR[115];
  if (req.CacheKey && !(req.CacheTTL > 0)) return ERR[116];
  return null;
}

function validateResponse(res) {
  if (!res.ClientID) return ERR[101];
  return channelError(res.ReplyChannel, false) || (res.RequestID ? null : ERR[117]);
}

function validateSubscribeRequests(sub) {
  if (!sub.ClientID) return ERR[101];
  return channelError(sub.Channel, true);
}

function validateSubscribeEvents(sub) {
  const store = sub.SubscribeTypeData === SUB.EventsStore;
  if (!sub.ClientID) return ERR[101];
  const e = channelError(sub.Channel, true);
  if (e) return e;
  const st = sub.EventsStoreTypeData;
  if (!store) return st ? ERR[118] : null;
  if (hasWildcard(sub.Channel)) return ERR[107];
  if (!st) return ERR[111];
  const v = Number(sub.EventsStoreTypeValue);
  if (st === START.AtSequence && !(v > 0)) return ERR[112];
  if (st === START.AtTime && !(v > 0)) return ERR[113];
  if (st === START.AtTimeDelta && !(v > 0)) return ERR[114];
  return null;
}

function validateQueueMessage(msg) {
  if (!msg.ClientID) return ERR[101];
  return queueNameError(msg.Channel) || (isEmptyMsg(msg) ? ERR[110] : null);
}

// Mutates the policy like the server does (MaxReceiveCount 0 -> the maximum).
function enforcePolicy(p) {
  if (p.ExpirationSeconds < 0 || p.ExpirationSeconds > LIMITS.maxExpirationSeconds) return ERR[133];
  if (p.MaxReceiveCount < 0 || p.MaxReceiveCount > LIMITS.maxReceiveCount) return ERR[134];
  if (p.MaxReceiveCount === 0) p.MaxReceiveCount = LIMITS.maxReceiveCount;
  if (p.DelaySeconds < 0 || p.DelaySeconds > LIMITS.maxDelaySeconds) return ERR[135];
  if (p.MaxReceiveQueue) return queueNameError(p.MaxReceiveQueue);
  return null;
}

// NATS subject match: tokens split on '.', '*' one token, '>' the rest.
function subjectMatches(pattern, subject) {
  if (pattern === subject) return true;
  if (!hasWildcard(pattern)) return false;
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
// A NUID-like 22-character id.
function nuid() {
  const bytes = crypto.randomBytes(22);
  let s = '';
  for (const b of bytes) s += B62[b % 62];
  return s;
}

// Wall-clock time in ns as a BigInt, strictly increasing between calls.
let lastNs = 0n;
const hrBase = process.hrtime.bigint();
const wallBase = BigInt(Date.now()) * 1000000n;
function nowNs() {
  let t = wallBase + (process.hrtime.bigint() - hrBase);
  if (t <= lastNs) t = lastNs + 1n;
  lastNs = t;
  return t;
}

module.exports = {
  ERR,
  LIMITS,
  SUB,
  START,
  REQ,
  channelError,
  queueNameError,
  validateEvent,
  validateRequest,
  validateResponse,
  validateSubscribeRequests,
  validateSubscribeEvents,
  validateQueueMessage,
  enforcePolicy,
  subjectMatches,
  nuid,
  nowNs,
};
