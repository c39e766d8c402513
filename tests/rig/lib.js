'use strict';
// The test rig in one require: Kinesis stand-ins, the SigV4 gate, helpers to
// run our binary, SigV4 signing, process plumbing.
//   const rig = require('../rig/lib');
module.exports = {
  ...require('./proc'), // startScript, stopChild, pidAlive, freePort, httpRequest, waitHttp, waitFor, listeningAddrs, sleep
  ...require('./sigv4'), // signKinesis, kinesisCall, verifyRequest
  ...require('./kinesis'), // startKinesalite, startKinesisLocal, readStream
  ...require('./creds'), // startCredsServer
  ...require('./gate'), // startGate, createGate
  ...require('./daemon'), // writeConfig, invoke, startDaemon, binPath
  ...require('./certs'), // makeTestCert, makeTestCA
  ...require('./broker-lib'), // startBroker, brokerControl, createBroker, KUBEMQ_PROTO, KUBEMQ_LOADER_OPTS
  ...require('./h2-raw'), // connectRaw, kubemqMethods, FRAME_TYPES
};
