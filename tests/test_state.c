/* engine/state.c and engine/rng.h: blobs round-trip bit-exactly and
 * refuse what is missing or mis-sized. */
#include "../engine/rng.h"
#include "../engine/state.h"
#include "ink_test.h"

TEST(rng_reproducible)
{
    struct ink_rng a, b;
    ink_rng_seed(&a, 42);
    ink_rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++) CHECK(ink_rng_next(&a) == ink_rng_next(&b));
    double u = ink_rng_uniform(&a);
    CHECK(u >= 0 && u < 1);
    CHECK(ink_seed_derive(42, "a") != ink_seed_derive(42, "b"));
}

TEST(blob_roundtrip)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    double v[3] = {1.5, -0.0, 1e-300};
    struct ink_rng r;
    ink_rng_seed(&r, 7);
    msgpack_pack_map(&pk, 3);
    ink_pack_key(&pk, "v");
    ink_pack_f64s(&pk, v, 3);
    ink_pack_key(&pk, "n");
    msgpack_pack_int64(&pk, -5);
    ink_pack_key(&pk, "rng");
    ink_pack_rng(&pk, &r);

    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    REQUIRE(msgpack_unpack_next(&up, sb.data, sb.size, &off) == MSGPACK_UNPACK_SUCCESS);
    struct ink_err err = {0};
    double w[3];
    CHECK(ink_state_f64s(&up.data, "v", w, 3, &err) == 0);
    CHECK(memcmp(v, w, sizeof v) == 0);
    CHECK(ink_state_f64s(&up.data, "v", w, 2, &err) == INK_ESTATE);
    CHECK(strstr(err.msg, "expected 2") != NULL);
    int64_t n;
    CHECK(ink_state_i64(&up.data, "n", &n, &err) == 0 && n == -5);
    CHECK(ink_state_i64(&up.data, "missing", &n, &err) == INK_ESTATE);
    struct ink_rng r2;
    CHECK(ink_state_rng(&up.data, "rng", &r2, &err) == 0);
    CHECK(memcmp(&r, &r2, sizeof r) == 0);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
}

int main(int argc, char **argv)
{
    return ink_test_main(argc, argv);
}
