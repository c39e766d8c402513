// broker-pubsub.js - routing of the stand-in broker: events, events_store, commands and queries.
//
// Subscribers are plain objects {kind, channel, group, clientId, outbox}; this file
// knows nothing about gRPC: a subscription writes to a sink {write(msg) -> bool}
// through an Outbox (broker-flow.js: the server's slow-consumer drop). Groups follow
// NATS queue-group rules: every distinct non-empty group on a matching subscription
// gets one copy (round robin among its live members), every ungrouped subscriber
// gets its own copy.
//
// events_store follows NATS Streaming as KubeMQ uses it: each subscription is a
// streaming client named by its ClientID (a second live one is refused with "stan:
// clientID already registered") with a durable subscription named "<channel>-<group>".
// Without a group the durable belongs to (ClientID, Channel): subscribing again with
// that ClientID resumes after the last message handed out and ignores the start
// position. With a group the durable is the queue group's (Channel, Group), shared
// by its members whatever their ClientIDs.
'use strict';

const C = require('./broker-common');
const { Outbox } = require('./broker-flow');

const KINDS = ['events', 'events_store', 'commands', 'queries'];
const CLIENT_ID_REGISTERED = 'stan: clientID already registered';
// The server's log lines (kubemq-community pkg/client), one per dropped message.
const DROP_TEXT = {
  events: 'events message dropped due to slow consumer',
  events_store: 'events store message dropped due to slow consumer',
  commands: 'command request dropped due to slow consumer',
  queries: 'query request dropped due to slow consumer',
};

class PubSub {
  // opts: {subBuffer (100), slowConsumerWaitMs (2000), log(line)}
  constructor(opts = {}) {
    this.subBuffer = opts.subBuffer === undefined ? 100 : opts.subBuffer;
    this.slowConsumerWaitMs = opts.slowConsumerWaitMs === undefined ? 2000 : opts.slowConsumerWaitMs;
    this.log = opts.log || (() => {});
    this.subs = new Set();
    this.nextSubId = 1;
    this.rr = new Map(); // round-robin counter per kind/channel/group
    this.inboxes = new Map(); // inbox -> pending request
    this.stores = new Map(); // channel -> {seq, items: [{seq, ts, ev}]}
    this.durables = new Map(); // durableKey() -> {clientId, channel, group, lastSeq, live}
    this.storeClients = new Map(); // ClientID -> its live events_store subscription
    this.resetStats();
  }

  resetStats() {
    this.counters = {
      requests: { commands: 0, queries: 0 },
      responses: 0, // SendResponse calls accepted
      responsesDelivered: 0, // first responses handed to a requester
      responsesLate: 0, // accepted but nobody waiting (late, duplicate, unknown inbox)
      timeouts: 0,
      events: 0,
      eventsStore: 0,
      delivered: { events: 0, events_store: 0, commands: 0, queries: 0 },
      dropped: { events: {}, events_store: {}, commands: {}, queries: {} }, // per channel
    };
  }

  // Clears stored events and durables (not live subscriptions).
  resetStore() {
    this.stores.clear();
    this.resetDurables();
  }

  // Forgets every durable position (live subscriptions go on; once ended, their
  // ClientIDs are new again).
  resetDurables() {
    this.durables.clear();
  }

  // Picks the receivers of one message published on `channel`.
  targets(kind, channel) {
    const out = [];
    const groups = new Map();
    for (const s of this.subs) {
      if (s.kind !== kind || s.closed) continue;
      const match = kind === 'events_store' ? s.channel === channel : C.subjectMatches(s.channel, channel);
      if (!match) continue;
      if (!s.group) out.push(s);
      else if (groups.has(s.group)) groups.get(s.group).push(s);
      else groups.set(s.group, [s]);
    }
    for (const [g, members] of groups) {
      const key = `${kind}\0${channel}\0${g}`;
      const i = this.rr.get(key) || 0;
      this.rr.set(key, i + 1);
      out.push(members[i % members.length]);
    }
    return out;
  }

  deliver(sub, msg) {
    if (sub.closed) return;
    this.counters.delivered[sub.kind]++;
    sub.outbox.push(msg);
  }

