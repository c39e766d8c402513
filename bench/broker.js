#!/usr/bin/env node
// broker.js - the stand-in broker (tests/rig/broker.js) for `make bench`, with its
// grpc-js port given out as well as the front's.
//
//   node bench/broker.js
//
// The rig's broker puts a relay (tests/rig/broker-front.js) in front of grpc-js, where
// tests cut and police connections. The relay runs in the broker's own node thread and
// reads every frame both ways, so it may cost the broker CPU per query - and the broker
// (one node thread) is what bounds every rate through it. Clients that connect to
// "direct" (grpc-js's own port) have no relay on their path; "port" is the relay's, as
// in the tests. Prints {"ready":true,"port":N,"direct":D,"control":M}; SIGTERM stops it.
'use strict';

const path = require('node:path');
const rig = path.join(__dirname, '../tests/rig');
const { createBroker, startControl } = require(path.join(rig, 'broker'));
const { announceReady, announceFailure } = require(path.join(rig, 'proc'));

async function main() {
  const args = process.argv.slice(2);
  if (args.length) throw new Error(`unknown argument ${args[0]}`);
  const broker = createBroker({ port: 0 });
  const front = await broker.start();
  const control = await startControl(broker, 0);
  announceReady(
    { port: front, direct: broker.grpcPort, control: control.address().port },
    {
      onStop: async () => {
        control.close();
        await broker.close();
      },
    },
  );
}

main().catch(announceFailure);
