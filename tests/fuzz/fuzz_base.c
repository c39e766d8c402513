/* fuzz_base.c - libFuzzer: one input through every reader of the base
 * layer and the endpoint parser. Checks beyond "no crash": jflat accepts
 * only what jansson reads the same way, base64 validity and decoding
 * agree and canonical text encodes back to itself, an accepted endpoint
 * has a host and a path. See run.sh. */
#include "aws/aws_endpoint.h"
#include "base/b64.h"
#include "base/buf.h"
#include "base/jflat.h"
#include "base/timeparse.h"
#include "message/envelope.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_jflat(const char *s, size_t size)
{
    struct jflat_member m[32];
    static char key[1 << 16];
    size_t distinct = 0;
    json_t *o;
    int r = jflat_scan(s, size, m, 32), i;

    if (r < 0) {
        return;
    }
    o = json_loadb(s, size, JSON_DECODE_ANY, NULL);
    if (!o || !json_is_object(o)) {
        abort(); /* jflat accepted what jansson refuses */
    }
    for (i = 0; i < r; i++) {
        const struct jflat_member *last;
        json_t *v;

        if (m[i].kn >= sizeof(key)) {
            abort();
        }
        memcpy(key, m[i].k, m[i].kn);
        key[m[i].kn] = '\0';
        last = jflat_get(m, r, key);
        distinct += last == &m[i];
        v = json_object_get(o, key);
        if (!v || (last->null && !json_is_null(v)) ||
            (!last->null && (!json_is_string(v) || json_string_length(v) != last->vn ||
                             memcmp(json_string_value(v), last->v, last->vn) != 0))) {
            abort(); /* the two read different values */
        }
    }
    if (json_object_size(o) != distinct) {
        abort();
    }
    json_decref(o);
}

static void check_b64(const char *s, size_t size)
{
    struct buf dec = BUF_INIT(1 << 24), enc = BUF_INIT(1 << 24);
    int valid = b64_is_valid(s, size), ok = b64_decode(s, size, &dec) == 0;

    if (valid != ok) {
        abort();
    }
    if (ok && b64_is_canonical(s, size)) {
        if (b64_encode(dec.data, dec.len, &enc) < 0 || enc.len != size ||
            memcmp(enc.data, s, size) != 0) {
            abort();
        }
    }
    buf_free(&dec);
    buf_free(&enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct aws_endpoint ep;
    struct envelope_request req;
    char *s = malloc(size + 1), err[256];
    long long ns;
    double secs;
    int raw;

    if (!s) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    timeparse_rfc3339_ns(s, &ns);
    timeparse_rfc3339(s, &secs);
    check_jflat(s, size);
    check_b64(s, size);
    for (raw = 0; raw <= 1; raw++) {
        envelope_request_init(&req);
        envelope_request_parse(&req, s, size, raw, err, sizeof(err));
        envelope_request_free(&req);
    }
    if (aws_endpoint_parse(s, &ep, err, sizeof(err)) == 0 && (!ep.host[0] || ep.path[0] != '/')) {
        abort();
    }
    free(s);
    return 0;
}
