// broker-pubsub.js - routing of the stand-in broker: events, events_store, commands and queries.
//
// Subscribers are plain objects {kind, channel, group, clientId, send(msg)}; this
// file knows nothing about gRPC. Groups follow NATS queue-group rules: every
// distinct non-empty group on a matching subscription gets one copy (round robin
// among its live members), every ungrouped subscriber gets its own copy.
'use strict';

const C = require('./broker-common');

const KINDS = ['events', 'events_store', 'commands', 'queries'];

class PubSub {
  constructor() {
    this.subs = new Set();
    this.rr = new Map(); // round-robin counter per kind/channel/group
    this.inboxes = new Map(); // inbox -> pending request
    this.stores = new Map(); // channel -> {seq, items: [{seq, ts, ev}]}
    this.cursors = new Map(); // events_store durable group "<channel>\0<group>" -> last seq
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
    };
  }

  // Clears stored events and durable cursors (not live subscriptions).
  resetStore() {
    this.stores.clear();
    this.cursors.clear();
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
    sub.send(msg);
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
    for (const s of this.targets('events_store', ev.Channel)) {
      if (s.group) this.cursors.set(`${ev.Channel}\0${s.group}`, item.seq);
      this.deliver(s, storedReceive(item));
    }
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

  // req: a validated Subscribe. Replays stored events first (events_store), then
  // registers; returns the handle to pass to unsubscribe().
  subscribe(req, kind, send) {
    const sub = {
      kind,
      channel: req.Channel,
      group: req.Group || '',
      clientId: req.ClientID,
      send,
      closed: false,
    };
    let replayFrom = 0;
    if (kind === 'events_store') {
      const key = `${sub.channel}\0${sub.group}`;
      const live = sub.group && [...this.subs].some((s) => s.kind === kind && s.channel === sub.channel && s.group === sub.group);
      const st = this.stores.get(sub.channel);
      if (live) replayFrom = 0; // joins the running group, no replay
      else if (sub.group && this.cursors.has(key)) replayFrom = this.cursors.get(key) + 1;
      else replayFrom = this.startSeq(req, st);
      if (replayFrom > 0 && st) {
        for (const item of st.items) {
          if (item.seq < replayFrom) continue;
          if (sub.group) this.cursors.set(key, item.seq);
          this.deliver(sub, storedReceive(item));
        }
      }
    }
    this.subs.add(sub);
    return sub;
  }

  unsubscribe(sub) {
    sub.closed = true;
    this.subs.delete(sub);
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
    return { ...structuredClone(this.counters), pendingRequests: this.inboxes.size, subscribers, stores };
  }
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
