/* tests/io/test_loader.c - the batch loader (src/io/loader.c): every sample against a host
 * reference of pad + crop + flip + normalise for the draws the loader reports, labels, the
 * epoch's order a permutation (identity without shuffle), prefetching on and off giving the
 * same bytes, seeking to (epoch, batch) equal to reading there, drop-last and the short last
 * batch, the draws spread over crops and flips, and bad arguments.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

enum { N = 37, C = 2, H = 5, W = 6, BS = 8 };
static uint8_t images[N * C * H * W], labels[N];
static const float MEAN[C] = {0.25f, 0.5f}, STD[C] = {0.5f, 0.2f};

static void fill_set(void) {
    uint64_t z = 12345;
    for (size_t i = 0; i < sizeof images; i++) {
        z = z * 6364136223846793005ull + 1442695040888963407ull;
        images[i] = (uint8_t)(z >> 56);
    }
    for (int i = 0; i < N; i++)
        labels[i] = (uint8_t)(i % 10);
}

static clg_image_set the_set(void) { return (clg_image_set){images, labels, N, C, H, W}; }

static clg_loader *make(clg_context *ctx, bool prefetch, bool drop_last, int pad, bool flip) {
    clg_loader_params p = clg_loader_default_params();
    p.batch_size = BS, p.seed = 99, p.mean = MEAN, p.std = STD, p.crop_padding = pad, p.hflip = flip;
    p.prefetch = prefetch, p.drop_last = drop_last;
    const clg_image_set set = the_set();
    clg_loader *l = NULL;
    REF_OK(ctx, clg_loader_create(ctx, &set, &p, &l));
    return l;
}

/* One epoch's values and labels, batch after batch. */
static int read_epoch(clg_context *ctx, clg_loader *l, float *x, int32_t *y) {
    int total = 0;
    for (;;) {
        clg_tensor *t;
        const int32_t *lab;
        int count;
        REF_OK(ctx, clg_loader_next(l, &t, &lab, &count));
        if (!t) {
            assert_int_equal(count, 0);
            break;
        }
        assert_int_equal(clg_tensor_shape(t)[0], count);
        REF_OK(ctx, clg_tensor_to_host(t, x + (size_t)total * C * H * W, sizeof(float) * (size_t)count * C * H * W));
        memcpy(y + total, lab, sizeof(int32_t) * (size_t)count);
        total += count;
        clg_tensor_free(t);
    }
    return total;
}

static void test_reference(void **state) {
    clg_context *ctx = *state;
    static float x[N * C * H * W];
    int32_t y[N];
    for (int pad = 0; pad <= 2; pad += 2) {
        clg_loader *l = make(ctx, true, false, pad, true);
        for (uint64_t epoch = 0; epoch < 2; epoch++) {
            REF_OK(ctx, clg_loader_seek(l, epoch, 0));
            assert_int_equal(read_epoch(ctx, l, x, y), N);
            int seen[N] = {0};
            for (int pos = 0; pos < N; pos++) {
                const int idx = clg_loader_index_at(l, epoch, pos);
                assert_true(idx >= 0 && idx < N);
                seen[idx]++;
                assert_int_equal(y[pos], labels[idx]);
                int dy, dx;
                bool flip;
                clg_loader_augment_of(l, epoch, idx, &dy, &dx, &flip);
                assert_true(dy >= 0 && dy <= 2 * pad && dx >= 0 && dx <= 2 * pad);
                for (int c = 0; c < C; c++)
                    for (int r = 0; r < H; r++)
                        for (int q = 0; q < W; q++) {
                            /* the padded image's pixel (r + dy, q' + dx), q' mirrored when flipped */
                            const int qq = flip ? W - 1 - q : q;
                            const int sr = r + dy - pad, sq = qq + dx - pad;
                            const double v = sr >= 0 && sr < H && sq >= 0 && sq < W
                                                 ? images[(((size_t)idx * C + c) * H + sr) * W + sq]
                                                 : 0.0;
                            const double want = (v / 255.0 - MEAN[c]) / STD[c];
                            const double got = x[(((size_t)pos * C + c) * H + r) * W + q];
                            /* f32 arithmetic on values of magnitude <= 5: a few ulps */
                            if (fabs(got - want) > 4e-6)
                                fail_msg("epoch %d pos %d c %d (%d,%d): got %.9g want %.9g", (int)epoch, pos, c, r,
                                         q, got, want);
                        }
            }
            for (int i = 0; i < N; i++)
                assert_int_equal(seen[i], 1);
        }
        clg_loader_free(l);
    }
}

