// broker-queues.js - queues of the stand-in broker: send, pull/peek, ack-all and the
// single-message transaction stream (StreamQueueMessage), with receive counts,
// expiration, delay and dead-letter queues. No gRPC in here.
'use strict';

const C = require('./broker-common');

const { ERR, LIMITS } = C;

class Queue {
  constructor(name) {
    this.name = name;
    this.nextSeq = 1;
    this.ready = []; // stored QueueMessages in sequence order
    this.waiters = new Set(); // functions called when something may have become available
    this.counters = { sent: 0, delivered: 0, acked: 0, rejected: 0, expired: 0, deadLettered: 0 };
    this.inflight = 0;
    this.timers = new Set();
  }

  notify() {
    for (const w of [...this.waiters]) w();
  }

  // Index of the first message due for delivery, or -1.
  firstDue(now) {
    return this.ready.findIndex((m) => !(BigInt(m.Attributes.DelayedTo) > now));
  }
}

function copyMessage(m) {
  return {
    ...m,
    Tags: { ...(m.Tags || {}) },
    Attributes: m.Attributes ? { ...m.Attributes } : null,
    Policy: m.Policy ? { ...m.Policy } : null,
  };
}

class Queues {
  constructor() {
    this.queues = new Map();
    this.transactions = new Set();
  }

  queue(name) {
    let q = this.queues.get(name);
    if (!q) this.queues.set(name, (q = new Queue(name)));
    return q;
  }

  reset() {
    for (const q of this.queues.values()) for (const t of q.timers) clearTimeout(t);
    this.queues.clear();
  }

  // Appends a message (attributes already prepared) and wakes receivers.
  append(msg) {
    const q = this.queue(msg.Channel);
    msg.Attributes.Sequence = q.nextSeq++;
    msg.Attributes.Timestamp = C.nowNs().toString();
    q.ready.push(msg);
    q.counters.sent++;
    const delayMs = Number((BigInt(msg.Attributes.DelayedTo) - C.nowNs()) / 1000000n);
    if (delayMs > 0) {
      const t = setTimeout(() => {
        q.timers.delete(t);
        q.notify();
      }, delayMs + 1);
      q.timers.add(t);
    }
    q.notify();
  }

  // SendQueueMessage: returns a SendQueueMessageResult.
  send(input) {
    const msg = copyMessage(input);
    if (!msg.MessageID) msg.MessageID = C.nuid();
    const now = C.nowNs();
    const p = (msg.Policy ||= { ExpirationSeconds: 0, DelaySeconds: 0, MaxReceiveCount: 0, MaxReceiveQueue: '' });
    msg.Attributes = { Timestamp: '0', Sequence: 0, MD5OfBody: '', ReceiveCount: 0, ReRouted: false, ReRoutedFromQueue: '', ExpirationAt: '0', DelayedTo: '0' };
    if (p.ExpirationSeconds > 0) msg.Attributes.ExpirationAt = (now + BigInt(p.ExpirationSeconds + p.DelaySeconds) * 1000000000n).toString();
    if (p.DelaySeconds > 0) msg.Attributes.DelayedTo = (now + BigInt(p.DelaySeconds) * 1000000000n).toString();
    const result = { MessageID: msg.MessageID, SentAt: '0', ExpirationAt: '0', DelayedTo: '0', IsError: false, Error: '' };
    const err = C.validateQueueMessage(msg) || C.enforcePolicy(p);
    if (err) return { ...result, IsError: true, Error: err };
    this.append(msg);
    return { ...result, SentAt: C.nowNs().toString(), ExpirationAt: msg.Attributes.ExpirationAt, DelayedTo: msg.Attributes.DelayedTo };
  }

  // SendQueueMessagesBatch; like the server, HaveErrors reflects dispatch failures
  // only (there are none here), not per-message validation errors.
  sendBatch(req) {
    if (!req.Messages || req.Messages.length === 0) return { error: 'empty messages batch' };
    return { response: { BatchID: req.BatchID, Results: req.Messages.map((m) => this.send(m)), HaveErrors: false } };
  }

  // Counts a delivery; false when the message was dead-lettered or dropped
  // (MaxReceiveCount exceeded) or has expired.
  admit(q, msg) {
    msg.Attributes.ReceiveCount++;
    if (!this.passPolicy(msg)) return false;
    const exp = BigInt(msg.Attributes.ExpirationAt);
    if (exp > 0n && exp < C.nowNs()) {
      q.counters.expired++;
      return 'expired';
    }
    return true;
  }

  passPolicy(msg) {
    const p = msg.Policy;
    if (!p || p.MaxReceiveCount <= 0 || msg.Attributes.ReceiveCount <= p.MaxReceiveCount) return true;
    const q = this.queue(msg.Channel);
    q.counters.deadLettered++;
    if (!p.MaxReceiveQueue) return false;
    const dl = copyMessage(msg);
    dl.Channel = p.MaxReceiveQueue;
    dl.Attributes = { ...msg.Attributes, ReceiveCount: 0, ReRouted: true, ReRoutedFromQueue: msg.Channel };
    dl.Policy = { ExpirationSeconds: 0, DelaySeconds: 0, MaxReceiveCount: 0, MaxReceiveQueue: '' };
    this.append(dl);
    return false;
  }