  dropped(sub, msg, reason) {
    const per = this.counters.dropped[sub.kind];
    per[sub.channel] = (per[sub.channel] || 0) + 1;
    const id = msg.EventID || msg.RequestID || '';
    const why = reason === 'pending-limit' ? ' (pending limit)' : '';
    this.log(`${DROP_TEXT[sub.kind]}${why}: channel ${sub.channel}, client_id ${sub.clientId}, id ${id}` +
      (msg.Sequence ? `, sequence ${msg.Sequence}` : ''));
  }

  // --- events -------------------------------------------------------------

  // Returns {result} or {error}.
  sendEvent(ev) {
    const err = C.validateEvent(ev);
    if (err) return { error: err };
    const id = ev.EventID || C.nuid();
    if (ev.Store) {
      this.counters.eventsStore++;
      this.storeEvent(ev, id);
    } else {
      this.counters.events++;
      const out = { EventID: id, Channel: ev.Channel, Metadata: ev.Metadata, Body: ev.Body, Timestamp: 0, Sequence: 0, Tags: ev.Tags || {} };
      for (const s of this.targets('events', ev.Channel)) this.deliver(s, out);
    }
    return { result: { EventID: id, Sent: true, Error: '' } };
  }

  storeEvent(ev, id) {
    let st = this.stores.get(ev.Channel);
    if (!st) this.stores.set(ev.Channel, (st = { seq: 0, items: [] }));
    const item = { seq: ++st.seq, ts: C.nowNs(), ev: { ...ev, EventID: id } };
    st.items.push(item);
    for (const s of this.targets('events_store', ev.Channel)) this.deliver(s, storedReceive(item));
  }

  // First sequence to replay for a new events_store subscription.
  startSeq(sub, st) {
    const last = st ? st.seq : 0;
    const items = st ? st.items : [];
    const v = sub.EventsStoreTypeValue === undefined ? 0 : Number(sub.EventsStoreTypeValue);
    switch (sub.EventsStoreTypeData) {
      case C.START.FromFirst:
        return 1;
      case C.START.FromLast:
        return last > 0 ? last : 1;
      case C.START.AtSequence:
        return v;
      case C.START.AtTime:
      case C.START.AtTimeDelta: {
        const since =
          sub.EventsStoreTypeData === C.START.AtTime
            ? BigInt(sub.EventsStoreTypeValue)
            : C.nowNs() - BigInt(sub.EventsStoreTypeValue) * 1000000000n;
        const it = items.find((x) => x.ts >= since);
        return it ? it.seq : last + 1;
      }
      default: // StartNewOnly
        return last + 1;
    }
  }

  // --- subscriptions ------------------------------------------------------

  // req: a validated Subscribe; sink: {write(msg) -> bool}. Returns {sub} (pass it to
  // unsubscribe(); call sub.drain() when the sink can take more) or {error}.
  // events_store replays stored events first, then goes on with new ones.
  subscribe(req, kind, sink) {
    const sub = {
      id: this.nextSubId++,
      kind,
      channel: req.Channel,
      group: req.Group || '',
      clientId: req.ClientID,
      closed: false,
      durable: null,
    };
    if (kind === 'events_store' && this.storeClients.has(sub.clientId)) return { error: CLIENT_ID_REGISTERED };
    sub.outbox = new Outbox({
      bufferSize: this.subBuffer,
      waitMs: this.slowConsumerWaitMs,
      sink,
      onHandOut: (m) => {
        if (sub.durable && m.Sequence > sub.durable.lastSeq) sub.durable.lastSeq = Number(m.Sequence);
      },
      onDrop: (m, reason) => this.dropped(sub, m, reason),
    });
    sub.drain = () => sub.outbox.drain();
    let replayFrom = 0;
    if (kind === 'events_store') {
      const st = this.stores.get(sub.channel);
      const key = durableKey(sub);
      let d = this.durables.get(key);
      if (d && d.live && sub.group) replayFrom = 0; // joins the running group, no replay
      else if (d) replayFrom = d.lastSeq + 1; // a known durable: the start position is ignored
      else {
        replayFrom = this.startSeq(req, st);
        d = { clientId: sub.group ? null : sub.clientId, channel: sub.channel, group: sub.group, lastSeq: replayFrom - 1, live: 0 };
        this.durables.set(key, d);
      }
      d.live++;
      sub.durable = d;
      this.storeClients.set(sub.clientId, sub);
      if (replayFrom > 0 && st) {
        for (const item of st.items) if (item.seq >= replayFrom) this.deliver(sub, storedReceive(item));
      }
    }
    this.subs.add(sub);
    return { sub };
  }