static void test_prefetch_and_seek(void **state) {
    clg_context *ctx = *state;
    static float xa[N * C * H * W], xb[N * C * H * W];
    int32_t ya[N], yb[N];
    clg_loader *a = make(ctx, true, false, 2, true), *b = make(ctx, false, false, 2, true);
    for (uint64_t e = 0; e < 3; e++) {
        REF_OK(ctx, clg_loader_seek(a, e, 0));
        REF_OK(ctx, clg_loader_seek(b, e, 0));
        assert_int_equal(read_epoch(ctx, a, xa, ya), N);
        assert_int_equal(read_epoch(ctx, b, xb, yb), N);
        assert_memory_equal(xa, xb, sizeof xa);
        assert_memory_equal(ya, yb, sizeof ya);
    }
    /* seek into the middle of epoch 1: the rest equals the tail of a full read */
    REF_OK(ctx, clg_loader_seek(b, 1, 0));
    read_epoch(ctx, b, xb, yb);
    REF_OK(ctx, clg_loader_seek(a, 1, 3));
    uint64_t epoch;
    int64_t batch;
    clg_loader_position(a, &epoch, &batch);
    assert_true(epoch == 1 && batch == 3);
    const int rest = read_epoch(ctx, a, xa, ya);
    assert_int_equal(rest, N - 3 * BS);
    assert_memory_equal(xa, xb + (size_t)3 * BS * C * H * W, sizeof(float) * (size_t)rest * C * H * W);
    assert_memory_equal(ya, yb + 3 * BS, sizeof(int32_t) * (size_t)rest);
    clg_loader_free(a);
    clg_loader_free(b);
}

static void test_batches_and_order(void **state) {
    clg_context *ctx = *state;
    static float x[N * C * H * W];
    int32_t y[N];
    clg_loader *l = make(ctx, true, true, 0, false);
    assert_int_equal(clg_loader_batches(l), N / BS);
    assert_int_equal(read_epoch(ctx, l, x, y), (N / BS) * BS);
    clg_loader_free(l);
    l = make(ctx, false, false, 0, false);
    assert_int_equal(clg_loader_batches(l), (N + BS - 1) / BS);
    clg_loader_free(l);

    clg_loader_params p = clg_loader_default_params();
    p.shuffle = false, p.batch_size = BS;
    const clg_image_set set = the_set();
    REF_OK(ctx, clg_loader_create(ctx, &set, &p, &l));
    for (int i = 0; i < N; i++)
        assert_int_equal(clg_loader_index_at(l, 5, i), i);
    assert_int_equal(read_epoch(ctx, l, x, y), N);
    for (int i = 0; i < N; i++) /* x / 255 only */
        assert_true(x[(size_t)i * C * H * W] == (float)images[(size_t)i * C * H * W] * (1.0f / 255.0f));
    clg_loader_free(l);

    /* shuffled orders differ between epochs; crops and flips spread */
    l = make(ctx, false, false, 2, true);
    int same = 0, flips = 0, corners[5] = {0};
    for (int i = 0; i < N; i++)
        same += clg_loader_index_at(l, 0, i) == clg_loader_index_at(l, 1, i);
    assert_true(same < N / 2);
    for (int e = 0; e < 8; e++)
        for (int i = 0; i < N; i++) {
            int dy, dx;
            bool f;
            clg_loader_augment_of(l, (uint64_t)e, i, &dy, &dx, &f);
            flips += f;
            corners[dy]++;
        }
    /* 296 draws: a fair coin lands 148 +- 8.6; every offset (p = 1/5) 59 +- 6.9 */
    assert_true(flips > 100 && flips < 196);
    for (int k = 0; k < 5; k++)
        assert_true(corners[k] > 20);
    clg_loader_free(l);
}

