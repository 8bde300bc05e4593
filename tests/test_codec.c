/* engine/codec.h: msgpack / JSON Lines / CSV round-trips, every hostile
 * input rejected with its exact reason and without a large allocation,
 * garbage never crashes, and a micro-benchmark of the msgpack path. */
#define _GNU_SOURCE
#include <msgpack.h>
#include <stdint.h>
#include <time.h>

#include "../engine/codec.h"
#include "../engine/fields.h"
#include "../engine/codec_int.h"
#include "../engine/rng.h"
#include "alloc_count.h"
#include "ink_test.h"

/* ---- allocation counting (tests/alloc_count.h; off under ASan, where the
 * counting checks are skipped and say so) ---- */
#define COUNT_ALLOC ink_alloc_count_available()
static size_t n_alloc, max_alloc; /* calls and largest request while counting */

static void count_start(void)
{
    ink_alloc_count_start();
}
static void count_stop(void)
{
    struct ink_alloc_counts c = ink_alloc_count_stop();
    n_alloc = c.calls;
    max_alloc = c.largest;
}

static double test_scale(void)
{
    const char *s = getenv("INK_TEST_SCALE");
    double v = s ? atof(s) : 1.0;
    return v > 0 ? v : 1.0;
}

/* ---- helpers ---- */