  unsubscribe(sub) {
    if (sub.closed) return;
    sub.closed = true;
    sub.outbox.close();
    this.subs.delete(sub);
    if (sub.durable) sub.durable.live--;
    if (this.storeClients.get(sub.clientId) === sub) this.storeClients.delete(sub.clientId);
  }

  // --- commands and queries -----------------------------------------------

  // Calls done(err, response) once: err = {code:'INTERNAL'|'UNAVAILABLE', details}.
  // Returns a cancel function (requester went away).
  sendRequest(req, done) {
    const kind = req.RequestTypeData === C.REQ.Command ? 'commands' : req.RequestTypeData === C.REQ.Query ? 'queries' : null;
    if (!kind) {
      done({ code: 'INTERNAL', details: C.ERR[206] });
      return () => {};
    }
    const err = C.validateRequest(req);
    if (err) {
      done({ code: 'INTERNAL', details: err });
      return () => {};
    }
    this.counters.requests[kind]++;
    const requestId = req.RequestID || C.nuid();
    const inbox = `_INBOX.${C.nuid()}`;
    const pending = {
      kind,
      finish: (e, res) => {
        if (!this.inboxes.has(inbox)) return;
        this.inboxes.delete(inbox);
        clearTimeout(pending.timer);
        done(e, res);
      },
    };
    pending.timer = setTimeout(() => {
      this.counters.timeouts++;
      pending.finish({ code: 'INTERNAL', details: C.ERR[301] });
    }, req.Timeout);
    this.inboxes.set(inbox, pending);
    const delivered = { ...req, RequestID: requestId, ReplyChannel: inbox };
    for (const s of this.targets(kind, req.Channel)) this.deliver(s, delivered);
    return () => {
      if (!this.inboxes.has(inbox)) return;
      this.inboxes.delete(inbox);
      clearTimeout(pending.timer);
    };
  }

  // Returns an error text or null (null also when nobody waits any more).
  sendResponse(res) {
    const err = C.validateResponse(res);
    if (err) return err;
    this.counters.responses++;
    const pending = this.inboxes.get(res.ReplyChannel);
    if (!pending) {
      this.counters.responsesLate++;
      return null;
    }
    const out = { ...res, ReplyChannel: '' };
    if (pending.kind === 'commands') {
      out.Body = Buffer.alloc(0);
      out.Metadata = '';
      out.CacheHit = false;
    }
    this.counters.responsesDelivered++;
    pending.finish(null, out);
    return null;
  }

  // Server going away: every waiting requester gets `status`.
  failPending(status) {
    for (const p of [...this.inboxes.values()]) p.finish(status);
  }

  stats() {
    const subscribers = {};
    for (const k of KINDS) subscribers[k] = {};
    for (const s of this.subs) {
      const ch = (subscribers[s.kind][s.channel] ||= {});
      ch[s.group] = (ch[s.group] || 0) + 1;
    }
    const stores = {};
    for (const [ch, st] of this.stores) stores[ch] = { lastSequence: st.seq };
    const subscriptions = [...this.subs].map((s) => ({
      id: s.id,
      kind: s.kind,
      channel: s.channel,
      group: s.group,
      clientId: s.clientId,
      ...s.outbox.stats(),
    }));
    const durables = [...this.durables.values()].map((d) => ({
      clientId: d.clientId,
      channel: d.channel,
      group: d.group,
      lastSequence: d.lastSeq,
      live: d.live,
    }));
    return {
      ...structuredClone(this.counters),
      pendingRequests: this.inboxes.size,
      subscribers,
      subscriptions,
      stores,
      durables,
      settings: { subBuffer: this.subBuffer, slowConsumerWaitMs: this.slowConsumerWaitMs },
    };
  }
}

// A durable without a group belongs to its ClientID; a group's belongs to the group.
function durableKey(sub) {
  return sub.group ? `g\0${sub.channel}\0${sub.group}` : `c\0${sub.clientId}\0${sub.channel}`;
}

function storedReceive(item) {
  const ev = item.ev;
  return {
    EventID: ev.EventID,
    Channel: ev.Channel,
    Metadata: ev.Metadata,
    Body: ev.Body,
    Timestamp: item.ts.toString(),
    Sequence: item.seq,
    Tags: ev.Tags || {},
  };
}

module.exports = { PubSub };