/* DistributedSampler: each replica takes positions rank, rank + W, ... of the one permutation
 * padded by its start; shares have ceil(n / W) images. */
static void test_sharding(void **state) {
    clg_context *ctx = *state;
    enum { WORLD = 3, LOCAL = (N + WORLD - 1) / WORLD };
    clg_loader *all = make(ctx, false, false, 0, false);
    for (int r = 0; r < WORLD; r++) {
        clg_loader_params p = clg_loader_default_params();
        p.batch_size = 5, p.seed = 99, p.rank = r, p.world_size = WORLD;
        const clg_image_set set = the_set();
        clg_loader *l = NULL;
        REF_OK(ctx, clg_loader_create(ctx, &set, &p, &l));
        assert_int_equal(clg_loader_batches(l), (LOCAL + 4) / 5);
        for (uint64_t e = 0; e < 2; e++) {
            for (int i = 0; i < LOCAL; i++)
                assert_int_equal(clg_loader_index_at(l, e, i), clg_loader_index_at(all, e, (r + i * WORLD) % N));
            assert_int_equal(clg_loader_index_at(l, e, LOCAL), -1);
        }
        static float x[LOCAL * C * H * W];
        int32_t y[LOCAL];
        assert_int_equal(read_epoch(ctx, l, x, y), LOCAL);
        for (int i = 0; i < LOCAL; i++)
            assert_int_equal(y[i], labels[clg_loader_index_at(l, 0, i)]);
        clg_loader_free(l);
    }
    clg_loader_free(all);
}

static void test_bad_arguments(void **state) {
    clg_context *ctx = *state;
    clg_loader_params p = clg_loader_default_params();
    clg_image_set set = the_set();
    clg_loader *l = (clg_loader *)&p;
    p.batch_size = 0;
    assert_int_equal(clg_loader_create(ctx, &set, &p, &l), CLG_INVALID_ARGUMENT);
    assert_null(l);
    assert_non_null(strstr(clg_context_errmsg(ctx), "batch_size"));
    p = clg_loader_default_params();
    p.mean = MEAN;
    assert_int_equal(clg_loader_create(ctx, &set, &p, &l), CLG_INVALID_ARGUMENT);
    const float bad_std[C] = {1, 0};
    p.std = bad_std;
    assert_int_equal(clg_loader_create(ctx, &set, &p, &l), CLG_INVALID_ARGUMENT);
    p = clg_loader_default_params();
    p.crop_padding = -1;
    assert_int_equal(clg_loader_create(ctx, &set, &p, &l), CLG_INVALID_ARGUMENT);
    p = clg_loader_default_params();
    set.n = 0;
    assert_int_equal(clg_loader_create(ctx, &set, &p, &l), CLG_INVALID_ARGUMENT);
    set = the_set();
    set.c = set.h = set.w = 1 << 30;
    assert_int_equal(clg_loader_create(ctx, &set, &p, &l), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "does not fit"));
    set = the_set();
    set.images = NULL;
    assert_int_equal(clg_loader_create(ctx, &set, &p, &l), CLG_INVALID_ARGUMENT);
    set = the_set();
    p.world_size = 2, p.rank = 2;
    assert_int_equal(clg_loader_create(ctx, &set, &p, &l), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "rank"));
    p = clg_loader_default_params();
    REF_OK(ctx, clg_loader_create(ctx, &set, &p, &l));
    assert_int_equal(clg_loader_seek(l, 0, clg_loader_batches(l) + 1), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_loader_next(l, NULL, NULL, NULL), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_loader_index_at(l, 0, N), -1);
    clg_loader_free(l);
    clg_loader_free(NULL);
}

int main(void) {
    fill_set();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference),
        cmocka_unit_test(test_prefetch_and_seek),
        cmocka_unit_test(test_batches_and_order),
        cmocka_unit_test(test_sharding),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests_name("loader", tests, ref_group_setup, ref_group_teardown);
}
