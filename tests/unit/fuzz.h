/* fuzz.h - a seeded mutator for the fuzz smoke tests.
 *
 * Deterministic: the same seed gives the same inputs, so a failure is
 * reproduced by running the test again (with the same FUZZ_SEED). Mutations: byte flips,
 * inserted and deleted runs, truncation, duplicated slices and spliced
 * tokens that parsers tend to trip on. */
#ifndef KK_TESTS_FUZZ_H
#define KK_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX 8192

struct fuzz {
    uint64_t state;
    char out[FUZZ_MAX + 1];
    size_t len;
};

/* FUZZ_SEED=n in the environment shifts every seed, to explore beyond
 * the fixed inputs `make test` runs. */
static inline void fuzz_seed(struct fuzz *f, uint64_t seed)
{
    const char *env = getenv("FUZZ_SEED");

    if (env) {
        seed ^= strtoull(env, NULL, 0) * 0x9e3779b97f4a7c15ULL;
    }
    f->state = seed ? seed : 0x9e3779b97f4a7c15ULL;
}

static inline uint64_t fuzz_next(struct fuzz *f)
{
    uint64_t x = f->state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    f->state = x;
    return x;
}

static inline size_t fuzz_below(struct fuzz *f, size_t n)
{
    return n ? (size_t)(fuzz_next(f) % n) : 0;
}

static const char *const fuzz_tokens[] = {
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "\\udfff\\ud800",
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "null",
    "true",
    "false",
    "-1",
    "0",
    "1e999",
    "-0.0",
    "18446744073709551616",
    "99999999999",
    "====",
    "QQ",
    "QQ==",
    "!!",
    "\xff\xfe",
    "\xc3",
    "\xe2\x82",
    " ",
    "\n",
    "\t",
    "\"data\":",
    "\"metadata\":",
    "\"method\":",
    "\"put_records\"",
    "{}",
    "[]",
    "\"\"",
    "AAAA",
    "- ",
    "&a",
    "*a",
    "!!binary ",
    "<<: ",
    "%YAML 1.2\n",
    "---\n",
    "...\n",
    "? ",
};

static inline void fuzz_insert(struct fuzz *f, size_t at, const char *p, size_t n)
{
    if (f->len + n > FUZZ_MAX) {
        n = FUZZ_MAX - f->len;
    }
    memmove(f->out + at + n, f->out + at, f->len - at);
    memcpy(f->out + at, p, n);
    f->len += n;
}

/* f->out = a mutation of in[0..n), NUL-terminated (it may hold NULs too). */
static inline void fuzz_mutate(struct fuzz *f, const char *in, size_t n)
{
    int ops = 1 + (int)fuzz_below(f, 4), i;

    if (n > FUZZ_MAX) {
        n = FUZZ_MAX;
    }
    memcpy(f->out, in, n);
    f->len = n;
    for (i = 0; i < ops; i++) {
        size_t at = fuzz_below(f, f->len + 1), k;

        switch (fuzz_below(f, 7)) {
        case 0: /* flip a byte */
            if (f->len) {
                f->out[fuzz_below(f, f->len)] ^= (char)(1u << fuzz_below(f, 8));
            }
            break;
        case 1: /* random byte */
            if (f->len) {
                f->out[fuzz_below(f, f->len)] = (char)fuzz_below(f, 256);
            }
            break;
        case 2: /* delete a run */
            k = fuzz_below(f, 16) + 1;
            if (at + k > f->len) {
                k = f->len - at;
            }
            memmove(f->out + at, f->out + at + k, f->len - at - k);
            f->len -= k;
            break;
        case 3: /* truncate */
            f->len = at;
            break;
        case 4: { /* duplicate a slice */
            size_t from = fuzz_below(f, f->len + 1);
            char tmp[256];
            k = fuzz_below(f, sizeof(tmp));
            if (from + k > f->len) {
                k = f->len - from;
            }
            memcpy(tmp, f->out + from, k);
            fuzz_insert(f, at, tmp, k);
            break;
        }
        case 5: { /* a long run of one byte */
            char run[600];
            k = fuzz_below(f, sizeof(run));
            memset(run, "a0\"\\{[ "[fuzz_below(f, 7)], k);
            fuzz_insert(f, at, run, k);
            break;
        }
        default: { /* splice a token */
            const char *t = fuzz_tokens[fuzz_below(f, sizeof(fuzz_tokens) / sizeof(*fuzz_tokens))];
            fuzz_insert(f, at, t, strlen(t));
            break;
        }
        }
    }
    f->out[f->len] = '\0';
}

#endif
