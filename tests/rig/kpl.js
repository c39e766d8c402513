'use strict';
// KPL aggregated records unpacked by aws-kinesis-agg, the kinesis-aggregation
// library's Node module: a deaggregator we did not write, for checking what
// kubemq-kinesis's aggregation puts in a stream.
//   const { deaggregate } = require('../rig/kpl');
const agg = require('aws-kinesis-agg');

// One Kinesis record as GetRecords answers it ({Data, PartitionKey,
// SequenceNumber, ...}) -> its user records [{PartitionKey, ExplicitPartitionKey,
// SequenceNumber, SubSequenceNumber, Data}]; a plain record comes back alone,
// without SubSequenceNumber. Checksums are checked; a bad one throws.
function deaggregate(record) {
  let out = null;
  let error = null;
  agg.deaggregateSync({ Data: record.Data, PartitionKey: record.PartitionKey, SequenceNumber: record.SequenceNumber },
    true, (err, users) => {
      error = err || null;
      out = users || [];
    });
  if (error) throw error;
  return out;
}

module.exports = { deaggregate };
