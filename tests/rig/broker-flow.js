// broker-flow.js - the way to a subscriber, with the KubeMQ server's slow-consumer drop.
//
// The real server (kubemq-community v2.4.0) hands each subscription's messages
// from the broker callback to a channel of Grpc.SubBuffSize (100) messages, and a
// sender loop moves them into grpc-go's stream.Send. When the subscriber stops
// reading, grpc-go holds what its flow-control window and write quota allow, the
// sender blocks, the channel fills, and the callback then waits up to 2 s
// (writeDeadline) for room for each further message before dropping it and
// logging "... dropped due to slow consumer". Messages behind it wait their turn
// in the NATS pending queue (65,536 for events, commands and queries; an
// events_store subscription's are kept in the store).
//
// An Outbox per subscription does the same with grpc-js:
//   pending (waiting their turn) -> buffer (at most `bufferSize`) -> sink.write()
// A message leaves `pending` when it enters the buffer or is dropped: that is when
// the real server acknowledges it to NATS Streaming, so that is when an
// events_store durable position moves (onHandOut). Messages go on to the sink
// while sink.write() returns true and wait for drain() after it returned false.
'use strict';

const PENDING_LIMIT = 65536;

class Outbox {
  // opts: {bufferSize, waitMs, pendingLimit, sink: {write(msg) -> bool},
  //        onHandOut(msg), onDrop(msg, reason)}; reason 'slow-consumer' or 'pending-limit'.
  constructor(opts) {
    this.bufferSize = opts.bufferSize;
    this.waitMs = opts.waitMs;
    this.pendingLimit = opts.pendingLimit === undefined ? PENDING_LIMIT : opts.pendingLimit;
    this.sink = opts.sink;
    this.onHandOut = opts.onHandOut || (() => {});
    this.onDrop = opts.onDrop || (() => {});
    this.pending = [];
    this.head = 0; // index of the first pending message (shift() is O(n))
    this.buffer = [];
    this.writable = true;
    this.timer = null; // the 2 s wait of the first pending message for room
    this.closed = false;
    this.counts = { written: 0, dropped: 0, writeBlocked: 0 };
  }

  pendingCount() {
    return this.pending.length - this.head;
  }

  push(msg) {
    if (this.closed) return;
    if (this.pendingCount() >= this.pendingLimit) {
      this.counts.dropped++;
      this.onHandOut(msg);
      this.onDrop(msg, 'pending-limit');
      return;
    }
    this.pending.push(msg);
    this.pump();
  }

  // The sink can take more (grpc-js 'drain').
  drain() {
    if (this.closed) return;
    this.writable = true;
    this.pump();
  }

  takePending() {
    const m = this.pending[this.head];
    this.pending[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.head);
      this.head = 0;
    }
    return m;
  }

  write(m) {
    this.counts.written++;
    this.writable = this.sink.write(m) !== false;
    if (!this.writable) this.counts.writeBlocked++;
  }

  pump() {
    for (;;) {
      while (!this.closed && this.writable && this.buffer.length) this.write(this.buffer.shift());
      if (this.closed || !this.pendingCount()) break;
      const room = this.buffer.length < this.bufferSize;
      // Without a buffer a message waits for the sink itself, as it would for room.
      const direct = this.bufferSize === 0 && this.writable;
      if (!room && !direct) break;
      this.stopWait();
      const m = this.takePending();
      this.onHandOut(m);
      if (room) this.buffer.push(m);
      else this.write(m);
    }
    if (!this.closed && this.pendingCount() && !this.timer) this.startWait();
  }

  startWait() {
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.closed || !this.pendingCount()) return;
      const m = this.takePending();
      this.counts.dropped++;
      this.onHandOut(m);
      this.onDrop(m, 'slow-consumer');
      this.pump();
    }, this.waitMs);
  }

  stopWait() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  // The subscription ended: what was not written is gone (not handed out).
  close() {
    this.closed = true;
    this.stopWait();
    this.pending = [];
    this.head = 0;
    this.buffer = [];
  }

  stats() {
    return {
      pending: this.pendingCount(),
      buffered: this.buffer.length,
      written: this.counts.written,
      dropped: this.counts.dropped,
      writable: this.writable,
      writeBlocked: this.counts.writeBlocked,
    };
  }
}

module.exports = { Outbox, PENDING_LIMIT };