struct frame {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void frame_init(struct frame *f)
{
    msgpack_sbuffer_init(&f->sb);
    msgpack_packer_init(&f->pk, &f->sb, msgpack_sbuffer_write);
}

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static enum ink_reject dec_bytes(struct ink_decoder *d, const void *p, size_t n,
                                 struct ink_record *r)
{
    return ink_decode_msgpack(d, (const uint8_t *)p, n, r);
}

static enum ink_reject dec_json(struct ink_decoder *d, const char *s, struct ink_record *r)
{
    return ink_decode_json(d, s, strlen(s), r);
}

#define CHECK_REJ(expr, want)                                                                      \
    do {                                                                                           \
        enum ink_reject got__ = (expr);                                                            \
        CHECK_MSG(got__ == (want), "%s: got %s, want %s (%s)", #expr, ink_reject_name(got__),      \
                  ink_reject_name(want), d.why);                                                   \
    } while (0)

/* The usual frame: {"t":..., "key":"s-000042", "x":[8 doubles], "y":...}. */
static void pack_sample(struct frame *f, int64_t t, const double *x, int dim, double y)
{
    msgpack_pack_map(&f->pk, 4);
    pk_str(&f->pk, "t");
    msgpack_pack_int64(&f->pk, t);
    pk_str(&f->pk, "key");
    pk_str(&f->pk, "s-000042");
    pk_str(&f->pk, "x");
    msgpack_pack_array(&f->pk, (size_t)dim);
    for (int i = 0; i < dim; i++) msgpack_pack_double(&f->pk, x[i]);
    pk_str(&f->pk, "y");
    msgpack_pack_double(&f->pk, y);
}

/* ---- round-trips ---- */

TEST(msgpack_roundtrip)
{
    struct ink_decoder d;
    REQUIRE(ink_decoder_init(&d, NULL) == 0);
    struct frame f;
    frame_init(&f);
    msgpack_packer *pk = &f.pk;
    msgpack_pack_map(pk, 9);
    pk_str(pk, "meta"); /* an extra before the known fields */
    msgpack_pack_map(pk, 2);
    pk_str(pk, "site");
    pk_str(pk, "north");
    pk_str(pk, "v");
    msgpack_pack_array(pk, 2);
    msgpack_pack_int(pk, 1);
    msgpack_pack_nil(pk);
    pk_str(pk, "x");
    msgpack_pack_array(pk, 5);
    msgpack_pack_int(pk, 3);        /* positive fixint */
    msgpack_pack_int64(pk, -70000); /* int32 */
    msgpack_pack_float(pk, 0.5f);   /* float32 */
    msgpack_pack_double(pk, 0.1);   /* float64 */
    msgpack_pack_uint64(pk, 1ull << 40);
    pk_str(pk, "t");
    msgpack_pack_int64(pk, 1700000000123456789LL);
    pk_str(pk, "key");
    pk_str(pk, "seattle");
    pk_str(pk, "n"); /* an extra between known fields */
    msgpack_pack_int(pk, 4);
    pk_str(pk, "y");
    msgpack_pack_int(pk, -2); /* widened */
    pk_str(pk, "arm");
    msgpack_pack_int(pk, 7);
    pk_str(pk, "op");
    pk_str(pk, "ask");
    pk_str(pk, "seq");
    msgpack_pack_uint64(pk, 99);

    struct ink_record r;
    REQUIRE(dec_bytes(&d, f.sb.data, f.sb.size, &r) == INK_REJ_NONE);
    CHECK(r.flags == (INK_HAS_X | INK_HAS_T | INK_HAS_KEY | INK_HAS_Y | INK_HAS_ARM | INK_HAS_OP |
                      INK_HAS_SEQ));
    REQUIRE(r.dim == 5);
    double want[5] = {3, -70000, 0.5, 0.1, 1099511627776.0};
    CHECK(memcmp(r.x, want, sizeof want) == 0);
    CHECK(r.t == 1700000000123456789LL && r.y == -2 && r.arm == 7 && r.seq == 99);
    CHECK(r.key_len == 7 && memcmp(r.key, "seattle", 7) == 0);
    CHECK(ink_record_op_is(&r, "ask"));
    CHECK(r.extra_n == 2);
    int64_t n = 0;
    CHECK(ink_record_extra_i64(&r, "n", &n) == 1 && n == 4);

    /* encode -> decode -> encode is a fixed point, byte for byte */
    struct ink_buf a = {0}, b = {0};
    REQUIRE(ink_encode_msgpack(&r, INK_ENC_SEQ, &a) == 0);
    struct ink_decoder d2;
    REQUIRE(ink_decoder_init(&d2, NULL) == 0);
    struct ink_record r2;
    REQUIRE(dec_bytes(&d2, a.p, a.len, &r2) == INK_REJ_NONE);
    CHECK(r2.flags == r.flags && r2.dim == 5 && memcmp(r2.x, want, sizeof want) == 0);
    CHECK(r2.extra_n == 2 && r2.extra_len == r.extra_len);
    CHECK(memcmp(r2.extra, r.extra, r.extra_len) == 0);
    REQUIRE(ink_encode_msgpack(&r2, INK_ENC_SEQ, &b) == 0);
    CHECK(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
    /* without INK_ENC_SEQ there is no seq */
    ink_buf_reset(&b);
    REQUIRE(ink_encode_msgpack(&r2, 0, &b) == 0);
    REQUIRE(dec_bytes(&d2, b.p, b.len, &r2) == INK_REJ_NONE);
    CHECK(!(r2.flags & INK_HAS_SEQ));
    ink_buf_fini(&a);
    ink_buf_fini(&b);
    ink_decoder_fini(&d2);
    msgpack_sbuffer_destroy(&f.sb);
    ink_decoder_fini(&d);
    ink_decoder_fini(&d); /* twice is safe */
}

TEST(json_roundtrip_byte_identical)
{
    struct ink_decoder d;
    REQUIRE(ink_decoder_init(&d, NULL) == 0);
    static const char *lines[] = {
        "{\"t\":1700000000123456789,\"key\":\"sea\\\"ttle\\n\",\"x\":[1.5,-2,0.1,1e-300,"
        "123456789012.25,2.2250738585072014e-308,0.30000000000000004],\"y\":0.25,\"arm\":3}\n",
        "{\"op\":\"ask\",\"n\":4,\"q\":[1,2.5],\"meta\":{\"a\":[1,true,null,{\"b\":\"\xc3\xa9\"}],"
        "\"c\":-9007199254740993}}\n",
        "{\"x\":[39.4],\"F\":0.231}\n",
        "{\"x\":[]}\n",
    };
    struct ink_buf out = {0};
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
        struct ink_record r;
        REQUIRE(dec_json(&d, lines[i], &r) == INK_REJ_NONE);
        ink_buf_reset(&out);
        REQUIRE(ink_encode_json(&r, 0, &out) == 0);
        CHECK_MSG(out.len == strlen(lines[i]) && memcmp(out.p, lines[i], out.len) == 0,
                  "\n in: %s out: %.*s", lines[i], (int)out.len, (char *)out.p);
    }
    /* JSON -> record -> msgpack -> record -> JSON is the same line */
    struct ink_record r;
    REQUIRE(dec_json(&d, lines[1], &r) == INK_REJ_NONE);
    int64_t n;
    double q[4];
    uint32_t qn = 0;
    const char *s;
    uint32_t sn;
    CHECK(ink_record_extra_i64(&r, "n", &n) == 1 && n == 4);
    CHECK(ink_record_extra_f64s(&r, "q", q, 4, &qn) == 1 && qn == 2 && q[0] == 1 && q[1] == 2.5);
    CHECK(ink_record_extra_f64s(&r, "q", q, 1, &qn) == -1); /* longer than cap */
    CHECK(ink_record_extra_str(&r, "meta", &s, &sn) == -1);
    CHECK(ink_record_extra_i64(&r, "missing", &n) == 0);
    struct ink_buf mp = {0};
    REQUIRE(ink_encode_msgpack(&r, 0, &mp) == 0);
    struct ink_decoder d2;
    REQUIRE(ink_decoder_init(&d2, NULL) == 0);
    struct ink_record r2;
    REQUIRE(dec_bytes(&d2, mp.p, mp.len, &r2) == INK_REJ_NONE);
    ink_buf_reset(&out);
    REQUIRE(ink_encode_json(&r2, 0, &out) == 0);
    CHECK(out.len == strlen(lines[1]) && memcmp(out.p, lines[1], out.len) == 0);
    ink_buf_fini(&mp);
    ink_buf_fini(&out);
    ink_decoder_fini(&d2);
    ink_decoder_fini(&d);
}

/* An integer request argument sent as a double: exact integers in int64_t's
 * range are taken, everything else refused, and no double outside the range
 * is ever converted (that is undefined behaviour: fuzz_codec found it with
 * tests/fuzz/regress/codec/extra_i64_out_of_range). */
TEST(extra_i64_from_doubles)
{
    struct ink_decoder d;
    REQUIRE(ink_decoder_init(&d, NULL) == 0);
    const struct {
        double v;
        int want; /* 1 taken, -1 refused */
        int64_t n;
    } cases[] = {
        {4.0, 1, 4},
        {-3.0591e+54, -1, 0},
        {3.0591e+54, -1, 0},
        {9223372036854775808.0, -1, 0}, /* 2^63 */
        {-9223372036854775808.0, 1, INT64_MIN},
        {-9.3e18, -1, 0},
        {9.2e18, 1, 9200000000000000000},
        {1.5, -1, 0},
        {NAN, -1, 0},
        {INFINITY, -1, 0},
        {-INFINITY, -1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "x", 1);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_double(&pk, 1.0);
        msgpack_pack_str_with_body(&pk, "n", 1);
        msgpack_pack_double(&pk, cases[i].v);
        struct ink_record r;
        enum ink_reject why = dec_bytes(&d, sb.data, sb.size, &r);
        if (why == INK_REJ_NONE) { /* non-finite doubles may be refused by the decoder itself */
            int64_t n = 0;
            int rc = ink_record_extra_i64(&r, "n", &n);
            CHECK_MSG(rc == cases[i].want && (rc != 1 || n == cases[i].n),
                      "n = %g: got %d (%lld), want %d", cases[i].v, rc, (long long)n,
                      cases[i].want);
        } else {
            CHECK_MSG(!isfinite(cases[i].v), "n = %g refused by the decoder (%d)", cases[i].v,
                      (int)why);
        }
        msgpack_sbuffer_destroy(&sb);
    }
    ink_decoder_fini(&d);
}

TEST(json_numbers_shortest_and_exact)
{
    struct ink_rng rng;
    ink_rng_seed(&rng, 11);
    struct ink_buf out = {0};
    int n = (int)(20000 * test_scale());
    for (int i = 0; i < n; i++) {
        uint64_t u = ink_rng_next(&rng);
        double v;
        memcpy(&v, &u, 8);
        if (!isfinite(v)) continue;
        if (i & 1) v = (ink_rng_uniform(&rng) - 0.5) * 1e4; /* everyday magnitudes too */
        ink_buf_reset(&out);
        REQUIRE(ink__json_number(&out, v) == 0);
        char tmp[40];
        memcpy(tmp, out.p, out.len);
        tmp[out.len] = '\0';
        double back = strtod(tmp, NULL);
        CHECK_MSG(memcmp(&back, &v, 8) == 0, "%.17g -> %s", v, tmp);
        char ref[40];
        int rl = snprintf(ref, sizeof ref, "%.17g", v);
        CHECK_MSG((int)out.len <= rl, "%s longer than %s", tmp, ref);
    }
    /* the fast path for short decimals prints what the general rule prints */
    for (int i = 0; i < n; i++) {
        int64_t m = (int64_t)(ink_rng_next(&rng) % 2000000001) - 1000000000;
        double v = (double)m / pow(10, (double)(ink_rng_next(&rng) % 9));
        if (i & 1) v = ink_rng_uniform(&rng) * pow(10, (double)(ink_rng_next(&rng) % 24) - 8);
        char ref[40];
        if (v == floor(v) && fabs(v) < 1e15) {
            snprintf(ref, sizeof ref, "%.0f", v);
        } else {
            for (int prec = 15; prec <= 17; prec++) {
                snprintf(ref, sizeof ref, "%.*g", prec, v);
                if (strtod(ref, NULL) == v) break;
            }
        }
        ink_buf_reset(&out);
        REQUIRE(ink__json_number(&out, v) == 0);
        if (!strchr(ref, 'e')) /* (exponent forms may legitimately be shortened) */
            CHECK_MSG(out.len == strlen(ref) && memcmp(out.p, ref, out.len) == 0, "%.*s vs %s",
                      (int)out.len, (char *)out.p, ref);
    }
    ink_buf_reset(&out);
    ink__json_number(&out, -0.0);
    CHECK(out.len == 4 && memcmp(out.p, "-0.0", 4) == 0);
    ink_buf_reset(&out);
    ink__json_number(&out, NAN);
    CHECK(out.len == 4 && memcmp(out.p, "null", 4) == 0);
    ink_buf_fini(&out);
}

TEST(csv_roundtrip)
{
    struct ink_decoder d;
    REQUIRE(ink_decoder_init(&d, NULL) == 0);
    struct ink_csv_header h;
    struct ink_err err = {0};
    const char *hdr = "\xef\xbb\xbft,key,a,b,y,c\r\n";
    REQUIRE(ink_csv_header_parse(&h, hdr, strlen(hdr), &err) == 0);
    CHECK(h.ncols == 6 && h.dim == 3);
    const char *row = "17,\"sea,\"\"ttle\"\"\",1.5,-2,0.25,1e-300\r\n";
    struct ink_record r;
    REQUIRE(ink_decode_csv(&d, &h, row, strlen(row), &r) == INK_REJ_NONE);
    CHECK(r.flags == (INK_HAS_T | INK_HAS_KEY | INK_HAS_X | INK_HAS_Y));
    CHECK(r.t == 17 && r.y == 0.25 && r.dim == 3);
    CHECK(r.x[0] == 1.5 && r.x[1] == -2 && r.x[2] == 1e-300);
    CHECK(r.key_len == 10 && memcmp(r.key, "sea,\"ttle\"", 10) == 0);

    /* absent cells */
    const char *row2 = ",,1,2,,3\n";
    REQUIRE(ink_decode_csv(&d, &h, row2, strlen(row2), &r) == INK_REJ_NONE);
    CHECK(r.flags == INK_HAS_X && r.dim == 3);

    /* out: header from the first record, rows after it; read back equal */
    REQUIRE(ink_decode_csv(&d, &h, row, strlen(row), &r) == INK_REJ_NONE);
    ink_record_add_f64(&r, "F", 0.5);
    ink_record_add_i64(&r, "n", 12);
    double arr[2] = {1, 2};
    ink_record_add_f64s(&r, "arr", arr, 2); /* not a CSV column */
    ink_record_add_str(&r, "s", "a b ", 4);
    struct ink_csv_layout lay;
    struct ink_buf out = {0};
    REQUIRE(ink_encode_csv_header(&lay, &r, 0, &out) == 0);
    REQUIRE(ink_encode_csv(&lay, &r, &out) == 0);
    const char *want = "t,key,x0,x1,x2,y,F,n,s\n17,\"sea,\"\"ttle\"\"\",1.5,-2,1e-300,0.25,0.5,12,"
                       "\"a b \"\n";
    CHECK_MSG(out.len == strlen(want) && memcmp(out.p, want, out.len) == 0, "%.*s", (int)out.len,
              (char *)out.p);
    /* a later record without y or fields keeps the columns */
    struct ink_record r3;
    REQUIRE(ink_decode_csv(&d, &h, row2, strlen(row2), &r3) == INK_REJ_NONE);
    ink_buf_reset(&out);
    REQUIRE(ink_encode_csv(&lay, &r3, &out) == 0);
    CHECK_MSG(out.len == 12 && memcmp(out.p, ",,1,2,3,,,,\n", 12) == 0, "%.*s", (int)out.len,
              (char *)out.p);

    /* CSV out -> CSV in is the same record */
    ink_buf_reset(&out);
    REQUIRE(ink_decode_csv(&d, &h, row, strlen(row), &r) == INK_REJ_NONE);
    REQUIRE(ink_encode_csv_header(&lay, &r, INK_ENC_SEQ, &out) == 0);
    size_t hl = out.len;
    r.seq = 5;
    REQUIRE(ink_encode_csv(&lay, &r, &out) == 0);
    struct ink_csv_header h2;
    REQUIRE(ink_csv_header_parse(&h2, (char *)out.p, hl, &err) == 0);
    CHECK(h2.dim == 4); /* seq is an x column to the reader: only t, key, y, arm are special */
    ink_csv_header_fini(&h2);

    /* record boundaries with a quoted newline */
    const char *two = "1,\"a\nb\",2\n3,c,4\n";
    size_t l;
    CHECK(ink_csv_record_len(two, strlen(two), &l) == 0 && l == 10);
    CHECK(ink_csv_record_len(two, 5, &l) == 1);
    ink_buf_fini(&out);
    ink_csv_header_fini(&h);
    ink_csv_header_fini(&h);
    ink_decoder_fini(&d);
}

/* ink_csv_numbers: every cell a coordinate (bkb arm files), whatever the
 * cells would be called in a header; the CSV cell rules of the decoder. */
TEST(csv_numbers_row)
{
    double v[4] = {0};
    const char *row = " 1.5,\t-2 ,\"3e2\",0\r\n";
    CHECK(ink_csv_numbers(row, strlen(row), v, 4) == 4);
    CHECK(v[0] == 1.5 && v[1] == -2 && v[2] == 300 && v[3] == 0);
    CHECK(ink_csv_numbers(row, strlen(row), NULL, 0) == 4); /* count only */
    double w[2] = {7, 7};
    CHECK(ink_csv_numbers("4,5,6\n", 6, w, 1) == 3 && w[0] == 4 && w[1] == 7); /* cap */
    CHECK(ink_csv_numbers("t,key,y,arm\n", 12, v, 4) == -1); /* a header: not numbers */
    CHECK(ink_csv_numbers("1,,2", 4, v, 4) == -1);           /* empty cell */
    CHECK(ink_csv_numbers("1,2,", 4, v, 4) == -1);           /* trailing empty cell */
    CHECK(ink_csv_numbers("1 2", 3, v, 4) == -1);
    CHECK(ink_csv_numbers("1,inf", 5, v, 4) == -1);
    CHECK(ink_csv_numbers("1,nan", 5, v, 4) == -1);
    CHECK(ink_csv_numbers("1,1e999", 7, v, 4) == -1);
    CHECK(ink_csv_numbers("1,\"2", 4, v, 4) == -1); /* unterminated quote */
    CHECK(ink_csv_numbers("", 0, v, 4) == -1);
}

TEST(cross_format_same_record)
{
    /* msgpack -> JSON -> CSV -> record: x and y bit-identical */
    struct ink_decoder d;
    REQUIRE(ink_decoder_init(&d, NULL) == 0);
    struct ink_rng rng;
    ink_rng_seed(&rng, 3);
    double x[8];
    for (int i = 0; i < 8; i++) x[i] = (ink_rng_uniform(&rng) - 0.5) * pow(10, i - 4);
    struct frame f;
    frame_init(&f);
    pack_sample(&f, 1234, x, 8, 1.0 / 3);
    struct ink_record r;
    REQUIRE(dec_bytes(&d, f.sb.data, f.sb.size, &r) == INK_REJ_NONE);
    struct ink_buf js = {0}, cs = {0};
    REQUIRE(ink_encode_json(&r, 0, &js) == 0);
    struct ink_decoder dj;
    REQUIRE(ink_decoder_init(&dj, NULL) == 0);
    struct ink_record rj;
    REQUIRE(ink_decode_json(&dj, (char *)js.p, js.len, &rj) == INK_REJ_NONE);
    struct ink_csv_layout lay;
    REQUIRE(ink_encode_csv_header(&lay, &rj, 0, &cs) == 0);
    size_t hl = cs.len;
    REQUIRE(ink_encode_csv(&lay, &rj, &cs) == 0);
    struct ink_csv_header h;
    struct ink_err err;
    REQUIRE(ink_csv_header_parse(&h, (char *)cs.p, hl, &err) == 0);
    struct ink_record rc;
    REQUIRE(ink_decode_csv(&d, &h, (char *)cs.p + hl, cs.len - hl, &rc) == INK_REJ_NONE);
    CHECK(rc.dim == 8 && memcmp(rc.x, x, sizeof x) == 0);
    CHECK(rc.y == 1.0 / 3 && rc.t == 1234);
    CHECK(rc.key_len == 8 && memcmp(rc.key, "s-000042", 8) == 0);
    ink_csv_header_fini(&h);
    ink_buf_fini(&js);
    ink_buf_fini(&cs);
    msgpack_sbuffer_destroy(&f.sb);
    ink_decoder_fini(&dj);
    ink_decoder_fini(&d);
}

TEST(operator_fields_out)
{
    struct ink_decoder d;
    REQUIRE(ink_decoder_init(&d, NULL) == 0);
    struct ink_record r;
    REQUIRE(dec_json(&d, "{\"key\":\"seattle\",\"x\":[39.4]}", &r) == INK_REJ_NONE);
    r.seq = 12;
    double m[6] = {1, 2, 3, 4, 5, 6};
    int64_t ia[2] = {-1, 5};
    ink_record_add_f64(&r, "F", 0.231);
    ink_record_add_i64(&r, "n", 12);
    ink_record_add_f64(&r, "deff", NAN);
    ink_record_add_bool(&r, "accepted", true);
    ink_record_add_f64m(&r, "dict", m, 2, 3);
    ink_record_add_i64s(&r, "idx", ia, 2);
    struct ink_value raw = {.type = INK_V_RAW, .raw = {(const uint8_t *)"\x92\x01\xc0", 3}};
    ink_record_add(&r, "raw", raw);
    struct ink_buf out = {0};
    REQUIRE(ink_encode_json(&r, INK_ENC_SEQ, &out) == 0);
    const char *want = "{\"key\":\"seattle\",\"x\":[39.4],\"seq\":12,\"F\":0.231,\"n\":12,"
                       "\"deff\":null,\"accepted\":true,\"dict\":[[1,2],[3,4],[5,6]],"
                       "\"idx\":[-1,5],\"raw\":[1,null]}\n";
    CHECK_MSG(out.len == strlen(want) && memcmp(out.p, want, out.len) == 0, "%.*s", (int)out.len,
              (char *)out.p);
    ink_buf_reset(&out);
    REQUIRE(ink_encode_text(&r, 0, &out) == 0);
    const char *tw = "#12 key=seattle x=[39.4] F=0.231 n=12";
    CHECK_MSG(out.len > strlen(tw) && memcmp(out.p, tw, strlen(tw)) == 0, "%.*s", (int)out.len,
              (char *)out.p);
    /* msgpack out decodes again; the NaN gauge is nil, the matrix 3 arrays of 2 */
    ink_buf_reset(&out);
    REQUIRE(ink_encode_msgpack(&r, 0, &out) == 0);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    REQUIRE(msgpack_unpack_next(&up, (char *)out.p, out.len, &off) == MSGPACK_UNPACK_SUCCESS);
    CHECK(off == out.len && up.data.type == MSGPACK_OBJECT_MAP && up.data.via.map.size == 9);
    for (uint32_t i = 0; i < up.data.via.map.size; i++) {
        msgpack_object_kv *kv = &up.data.via.map.ptr[i];
        if (kv->key.via.str.size == 4 && !memcmp(kv->key.via.str.ptr, "deff", 4))
            CHECK(kv->val.type == MSGPACK_OBJECT_NIL);
        if (kv->key.via.str.size == 4 && !memcmp(kv->key.via.str.ptr, "dict", 4))
            CHECK(kv->val.type == MSGPACK_OBJECT_ARRAY && kv->val.via.array.size == 3 &&
                  kv->val.via.array.ptr[2].via.array.size == 2 &&
                  kv->val.via.array.ptr[2].via.array.ptr[1].via.f64 == 6);
    }
    msgpack_unpacked_destroy(&up);
    ink_buf_fini(&out);
    ink_decoder_fini(&d);
}

TEST(encoder_bytes_match_msgpack_c)
{
    /* integers in their smallest form and str8/16/32 exactly as msgpack-c
     * writes them, so a passthrough reproduces msgpack-c producers' frames */
    static const int64_t ints[] = {
        0,         1,  127, 128, 255,  256,  65535,  65536,  4294967295LL, 4294967296LL,
        INT64_MAX, -1, -32, -33, -128, -129, -32768, -32769, INT32_MIN,    (int64_t)INT32_MIN - 1,
        INT64_MIN};
    static const size_t lens[] = {0, 31, 32, 255, 256, 65535, 65536};
    static char keybuf[65536];
    memset(keybuf, 'k', sizeof keybuf);
    struct ink_buf out = {0};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        for (size_t j = 0; j < sizeof lens / sizeof *lens; j++) {
            struct frame f;
            frame_init(&f);
            msgpack_pack_map(&f.pk, 3);
            pk_str(&f.pk, "t");
            msgpack_pack_int64(&f.pk, ints[i]);
            pk_str(&f.pk, "key");
            msgpack_pack_str(&f.pk, lens[j]);
            msgpack_pack_str_body(&f.pk, keybuf, lens[j]);
            pk_str(&f.pk, "arm");
            msgpack_pack_int64(&f.pk, -(ints[i] / 2) /* not -INT64_MIN */);
            struct ink_record r = {0};
            r.flags = INK_HAS_T | INK_HAS_KEY | INK_HAS_ARM;
            r.t = ints[i];
            r.arm = -(ints[i] / 2);
            r.key = keybuf;
            r.key_len = (uint32_t)lens[j];
            ink_buf_reset(&out);
            REQUIRE(ink_encode_msgpack(&r, 0, &out) == 0);
            CHECK_MSG(out.len == f.sb.size && memcmp(out.p, f.sb.data, out.len) == 0,
                      "t=%lld key of %zu bytes", (long long)ints[i], lens[j]);
            msgpack_sbuffer_destroy(&f.sb);
        }
    }
    ink_buf_fini(&out);
}