  // Takes the next deliverable message from q, or null.
  take(q, stats) {
    for (;;) {
      const i = q.firstDue(C.nowNs());
      if (i < 0) return null;
      const [msg] = q.ready.splice(i, 1);
      const ok = this.admit(q, msg);
      if (ok === true) {
        q.counters.delivered++;
        return msg;
      }
      if (ok === 'expired' && stats) stats.expired++;
    }
  }

  // Back to the queue after reject / visibility expiry / cancel (new sequence).
  requeue(msg) {
    const copy = copyMessage(msg);
    msg.Attributes.ReceiveCount++;
    if (!this.passPolicy(msg)) return;
    this.append(copy);
  }

  // ReceiveQueueMessages. done(response) once; returns a cancel function.
  receive(req, done) {
    const requestId = req.RequestID || C.nuid();
    const resp = { RequestID: requestId, Messages: [], MessagesReceived: 0, MessagesExpired: 0, IsPeak: req.IsPeak, IsError: false, Error: '' };
    let err = null;
    if (!req.ClientID) err = ERR[101];
    else err = C.queueNameError(req.Channel);
    if (!err && (req.MaxNumberOfMessages < 1 || req.MaxNumberOfMessages > LIMITS.maxNumberOfMessages)) err = ERR[122];
    if (!err && (req.WaitTimeSeconds < 0 || req.WaitTimeSeconds > LIMITS.maxWaitTimeoutSeconds)) err = ERR[136];
    if (err) {
      done({ ...resp, IsError: true, Error: err });
      return () => {};
    }
    const q = this.queue(req.Channel);
    const max = req.MaxNumberOfMessages;
    const stats = { expired: 0 };
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      q.waiters.delete(fill);
      resp.MessagesReceived = resp.Messages.length;
      resp.MessagesExpired = stats.expired;
      done(resp);
    };
    const fill = () => {
      if (req.IsPeak) {
        // Peek shows the due messages without consuming them.
        const now = C.nowNs();
        resp.Messages = q.ready
          .filter((m) => !(BigInt(m.Attributes.DelayedTo) > now))
          .slice(0, max)
          .map((m) => {
            const c = copyMessage(m);
            c.Attributes.ReceiveCount++;
            return c;
          });
      } else {
        while (resp.Messages.length < max) {
          const m = this.take(q, stats);
          if (!m) break;
          resp.Messages.push(m);
        }
      }
      if (resp.Messages.length >= max) finish();
    };
    const timer = setTimeout(finish, (req.WaitTimeSeconds || LIMITS.defaultWaitTimeoutSeconds) * 1000);
    q.waiters.add(fill);
    fill();
    return () => {
      // The requester went away: like the server, consumed messages are gone.
      finished = true;
      clearTimeout(timer);
      q.waiters.delete(fill);
    };
  }

  // AckAllQueueMessages: acks every due message at once (the server instead keeps
  // acking for WaitTimeSeconds).
  ackAll(req) {
    const resp = { RequestID: req.RequestID || C.nuid(), AffectedMessages: 0, IsError: false, Error: '' };
    let err = !req.ClientID ? ERR[101] : C.queueNameError(req.Channel);
    if (!err && (req.WaitTimeSeconds < 0 || req.WaitTimeSeconds > LIMITS.maxWaitTimeoutSeconds)) err = ERR[136];
    if (err) return { ...resp, IsError: true, Error: err };
    const q = this.queue(req.Channel);
    const now = C.nowNs();
    const keep = q.ready.filter((m) => BigInt(m.Attributes.DelayedTo) > now);
    resp.AffectedMessages = q.ready.length - keep.length;
    q.ready = keep;
    q.counters.acked += resp.AffectedMessages;
    return resp;
  }

  // StreamQueueMessage: one transaction per stream. io = {send(resp), end()}.
  transaction(io) {
    const t = new Transaction(this, io);
    this.transactions.add(t);
    return t;
  }

  stats() {
    const out = {};
    for (const [name, q] of this.queues) {
      out[name] = { waiting: q.ready.length, inflight: q.inflight, nextSequence: q.nextSeq, ...q.counters };
    }
    return out;
  }
}

// Server-side state of one StreamQueueMessage call (kubemq-community semantics:
// after ack / reject / resend / visibility expiry / wait expiry the server ends the stream).
class Transaction {
  constructor(queues, io) {
    this.queues = queues;
    this.io = io;
    this.active = false; // a ReceiveMessage was accepted
    this.current = null; // message in flight
    this.q = null;
    this.lastReq = null;
    this.waitTimer = null;
    this.visTimer = null;
    this.waiter = null;
    this.done = false;
  }

  reply(req, extra) {
    if (this.done) return;
    this.io.send({ RequestID: req.RequestID, StreamRequestTypeData: req.StreamRequestTypeData, Message: null, IsError: false, Error: '', ...extra });
  }

  fail(req, err) {
    this.reply(req, { IsError: true, Error: err });
  }

