'use strict';
// Module API of the stand-in KubeMQ broker (broker.js), run as a child process:
//   const b = await startBroker({ port: 0, authToken: 'T' });
//   new QueriesClient({ address: b.address, clientId: 'x' })
//   await b.waitForSubscribers('queries', 'channel');   // instead of sleeping
//   await b.stop();                                       // SIGTERM, SIGKILL after 3 s
const { startScript, httpRequest, waitFor } = require('./proc');
const { createBroker, PROTO, LOADER_OPTS } = require('./broker');

// JSON request to a broker's control port (body: an object, sent as JSON); rejects on a
// non-200 answer.
async function brokerControl(controlPort, method, route, body) {
  const r = await httpRequest(`http://127.0.0.1:${controlPort}${route}`, {
    method,
    timeoutMs: 10000,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
  if (r.status !== 200) throw new Error(`broker control ${method} ${route}: ${(r.json && r.json.error) || r.status}`);
  return r.json;
}

// opts: {port=0, authToken, tlsCert, tlsKey, tlsCa, controlPort=0, subBuffer, slowConsumerWaitMs,
//        minPingIntervalMs, maxPingStrikes, env}
// -> {address, port, control, pid, child, exited, stop(), stderr(), stats(), stopListener(),
//     startListener(), reset(), resetDurables(), finConnections({downMs}),
//     goawayConnections({code, debug}), waitFor(pred, opts), waitForSubscribers(kind, channel, opts)}
async function startBroker(opts = {}) {
  const args = ['--port', String(opts.port || 0)];
  if (opts.controlPort) args.push('--control-port', String(opts.controlPort));
  if (opts.authToken) args.push('--auth-token', opts.authToken);
  if (opts.tlsCert || opts.tlsKey) args.push('--tls-cert', opts.tlsCert, '--tls-key', opts.tlsKey);
  if (opts.tlsCa) args.push('--tls-ca', opts.tlsCa);
  const flags = {
    subBuffer: '--sub-buffer',
    slowConsumerWaitMs: '--slow-consumer-wait-ms',
    minPingIntervalMs: '--min-ping-interval-ms',
    maxPingStrikes: '--max-ping-strikes',
  };
  for (const [k, flag] of Object.entries(flags)) if (opts[k] !== undefined) args.push(flag, String(opts[k]));
  const h = await startScript('broker.js', args, { env: opts.env, name: 'stand-in broker' });
  const ctl = (method, route, body) => brokerControl(h.ready.control, method, route, body);
  const b = {
    address: `127.0.0.1:${h.ready.port}`,
    port: h.ready.port,
    control: h.ready.control,
    pid: h.pid,
    child: h.child,
    exited: h.exited,
    stop: h.stop,
    stderr: h.stderr,
    stats: () => ctl('GET', '/stats'),
    // Ends open calls with UNAVAILABLE and closes the gRPC port; data is kept.
    stopListener: () => ctl('POST', '/listener/stop'),
    // Listens again on the same port.
    startListener: () => ctl('POST', '/listener/start'),
    // Drops queues, stored events, durables and counters (not live subscriptions).
    reset: () => ctl('POST', '/reset'),
    // Forgets the events_store durable positions only.
    resetDurables: () => ctl('POST', '/durables/reset'),
    // Every client connection ends with a plain TCP FIN (downMs: new connects refused
    // for that long) -> {ok, cut}.
    finConnections: ({ downMs = 0 } = {}) => ctl('POST', '/connections/fin', { downMs }),
    // Every client connection gets GOAWAY(code, its last stream id, debug), then a FIN.
    goawayConnections: ({ code = 0, debug = '' } = {}) => ctl('POST', '/connections/goaway', { code, debug }),
    // Polls /stats until pred(stats) is truthy; resolves with those stats.
    waitFor: (pred, { timeoutMs = 10000, what = 'broker condition' } = {}) =>
      waitFor(async () => {
        const s = await b.stats();
        return pred(s) ? s : null;
      }, { timeoutMs, what }),
    // Until `count` subscribers of kind ('events', 'events_store', 'commands', 'queries')
    // are live on channel; group '' = ungrouped only, omitted = any group.
    waitForSubscribers: (kind, channel, { group, count = 1, timeoutMs = 10000 } = {}) =>
      b.waitFor(
        (s) => {
          const ch = s.subscribers[kind][channel] || {};
          const n = group === undefined ? Object.values(ch).reduce((x, y) => x + y, 0) : ch[group] || 0;
          return n >= count;
        },
        { timeoutMs, what: `${count} ${kind} subscriber(s) on ${channel}` },
      ),
  };
  return b;
}

module.exports = {
  startBroker,
  brokerControl,
  createBroker, // in-process broker: createBroker(opts).start() -> port
  KUBEMQ_PROTO: PROTO,
  KUBEMQ_LOADER_OPTS: LOADER_OPTS,
};
