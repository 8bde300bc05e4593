/* xoshiro256** seeded by splitmix64 (docs/algorithms.md 0.2): one per operator
 * instance, checkpointable as its four state words. */
#ifndef INK_RNG_H
#define INK_RNG_H

#include <stdint.h>

struct ink_rng {
    uint64_t s[4];
};

static inline uint64_t ink_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void ink_rng_seed(struct ink_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = ink_splitmix64(&seed);
}

static inline uint64_t ink_rng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t ink_rng_next(struct ink_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = ink_rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ink_rng_rotl(s[3], 45);
    return out;
}

/* Uniform double in [0, 1). */
static inline double ink_rng_uniform(struct ink_rng *r)
{
    return (double)(ink_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Child seed for a named sub-stream: splitmix64(parent ^ hash(name)). */
static inline uint64_t ink_seed_derive(uint64_t parent, const char *name)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    uint64_t x = parent ^ h;
    return ink_splitmix64(&x);
}

#endif