  finish() {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.waitTimer);
    clearTimeout(this.visTimer);
    if (this.waiter) this.q.waiters.delete(this.waiter);
    if (this.current) this.q.inflight--;
    this.queues.transactions.delete(this);
    this.io.end();
  }

  // The client went away: an unfinished message goes back to the queue.
  cancel() {
    if (this.done) return;
    const m = this.current;
    this.done = true;
    if (m) {
      this.q.inflight--;
      this.current = null;
      this.queues.requeue(m);
    }
    clearTimeout(this.waitTimer);
    clearTimeout(this.visTimer);
    if (this.waiter) this.q.waiters.delete(this.waiter);
    this.queues.transactions.delete(this);
  }

  startVisibility(req, seconds) {
    clearTimeout(this.visTimer);
    this.visTimer = setTimeout(() => {
      this.fail(this.lastReq || req, ERR[129]);
      if (this.current) {
        const m = this.current;
        this.current = null;
        this.q.inflight--;
        this.queues.requeue(m);
      }
      this.finish();
    }, seconds * 1000);
  }

  validate(r) {
    if (!r.ClientID) return ERR[101];
    const visErr = (v) => (v < 0 || v > LIMITS.maxVisibilitySeconds ? ERR[127] : null);
    switch (r.StreamRequestTypeData) {
      case 1:
        return (
          C.queueNameError(r.Channel) ||
          visErr(r.VisibilitySeconds) ||
          (r.WaitTimeSeconds < 0 || r.WaitTimeSeconds > LIMITS.maxWaitTimeoutSeconds ? ERR[136] : null)
        );
      case 2:
      case 3:
        return String(r.RefSequence) === '0' ? ERR[125] : null;
      case 5:
        return C.queueNameError(r.Channel);
      case 4:
        return visErr(r.VisibilitySeconds);
      case 6: {
        if (!r.ModifiedMessage) return ERR[131];
        const m = r.ModifiedMessage;
        m.Policy ||= { ExpirationSeconds: 0, DelaySeconds: 0, MaxReceiveCount: 0, MaxReceiveQueue: '' };
        return C.validateQueueMessage(m) || C.enforcePolicy({ ...m.Policy }) || visErr(r.VisibilitySeconds);
      }
      default:
        return ERR[132];
    }
  }

  onRequest(r) {
    if (this.done) return;
    if (!r.RequestID) r.RequestID = C.nuid();
    this.lastReq = r;
    const err = this.validate(r);
    if (err) return this.fail(r, err);
    const cur = this.current;
    const seqMatches = () => String(cur.Attributes.Sequence) === String(r.RefSequence);
    switch (r.StreamRequestTypeData) {
      case 1:
        return this.receive(r);
      case 2: // AckMessage
        if (!cur) return this.fail(r, ERR[124]);
        if (!seqMatches()) return this.fail(r, ERR[125]);
        this.q.counters.acked++;
        this.reply(r);
        return this.finish();
      case 3: // RejectMessage
        if (!cur) return this.fail(r, ERR[137]);
        if (!seqMatches()) return this.fail(r, ERR[125]);
        this.q.counters.rejected++;
        this.current = null;
        this.q.inflight--;
        this.queues.requeue(cur);
        this.reply(r);
        return this.finish();
      case 4: // ModifyVisibility
        this.startVisibility(r, r.VisibilitySeconds || LIMITS.defaultVisibilitySeconds);
        return this.reply(r);
      case 5: {
        // ResendMessage: the current message moves to another queue.
        if (!cur) return this.fail(r, ERR[126]);
        const m = copyMessage(cur);
        m.Channel = r.Channel;
        const res = this.queues.send(m);
        if (res.IsError) return this.fail(r, 'Error 130: error during send message to queue');
        this.q.counters.acked++;
        this.reply(r);
        return this.finish();
      }
      case 6: {
        // SendModifiedMessage: a new message replaces the current one.
        if (!cur) return this.fail(r, ERR[124]);
        const res = this.queues.send({ ...r.ModifiedMessage, Attributes: null });
        if (res.IsError) return this.fail(r, 'Error 130: error during send message to queue');
        this.q.counters.acked++;
        this.reply(r);
        return this.finish();
      }
    }
  }

  receive(r) {
    if (this.active) return this.fail(r, ERR[128]);
    this.active = true;
    this.q = this.queues.queue(r.Channel);
    const vis = r.VisibilitySeconds || LIMITS.defaultVisibilitySeconds;
    const wait = r.WaitTimeSeconds || LIMITS.defaultWaitTimeoutSeconds;
    this.waitTimer = setTimeout(() => {
      this.fail(r, ERR[138]);
      this.finish();
    }, wait * 1000);
    this.waiter = () => {
      if (this.done || this.current) return;
      const m = this.queues.take(this.q, null);
      if (!m) return;
      this.q.waiters.delete(this.waiter);
      this.waiter = null;
      clearTimeout(this.waitTimer);
      this.current = m;
      this.q.inflight++;
      this.startVisibility(r, vis);
      this.reply(r, { Message: m });
    };
    this.q.waiters.add(this.waiter);
    this.waiter();
  }
}

module.exports = { Queues };