/* ---- hostile input ---- */

TEST(hostile_msgpack)
{
    struct ink_decoder d;
    struct ink_limits lim = {
        .max_frame = 65536, .max_depth = 16, .max_dim = 1024, .max_str = 64, .max_extra = 256};
    REQUIRE(ink_decoder_init(&d, &lim) == 0);
    struct ink_record r;
    struct frame f;
    frame_init(&f);
    double x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    pack_sample(&f, 1, x, 8, 0.5);
    count_start();

    /* truncated: every proper prefix of a valid frame */
    for (size_t n = 0; n < f.sb.size; n++)
        CHECK_REJ(dec_bytes(&d, f.sb.data, n, &r), INK_REJ_TRUNCATED);
    CHECK_REJ(dec_bytes(&d, f.sb.data, f.sb.size, &r), INK_REJ_NONE);

    /* declared 2^32-1 elements in 5 bytes, top level and nested */
    CHECK_REJ(dec_bytes(&d, "\xdd\xff\xff\xff\xff", 5, &r), INK_REJ_TRUNCATED);
    CHECK_REJ(dec_bytes(&d, "\xdf\xff\xff\xff\xff", 5, &r), INK_REJ_TRUNCATED);
    CHECK_REJ(dec_bytes(&d, "\x81\xa1x\xdd\xff\xff\xff\xff", 8, &r), INK_REJ_TRUNCATED);
    CHECK_REJ(dec_bytes(&d, "\x81\xa1k\xdb\xff\xff\xff\xff", 8, &r), INK_REJ_TRUNCATED);
    CHECK_REJ(dec_bytes(&d, "\x81\xa1k\xc6\x7f\xff\xff\xff", 8, &r), INK_REJ_TRUNCATED);
    CHECK_REJ(dec_bytes(&d, "\x81\xa1k\xc9\x7f\xff\xff\xff\x01", 9, &r), INK_REJ_TRUNCATED);

    /* 100-deep nesting */
    uint8_t deep[120];
    size_t dn = 0;
    deep[dn++] = 0x81, deep[dn++] = 0xa1, deep[dn++] = 'a';
    for (int i = 0; i < 99; i++) deep[dn++] = 0x91;
    deep[dn++] = 0x01;
    CHECK_REJ(dec_bytes(&d, deep, dn, &r), INK_REJ_DEPTH);
    CHECK_REJ(dec_bytes(&d, deep + 3, dn - 3, &r), INK_REJ_DEPTH); /* top-level arrays too */

    /* NaN / Inf */
    CHECK_REJ(dec_bytes(&d, "\x81\xa1x\x91\xcb\x7f\xf8\0\0\0\0\0\0", 13, &r), INK_REJ_NONFINITE);
    CHECK_REJ(dec_bytes(&d, "\x81\xa1x\x91\xca\x7f\xc0\0\0", 9, &r), INK_REJ_NONFINITE);
    CHECK_REJ(dec_bytes(&d, "\x81\xa1y\xcb\xff\xf0\0\0\0\0\0\0", 12, &r), INK_REJ_NONFINITE);

    /* a string where a number belongs, and other wrong types */
    CHECK_REJ(dec_bytes(&d,
                        "\x81\xa1x\x91\xa1"
                        "1",
                        6, &r),
              INK_REJ_TYPE);
    CHECK_REJ(dec_bytes(&d,
                        "\x81\xa1y\xa1"
                        "1",
                        5, &r),
              INK_REJ_TYPE);
    CHECK_REJ(dec_bytes(&d, "\x81\xa1x\x01", 4, &r), INK_REJ_TYPE); /* scalar x */
    CHECK_REJ(dec_bytes(&d, "\x81\xa1t\xcb\x3f\xf8\0\0\0\0\0\0", 12, &r), INK_REJ_TYPE);
    CHECK_REJ(dec_bytes(&d, "\x81\xa1t\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 12, &r), INK_REJ_TYPE);
    CHECK_REJ(dec_bytes(&d, "\x81\xa3key\x05", 6, &r), INK_REJ_TYPE);
    CHECK_REJ(dec_bytes(&d, "\x81\xa3seq\xff", 6, &r), INK_REJ_TYPE);
    CHECK_REJ(dec_bytes(&d, "\x81\x01\x02", 3, &r), INK_REJ_TYPE); /* non-string key */

    /* oversized frame: rejected on its length alone */
    static uint8_t big[70000];
    CHECK_REJ(dec_bytes(&d, big, sizeof big, &r), INK_REJ_TOO_LARGE);

    /* not a map, malformed, trailing bytes, duplicates */
    CHECK_REJ(dec_bytes(&d, "\x93\x01\x02\x03", 4, &r), INK_REJ_NOT_MAP);
    CHECK_REJ(dec_bytes(&d,
                        "\xa3"
                        "abc",
                        4, &r),
              INK_REJ_NOT_MAP);
    CHECK_REJ(dec_bytes(&d, "\x81\xa1x\xc1", 4, &r), INK_REJ_DECODE);
    CHECK_REJ(dec_bytes(&d, "\x80\x80", 2, &r), INK_REJ_DECODE);
    CHECK_REJ(dec_bytes(&d, "\x82\xa1y\x01\xa1y\x02", 7, &r), INK_REJ_DECODE);

    /* caps: dim, string length, extras */
    static uint8_t wide[1100 * 1 + 16];
    size_t wn = 0;
    wide[wn++] = 0x81, wide[wn++] = 0xa1, wide[wn++] = 'x';
    wide[wn++] = 0xdc, wide[wn++] = 1025 >> 8, wide[wn++] = 1025 & 0xff;
    for (int i = 0; i < 1025; i++) wide[wn++] = 0x01;
    CHECK_REJ(dec_bytes(&d, wide, wn, &r), INK_REJ_DIM);
    uint8_t longkey[80] = {0x81, 0xa3, 'k', 'e', 'y', 0xd9, 65};
    memset(longkey + 7, 'a', 65);
    CHECK_REJ(dec_bytes(&d, longkey, 72, &r), INK_REJ_TOO_BIG);
    uint8_t ext[300] = {0x82, 0xa1, 'a', 0xc4, 200}; /* two extras of 205 bytes > 256 */
    size_t en = 5 + 200;
    ext[en++] = 0xa1, ext[en++] = 'b', ext[en++] = 0xc4, ext[en++] = 60;
    en += 60;
    CHECK_REJ(dec_bytes(&d, ext, en, &r), INK_REJ_TOO_BIG);

    count_stop();
    if (COUNT_ALLOC)
        CHECK_MSG(n_alloc == 0, "%zu allocations (largest %zu)", n_alloc, max_alloc);
    else
        printf("  (allocation counting skipped under ASan)\n");
    msgpack_sbuffer_destroy(&f.sb);
    ink_decoder_fini(&d);
}

TEST(hostile_json)
{
    struct ink_decoder d;
    struct ink_limits lim = {.max_frame = 4096, .max_depth = 16, .max_str = 64, .max_extra = 128};
    REQUIRE(ink_decoder_init(&d, &lim) == 0);
    struct ink_record r;
    count_start();
    CHECK_REJ(dec_json(&d, "{\"x\":[1,2", &r), INK_REJ_TRUNCATED);
    CHECK_REJ(dec_json(&d, "{\"x\":[NaN]}", &r), INK_REJ_NONFINITE);
    CHECK_REJ(dec_json(&d, "{\"y\":-Infinity}", &r), INK_REJ_NONFINITE);
    CHECK_REJ(dec_json(&d, "{\"x\":[1e400]}", &r), INK_REJ_NONFINITE);
    CHECK_REJ(dec_json(&d, "{\"x\":[\"1\"]}", &r), INK_REJ_TYPE);
    CHECK_REJ(dec_json(&d, "{\"x\":1}", &r), INK_REJ_TYPE);
    CHECK_REJ(dec_json(&d, "{\"y\":\"0.5\"}", &r), INK_REJ_TYPE);
    CHECK_REJ(dec_json(&d, "{\"t\":1.5}", &r), INK_REJ_TYPE);
    CHECK_REJ(dec_json(&d, "{\"arm\":100000000000000000000}", &r), INK_REJ_TYPE);
    CHECK_REJ(dec_json(&d, "{\"key\":[]}", &r), INK_REJ_TYPE);
    CHECK_REJ(dec_json(&d, "[1,2]", &r), INK_REJ_NOT_MAP);
    CHECK_REJ(dec_json(&d, "3", &r), INK_REJ_NOT_MAP);
    CHECK_REJ(dec_json(&d, "{\"x\":[1],}", &r), INK_REJ_DECODE);
    CHECK_REJ(dec_json(&d, "{\"x\":[1],\"x\":[2]}", &r), INK_REJ_DECODE);
    CHECK_REJ(dec_json(&d, "{\"x\":[1]} {}", &r), INK_REJ_DECODE);
    CHECK_REJ(
        dec_json(
            &d,
            "{\"key\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
            &r),
        INK_REJ_TOO_BIG);
    char line[8192];
    int n = snprintf(line, sizeof line, "{\"a\":\"");
    memset(line + n, 'z', 150);
    snprintf(line + n + 150, sizeof line - (size_t)n - 150, "\"}");
    CHECK_REJ(dec_json(&d, line, &r), INK_REJ_TOO_BIG);
    /* 100-deep: rejected by the pre-scan, before jansson recurses */
    n = snprintf(line, sizeof line, "{\"a\":");
    for (int i = 0; i < 99; i++) line[n++] = '[';
    for (int i = 0; i < 99; i++) line[n++] = ']';
    line[n++] = '}', line[n] = '\0';
    CHECK_REJ(dec_json(&d, line, &r), INK_REJ_DEPTH);
    /* brackets inside strings do not count */
    CHECK_REJ(dec_json(&d, "{\"a\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}", &r), INK_REJ_NONE);
    memset(line, ' ', 5000);
    memcpy(line, "{}", 2);
    line[5000] = '\0';
    CHECK_REJ(dec_json(&d, line, &r), INK_REJ_TOO_LARGE);
    count_stop();
    if (COUNT_ALLOC) /* jansson allocates per line, but only in proportion to the line */
        CHECK_MSG(max_alloc <= 4096, "largest allocation %zu", max_alloc);
    ink_decoder_fini(&d);
}

TEST(hostile_csv)
{
    struct ink_decoder d;
    REQUIRE(ink_decoder_init(&d, NULL) == 0);
    struct ink_csv_header h;
    struct ink_err err;
    REQUIRE(ink_csv_header_parse(&h, "t,key,a,b,y\n", 12, &err) == 0);
    struct ink_record r;
#define CSV(s) ink_decode_csv(&d, &h, s, strlen(s), &r)
    count_start();
    CHECK_REJ(CSV("1,k,1,2\n"), INK_REJ_DECODE);
    CHECK_REJ(CSV("1,k,1,2,3,4\n"), INK_REJ_DECODE);
    CHECK_REJ(CSV("1,\"k,1,2,3\n"), INK_REJ_DECODE);
    CHECK_REJ(CSV("1,\"k\"x,1,2,3\n"), INK_REJ_DECODE);
    CHECK_REJ(CSV("1,k,nan,2,3\n"), INK_REJ_NONFINITE);
    CHECK_REJ(CSV("1,k,1,2,inf\n"), INK_REJ_NONFINITE);
    CHECK_REJ(CSV("1,k,1e999,2,3\n"), INK_REJ_NONFINITE);
    CHECK_REJ(CSV("1,k,abc,2,3\n"), INK_REJ_TYPE);
    CHECK_REJ(CSV("1,k,,2,3\n"), INK_REJ_TYPE);
    CHECK_REJ(CSV("1.5,k,1,2,3\n"), INK_REJ_TYPE);
    CHECK_REJ(CSV("99999999999999999999,k,1,2,3\n"), INK_REJ_TYPE);
    CHECK_REJ(CSV("1,k,1,2,x\n"), INK_REJ_TYPE);
    CHECK_REJ(CSV(" 1 ,k, 1 ,2,3\n"), INK_REJ_NONE);
    count_stop();
    if (COUNT_ALLOC) CHECK_MSG(n_alloc == 0, "%zu allocations", n_alloc);
    CHECK(ink_line_blank(" \r\n", 3) && !ink_line_blank(" ,\n", 3));
    ink_csv_header_fini(&h);
    CHECK(ink_csv_header_parse(&h, "t,a,t\n", 6, &err) == INK_EPARSE);
    CHECK(ink_csv_header_parse(&h, "\"a,b\n", 5, &err) == INK_EPARSE);
    CHECK(ink_csv_header_parse(&h, "\n", 1, &err) == INK_EPARSE);
    struct ink_limits small = {.max_dim = 1};
    struct ink_decoder d1;
    REQUIRE(ink_decoder_init(&d1, &small) == 0);
    REQUIRE(ink_csv_header_parse(&h, "a,b\n", 4, &err) == 0);
    CHECK(ink_decode_csv(&d1, &h, "1,2\n", 4, &r) == INK_REJ_DIM);
    ink_csv_header_fini(&h);
    ink_decoder_fini(&d1);
    ink_decoder_fini(&d);
#undef CSV
}

TEST(depth_limit_is_the_same_in_both_formats)
{
    /* max_depth 16: the top-level map and 15 nested arrays pass, 16 do not */
    struct ink_decoder d;
    REQUIRE(ink_decoder_init(&d, NULL) == 0);
    struct ink_record r;
    for (int nest = 15; nest <= 16; nest++) {
        uint8_t mp[64];
        size_t n = 0;
        mp[n++] = 0x81, mp[n++] = 0xa1, mp[n++] = 'a';
        for (int i = 0; i < nest; i++) mp[n++] = 0x91;
        mp[n++] = 0x01;
        char js[128];
        int k = snprintf(js, sizeof js, "{\"a\":");
        for (int i = 0; i < nest; i++) js[k++] = '[';
        js[k++] = '1';
        for (int i = 0; i < nest; i++) js[k++] = ']';
        js[k++] = '}', js[k] = '\0';
        enum ink_reject want = nest == 15 ? INK_REJ_NONE : INK_REJ_DEPTH;
        CHECK_REJ(dec_bytes(&d, mp, n, &r), want);
        CHECK_REJ(dec_json(&d, js, &r), want);
    }
    ink_decoder_fini(&d);
}

TEST(stream_scan)
{
    struct frame f;
    frame_init(&f);
    double x[2] = {1, 2};
    pack_sample(&f, 1, x, 2, 0.5);
    size_t one = f.sb.size;
    pack_sample(&f, 2, x, 2, 0.5);
    size_t l = 0;
    enum ink_reject why;
    CHECK(ink_msgpack_scan((uint8_t *)f.sb.data, f.sb.size, 16, &l, &why) == 0 && l == one);
    CHECK(ink_msgpack_scan((uint8_t *)f.sb.data + one, f.sb.size - one, 16, &l, &why) == 0 &&
          l == one);
    CHECK(ink_msgpack_scan((uint8_t *)f.sb.data, one - 1, 16, &l, &why) == 1);
    CHECK(ink_msgpack_scan((const uint8_t *)"\xc1", 1, 16, &l, &why) == -1 &&
          why == INK_REJ_DECODE);
    CHECK(ink_msgpack_scan((const uint8_t *)"\x91\x91\x91\x01", 4, 2, &l, &why) == -1 &&
          why == INK_REJ_DEPTH);
    CHECK(ink_msgpack_scan((const uint8_t *)"\x91\x91\x01", 3, 2, &l, &why) == 0 && l == 3);
    CHECK(ink_msgpack_scan((const uint8_t *)"\xd8\x01", 2, 2, &l, &why) == 1); /* fixext16 */
    msgpack_sbuffer_destroy(&f.sb);
}

/* ---- garbage never crashes; what decodes, re-encodes and decodes equal ---- */

static void check_consistent(struct ink_decoder *d, const struct ink_record *r, const uint8_t *in,
                             size_t inlen, struct ink_buf *out)
{
    /* pointers stay inside the input or the scratch */
    if (r->dim) CHECK(r->x == d->x && r->dim <= d->lim.max_dim);
    if (r->extra_len) {
        bool in_input = r->extra >= in && r->extra + r->extra_len <= in + inlen;
        bool in_scratch =
            r->extra >= d->extra && r->extra + r->extra_len <= d->extra + d->lim.max_extra;
        CHECK(in_input || in_scratch);
    }
    ink_buf_reset(out);
    REQUIRE(ink_encode_msgpack(r, INK_ENC_SEQ, out) == 0);
    struct ink_decoder d2;
    REQUIRE(ink_decoder_init(&d2, &d->lim) == 0);
    struct ink_record r2;
    enum ink_reject rr = ink_decode_msgpack(&d2, out->p, out->len, &r2);
    CHECK_MSG(rr == INK_REJ_NONE || rr == INK_REJ_TOO_LARGE, "re-decode: %s (%s)",
              ink_reject_name(rr), d2.why);
    if (rr == INK_REJ_NONE) {
        CHECK(r2.flags == (r->flags | INK_HAS_SEQ) && r2.dim == r->dim);
        CHECK(r->dim == 0 || memcmp(r2.x, r->x, r->dim * sizeof(double)) == 0);
        CHECK(r2.extra_n == r->extra_n && r2.extra_len == r->extra_len);
    }
    /* JSON out reads back to the same known fields. It may be refused only
     * for what JSON cannot say: duplicate or NUL-holding keys in nested maps
     * (decode), float32 / bin growing past the caps, or an unsigned extra
     * beyond int64 (written exactly; jansson reads int64 only). */
    ink_buf_reset(out);
    CHECK(ink_encode_json(r, 0, out) == 0);
    rr = ink_decode_json(&d2, (const char *)out->p, out->len, &r2);
    bool u64 = rr == INK_REJ_TYPE && strstr(d2.why, "too big integer"); /* jansson: int64 only */
    CHECK_MSG(rr == INK_REJ_NONE || rr == INK_REJ_DECODE || rr == INK_REJ_TOO_BIG ||
                  rr == INK_REJ_TOO_LARGE || u64,
              "JSON re-decode: %s (%s) of %.*s", ink_reject_name(rr), d2.why, (int)out->len,
              (char *)out->p);
    if (rr == INK_REJ_NONE) {
        CHECK(r2.flags == (r->flags & ~(uint32_t)INK_HAS_SEQ) && r2.dim == r->dim);
        for (uint32_t i = 0; i < r->dim && i < r2.dim; i++)
            CHECK_MSG(memcmp(&r2.x[i], &r->x[i], 8) == 0, "x[%u] %.17g -> %.17g", i, r->x[i],
                      r2.x[i]);
        CHECK(!(r->flags & INK_HAS_Y) || memcmp(&r2.y, &r->y, 8) == 0);
        CHECK(r2.t == r->t && r2.arm == r->arm && r2.extra_n == r->extra_n);
        bool ascii = true; /* invalid UTF-8 comes back as U+FFFD */
        for (uint32_t i = 0; i < r->key_len; i++) ascii &= (unsigned char)r->key[i] < 0x80;
        if (ascii)
            CHECK(r2.key_len == r->key_len && (!r->key_len || !memcmp(r2.key, r->key, r->key_len)));
        CHECK(r2.op_len == r->op_len && (!r->op_len || !memcmp(r2.op, r->op, r->op_len)));
    }
    ink_decoder_fini(&d2);
    ink_buf_reset(out);
    CHECK(ink_encode_text(r, 0, out) == 0);
}

TEST(garbage_never_crashes)
{
    struct ink_decoder d;
    struct ink_limits lim = {
        .max_frame = 4096, .max_depth = 8, .max_dim = 64, .max_str = 32, .max_extra = 512};
    REQUIRE(ink_decoder_init(&d, &lim) == 0);
    struct ink_rng rng;
    ink_rng_seed(&rng, 2024);
    struct frame f;
    frame_init(&f);
    msgpack_pack_map(&f.pk, 6);
    pk_str(&f.pk, "x");
    msgpack_pack_array(&f.pk, 3);
    msgpack_pack_double(&f.pk, 1.5);
    msgpack_pack_int(&f.pk, -3);
    msgpack_pack_float(&f.pk, 2.f);
    pk_str(&f.pk, "key");
    pk_str(&f.pk, "abc");
    pk_str(&f.pk, "m");
    msgpack_pack_map(&f.pk, 1);
    pk_str(&f.pk, "z");
    msgpack_pack_array(&f.pk, 2);
    msgpack_pack_bin(&f.pk, 2);
    msgpack_pack_bin_body(&f.pk, "\xff\x00", 2);
    msgpack_pack_ext(&f.pk, 5, 1);
    msgpack_pack_ext_body(&f.pk, "hello", 5);
    pk_str(&f.pk, "y");
    msgpack_pack_double(&f.pk, 0.25);
    pk_str(&f.pk, "t");
    msgpack_pack_int64(&f.pk, -5);
    pk_str(&f.pk, "q");
    msgpack_pack_uint64(&f.pk, UINT64_MAX);
    const uint8_t *valid = (const uint8_t *)f.sb.data;
    size_t vlen = f.sb.size;
    {
        struct ink_record r0;
        enum ink_reject r0r = ink_decode_msgpack(&d, valid, vlen, &r0);
        CHECK_MSG(r0r == INK_REJ_NONE, "%s %s", ink_reject_name(r0r), d.why);
    }

    static const uint8_t interesting[] = {0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0,
                                          0xc1, 0xc4, 0xc7, 0xca, 0xcb, 0xcf, 0xd3, 0xd4, 0xd8,
                                          0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff};
    uint8_t buf[256];
    struct ink_buf out = {0};
    int iters = (int)(100000 * test_scale());
    int ok = 0;
    for (int it = 0; it < iters; it++) {
        size_t n;
        if (it & 1) { /* a mutation of the valid frame */
            n = vlen;
            memcpy(buf, valid, n);
            int muts = 1 + (int)(ink_rng_next(&rng) % 3);
            for (int m = 0; m < muts; m++) {
                size_t at = ink_rng_next(&rng) % n;
                switch (ink_rng_next(&rng) % 4) {
                case 0:
                    buf[at] ^= (uint8_t)(1u << (ink_rng_next(&rng) % 8));
                    break;
                case 1:
                    buf[at] = interesting[ink_rng_next(&rng) % sizeof interesting];
                    break;
                case 2:
                    n = at + 1;
                    break;
                default:
                    buf[at] = (uint8_t)ink_rng_next(&rng);
                    break;
                }
            }
        } else { /* random bytes, biased to msgpack type bytes */
            n = ink_rng_next(&rng) % 64;
            for (size_t i = 0; i < n; i++)
                buf[i] = ink_rng_next(&rng) & 1
                             ? interesting[ink_rng_next(&rng) % sizeof interesting]
                             : (uint8_t)ink_rng_next(&rng);
            if (n && (ink_rng_next(&rng) & 1)) buf[0] = 0x80 | (buf[0] & 0x0f); /* a map */
        }
        /* exact-size heap copy so ASan sees any over-read */
        uint8_t *heap = malloc(n ? n : 1);
        memcpy(heap, buf, n);
        struct ink_record r;
        enum ink_reject rr = ink_decode_msgpack(&d, heap, n, &r);
        CHECK((unsigned)rr < INK_REJ__COUNT);
        if (rr == INK_REJ_NONE) {
            ok++;
            check_consistent(&d, &r, heap, n, &out);
        }
        free(heap);
        if (ink__failures > 20) break;
    }
    printf("  msgpack: %d inputs, %d decoded\n", iters, ok);

    /* JSON and CSV lines: mutations of valid lines */
    static const char *jl =
        "{\"t\":1,\"key\":\"a\\u00e9\",\"x\":[1.5,-2e3],\"y\":0.5,\"m\":{\"z\":[1,null]}}";
    static const char *cl = "1,\"k,\"\"1\",2.5,-3,4";
    static const uint8_t jchars[] = "{}[]\",:\\0123456789.eE-+ntfaNIu";
    struct ink_csv_header h;
    struct ink_err err;
    REQUIRE(ink_csv_header_parse(&h, "t,key,a,b,y", 11, &err) == 0);
    int jok = 0, cok = 0, jiters = iters / 5;
    for (int it = 0; it < jiters; it++) {
        const char *src = it & 1 ? cl : jl;
        size_t n = strlen(src);
        memcpy(buf, src, n);
        int muts = 1 + (int)(ink_rng_next(&rng) % 3);
        for (int m = 0; m < muts; m++) {
            size_t at = ink_rng_next(&rng) % n;
            switch (ink_rng_next(&rng) % 3) {
            case 0:
                buf[at] = jchars[ink_rng_next(&rng) % (sizeof jchars - 1)];
                break;
            case 1:
                n = at + 1;
                break;
            default:
                buf[at] = (uint8_t)ink_rng_next(&rng);
                break;
            }
        }
        char *heap = malloc(n ? n : 1);
        memcpy(heap, buf, n);
        struct ink_record r;
        enum ink_reject rr =
            it & 1 ? ink_decode_csv(&d, &h, heap, n, &r) : ink_decode_json(&d, heap, n, &r);
        CHECK((unsigned)rr < INK_REJ__COUNT);
        if (rr == INK_REJ_NONE) {
            *(it & 1 ? &cok : &jok) += 1;
            check_consistent(&d, &r, (const uint8_t *)heap, n, &out);
        }
        free(heap);
        if (ink__failures > 20) break;
    }
    printf("  json: %d lines, %d decoded; csv: %d lines, %d decoded\n", jiters / 2, jok, jiters / 2,
           cok);
    ink_csv_header_fini(&h);
    ink_buf_fini(&out);
    msgpack_sbuffer_destroy(&f.sb);
    ink_decoder_fini(&d);
}

/* ---- steady state allocates nothing; micro-benchmark (printed, not asserted) ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

TEST(bench_msgpack_110_bytes)
{
    struct ink_decoder d;
    REQUIRE(ink_decoder_init(&d, NULL) == 0);
    double x[8] = {0.125, -1.5, 3.25, 4e-3, 17.0, -0.0625, 2.5e5, 1.0 / 3};
    struct frame f;
    frame_init(&f);
    pack_sample(&f, 1700000000000000000LL, x, 8, 0.75);
    const uint8_t *in = (const uint8_t *)f.sb.data;
    size_t len = f.sb.size;
    struct ink_buf out = {0};
    struct ink_record r;
    REQUIRE(ink_decode_msgpack(&d, in, len, &r) == INK_REJ_NONE);
    REQUIRE(ink_encode_msgpack(&r, 0, &out) == 0);
    CHECK(out.len == len && memcmp(out.p, in, len) == 0); /* passthrough reproduces the frame */

    long iters = (long)(2000000 * test_scale());
    count_start();
    double t0 = now_s();
    for (long i = 0; i < iters; i++) {
        ink_buf_reset(&out);
        if (ink_decode_msgpack(&d, in, len, &r) != INK_REJ_NONE) break;
        if (ink_encode_msgpack(&r, 0, &out)) break;
    }
    double t1 = now_s();
    count_stop();
    if (COUNT_ALLOC) CHECK_MSG(n_alloc == 0, "%zu allocations in steady state", n_alloc);
    double ink_rate = (double)iters / (t1 - t0);

    long decs = 0;
    t0 = now_s();
    for (long i = 0; i < iters; i++) decs += ink_decode_msgpack(&d, in, len, &r) == INK_REJ_NONE;
    t1 = now_s();
    double dec_rate = (double)decs / (t1 - t0);

    /* reference: msgpack-c unpack into a persistent zone, pack the object */
    msgpack_zone zone;
    msgpack_zone_init(&zone, 2048);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    t0 = now_s();
    for (long i = 0; i < iters; i++) {
        msgpack_object obj;
        size_t off = 0;
        msgpack_zone_clear(&zone);
        if (msgpack_unpack((const char *)in, len, &off, &zone, &obj) != MSGPACK_UNPACK_SUCCESS)
            break;
        sb.size = 0;
        msgpack_pack_object(&pk, obj);
    }
    t1 = now_s();
    double ref_rate = (double)iters / (t1 - t0);
    printf("  %zu-byte 8-dim frame: ink decode+encode %.2f M/s, ink decode %.2f M/s, "
           "msgpack-c unpack(zone)+pack_object %.2f M/s\n",
           len, ink_rate / 1e6, dec_rate / 1e6, ref_rate / 1e6);

    /* JSON Lines, for the record */
    ink_buf_reset(&out);
    REQUIRE(ink_encode_json(&r, 0, &out) == 0);
    char line[512];
    size_t ll = out.len;
    memcpy(line, out.p, ll);
    struct ink_buf jo = {0};
    long jit = iters / 20;
    t0 = now_s();
    for (long i = 0; i < jit; i++) {
        ink_buf_reset(&jo);
        if (ink_decode_json(&d, line, ll, &r) != INK_REJ_NONE) break;
        ink_encode_json(&r, 0, &jo);
    }
    t1 = now_s();
    printf("  JSON line of %zu bytes: decode+encode %.3f M/s\n", ll, (double)jit / (t1 - t0) / 1e6);
    ink_buf_fini(&jo);
    msgpack_sbuffer_destroy(&sb);
    msgpack_zone_destroy(&zone);
    ink_buf_fini(&out);
    msgpack_sbuffer_destroy(&f.sb);
    ink_decoder_fini(&d);
}

/* Fuzz finding (tests/fuzz/regress/codec/json_encode_null_extra): a record
 * without extras has extra == NULL, and the encoders computed NULL + 0 (UB). */
TEST(encode_record_without_extras)
{
    static const uint8_t frame[] = {0x81, 0xa1, 'x', 0x93, 0x01, 0x02, 0x03};
    struct ink_decoder d;
    REQUIRE(ink_decoder_init(&d, NULL) == 0);
    struct ink_record r;
    REQUIRE(ink_decode_msgpack(&d, frame, sizeof frame, &r) == INK_REJ_NONE);
    r.extra = NULL;
    r.extra_len = 0;
    r.extra_n = 0;
    struct ink_buf out = {0};
    CHECK(ink_encode_json(&r, 0, &out) == 0);
    CHECK(ink_encode_msgpack(&r, 0, &out) == 0);
    CHECK(ink_encode_text(&r, 0, &out) == 0);
    ink_buf_fini(&out);
    ink_decoder_fini(&d);
}

/* fields: time formats (engine/fields.h), against values from Python's
 * calendar.timegm. */
TEST(rfc3339_parse)
{
    int64_t t = 0;
    CHECK(ink_rfc3339_parse("2026-12-05T10:00:00Z", 20, &t) == 0 && t == 1796464800LL * 1000000000);
    CHECK(ink_rfc3339_parse("2000-02-29T12:00:00.000000001Z", 30, &t) == 0 &&
          t == 951825600LL * 1000000000 + 1);
    CHECK(ink_rfc3339_parse("1969-12-31T23:59:59Z", 20, &t) == 0 && t == -1000000000LL);
    CHECK(ink_rfc3339_parse("2026-12-05T11:30:00.25+01:30", 28, &t) == 0 &&
          t == 1796464800LL * 1000000000 + 250000000);
    CHECK(ink_rfc3339_parse("2026-12-05t10:00:00z", 20, &t) == 0); /* lower case is RFC 3339 */
    static const char *const bad[] = {"2026-12-05",                /* a date only */
                                      "2026-12-05T10:00:00",       /* no offset */
                                      "2026-02-29T00:00:00Z",      /* not a leap year */
                                      "2026-13-01T00:00:00Z",      /* month */
                                      "2026-12-05T24:00:00Z",      /* hour */
                                      "2026-12-05T10:00:00.Z",     /* empty fraction */
                                      "2026-12-05T10:00:00+1:00",
                                      "2026-12-05T10:00:00Zjunk",
                                      "yesterday",
                                      ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_MSG(ink_rfc3339_parse(bad[i], strlen(bad[i]), &t) == -1, "%s", bad[i]);
}

int main(int argc, char **argv)
{
    return ink_test_main(argc, argv);
}
