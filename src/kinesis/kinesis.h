/* kinesis.h - the aws.kinesis target: kubemq-targets' aws.kinesis methods
 * (and the older connector style's put/create) run against Kinesis. */
#ifndef KK_KINESIS_H
#define KK_KINESIS_H

#include "aws/aws_client.h"
#include "kinesis/target.h"

extern const struct target_kind kinesis_target_kind;

/* The kind's create() with a chosen AWS transport (unit tests and the
 * in-process benchmark answer in memory; NULL = the AWS client's HTTP). With loop NULL
 * only validates. Returns the instance for kinesis_target_kind.execute
 * and .destroy, or NULL with every problem in errs. */
void *kinesis_instance_create(struct loop *loop, const json_t *props, const char *binding,
                              const char *where, const struct aws_transport *transport,
                              struct errs *errs);

/* "list_streams, create_stream, ..." in a stable order (the documentation's). */
const char *kinesis_method_names(void);

#endif
