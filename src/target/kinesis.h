/* kinesis.h - the aws.kinesis target (SPEC §4). */
#ifndef KK_TARGET_KINESIS_H
#define KK_TARGET_KINESIS_H

#include "target/target.h"

extern const struct target_kind kinesis_target_kind;

#endif
