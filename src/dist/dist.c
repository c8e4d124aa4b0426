/* src/dist/dist.c - data-parallel training over MPI (include/clgrad/dist.h): a duplicated
 * communicator that returns errors, local ranks, the device per rank, rank 0's state
 * broadcast, and gradient averaging by a ring that clgrad drives itself (reduce-scatter then
 * all-gather with MPI_Sendrecv, sums in double, fixed chunks and buckets) so that every rank
 * and every run get the same bits; the same ring sums synchronized batch norm's statistics.
 * Built into libclgrad when MPI is found.
 * Tests: tests/dist/test_dist.c (run under mpirun -np 2).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clgrad/dist.h"
#include "tensor/tensor.h"

enum { BUCKET_DOUBLES = (4 << 20) / 8 }; /* 4 MiB of doubles per bucket */

struct clg_dist {
    MPI_Comm comm; /* our duplicate, MPI_ERRORS_RETURN */
    int rank, world, local_rank;
    double *buf;   /* a bucket of doubles */
    size_t cap;    /* its length */
    void *stage;   /* one gradient's bytes */
    size_t stage_cap;
    uint64_t bytes_sent;
    double seconds;
};

static void mpi_message(int rc, char *buf, size_t len) {
    char text[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(rc, text, &n) != MPI_SUCCESS) snprintf(text, sizeof text, "MPI error %d", rc);
    snprintf(buf, len, "%s", text);
}

static clg_status comm_fail(clg_context *ctx, const clg_dist *d, int rc, const char *call) {
    char text[MPI_MAX_ERROR_STRING];
    mpi_message(rc, text, sizeof text);
    return clg__fail(ctx, CLG_COMM_ERROR, "dist: rank %d of %d: %s: %s", d->rank, d->world, call, text);
}

clg_status clg_dist_create(MPI_Comm comm, clg_dist **out, char *err, size_t err_len) {
    if (!out) return CLG_INVALID_ARGUMENT;
    *out = NULL;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        if (err && err_len) snprintf(err, err_len, "dist: MPI is not initialised (call MPI_Init first)");
        return CLG_INVALID_STATE;
    }
    clg_dist *d = calloc(1, sizeof *d);
    if (!d) return CLG_OUT_OF_HOST_MEMORY;
    int rc = MPI_Comm_dup(comm, &d->comm);
    MPI_Comm local = MPI_COMM_NULL;
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(d->comm, &d->rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(d->comm, &d->world);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &local);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(local, &d->local_rank);
    if (local != MPI_COMM_NULL) MPI_Comm_free(&local);
    if (rc != MPI_SUCCESS) {
        if (err && err_len) {
            char text[MPI_MAX_ERROR_STRING];
            mpi_message(rc, text, sizeof text);
            snprintf(err, err_len, "dist: joining the communicator: %s", text);
        }
        if (d->comm != MPI_COMM_NULL) MPI_Comm_free(&d->comm);
        free(d);
        return CLG_COMM_ERROR;
    }
    *out = d;
    return CLG_OK;
}

void clg_dist_free(clg_dist *d) {
    if (!d) return;
    MPI_Comm_free(&d->comm);
    free(d->buf);
    free(d->stage);
    free(d);
}

int clg_dist_rank(const clg_dist *d) { return d ? d->rank : 0; }
int clg_dist_world_size(const clg_dist *d) { return d ? d->world : 1; }
int clg_dist_local_rank(const clg_dist *d) { return d ? d->local_rank : 0; }

void clg_dist_context_params(const clg_dist *d, clg_context_params *p, char *buf, size_t len) {
    if (!d || !p || !buf || len == 0 || p->device || getenv("CLGRAD_DEVICE")) return;
    cl_platform_id plats[16];
    cl_uint np = 0;
    if (clGetPlatformIDs(16, plats, &np) != CL_SUCCESS) return;
    int count = 0, want = -1;
    for (int pass = 0; pass < 2; pass++) {
        int seen = 0;
        for (cl_uint i = 0; i < np && i < 16; i++) {
            cl_device_id devs[32];
            cl_uint nd = 0;
            if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_ALL, 32, devs, &nd) != CL_SUCCESS) continue;
            for (cl_uint j = 0; j < nd && j < 32; j++) {
                cl_device_type type = 0;
                clGetDeviceInfo(devs[j], CL_DEVICE_TYPE, sizeof type, &type, NULL);
                if ((type & (CL_DEVICE_TYPE_CPU | CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR)) != CL_DEVICE_TYPE_GPU)
                    continue;
                if (pass == 1 && seen == want) {
                    snprintf(buf, len, "%u:%u", i, j);
                    p->device = buf;
                    return;
                }
                seen++;
            }
        }
        count = seen;
        if (count == 0) return;
        want = d->local_rank % count;
    }
}

/* Sum of x[0..len) over the ranks, in place, the same bits everywhere. */
static int ring_allreduce(clg_dist *d, double *x, size_t len, uint64_t *sent) {
    const int W = d->world, r = d->rank;
    if (W == 1 || len == 0) return MPI_SUCCESS;
    const int right = (r + 1) % W, left = (r + W - 1) % W;
    double *tmp = d->buf + len; /* the caller reserved len / W + 1 more */
#define CHUNK_START(c) ((size_t)(c) * len / (size_t)W)
#define CHUNK_LEN(c) (CHUNK_START((c) + 1) - CHUNK_START(c))
    for (int s = 0; s < W - 1; s++) { /* reduce-scatter: rank r ends owning chunk r + 1 */
        const int cs = (r - s + W) % W, cr = (r - s - 1 + W) % W;
        int rc = MPI_Sendrecv(x + CHUNK_START(cs), (int)CHUNK_LEN(cs), MPI_DOUBLE, right, 17, tmp, (int)CHUNK_LEN(cr),
                              MPI_DOUBLE, left, 17, d->comm, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return rc;
        *sent += CHUNK_LEN(cs) * sizeof(double);
        double *dst = x + CHUNK_START(cr);
        for (size_t i = 0; i < CHUNK_LEN(cr); i++)
            dst[i] = tmp[i] + dst[i]; /* the partial from the left first: a fixed order per chunk */
    }
    for (int s = 0; s < W - 1; s++) { /* all-gather the owned chunks */
        const int cs = (r + 1 - s + W) % W, cr = (r - s + W) % W;
        int rc = MPI_Sendrecv(x + CHUNK_START(cs), (int)CHUNK_LEN(cs), MPI_DOUBLE, right, 18, x + CHUNK_START(cr),
                              (int)CHUNK_LEN(cr), MPI_DOUBLE, left, 18, d->comm, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return rc;
        *sent += CHUNK_LEN(cs) * sizeof(double);
    }
#undef CHUNK_START
#undef CHUNK_LEN
    return MPI_SUCCESS;
}

/* d->buf holding at least len doubles plus the ring's receive chunk. */
static bool reserve(clg_dist *d, size_t len) {
    const size_t need = len + len / (size_t)d->world + 1;
    if (need <= d->cap) return true;
    double *b = realloc(d->buf, need * sizeof *b);
    if (!b) return false;
    d->buf = b;
    d->cap = need;
    return true;
}

clg_status clg_dist_sum(clg_dist *d, double *values, int n) {
    if (!d || (!values && n > 0) || n < 0) return CLG_INVALID_ARGUMENT;
    if (!reserve(d, (size_t)n)) return CLG_OUT_OF_HOST_MEMORY;
    uint64_t sent = 0;
    return ring_allreduce(d, values, (size_t)n, &sent) == MPI_SUCCESS ? CLG_OK : CLG_COMM_ERROR;
}

/* clg_replica_sum's sum over the ranks, for synchronized batch norm: counted with the gradients. */
static clg_status replica_sum(void *user, clg_context *ctx, double *values, int n) {
    clg_dist *d = user;
    if (!d || (!values && n > 0) || n < 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "dist: replica sum of %d values at %p", n, (void *)values);
    const double t0 = clg__now_seconds();
    if (!reserve(d, (size_t)n))
        return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "dist: out of host memory for %d values", n);
    const int rc = ring_allreduce(d, values, (size_t)n, &d->bytes_sent);
    d->seconds += clg__now_seconds() - t0;
    return rc == MPI_SUCCESS ? CLG_OK : comm_fail(ctx, d, rc, "MPI_Sendrecv(batch-norm statistics)");
}

clg_replica_sum clg_dist_replica_sum(clg_dist *d) {
    return d ? (clg_replica_sum){replica_sum, d} : (clg_replica_sum){0};
}

size_t clg_dist_sync_batch_norm(clg_dist *d, clg_module *m) {
    if (!d) return 0;
    const clg_replica_sum sum = clg_dist_replica_sum(d);
    return clg_module_sync_batch_norm(m, &sum);
}

static clg_status stage_to_host(clg_dist *d, const clg_tensor *g, double *dst) {
    const size_t bytes = clg_tensor_bytes(g), n = clg_tensor_numel(g);
    if (bytes > d->stage_cap) {
        void *s = realloc(d->stage, bytes);
        if (!s) return CLG_OUT_OF_HOST_MEMORY;
        d->stage = s;
        d->stage_cap = bytes;
    }
    clg_status st = clg_tensor_to_host(g, d->stage, bytes);
    if (st != CLG_OK) return st;
    if (clg_tensor_dtype(g) == CLG_F64)
        memcpy(dst, d->stage, bytes);
    else
        for (size_t i = 0; i < n; i++)
            dst[i] = (double)((const float *)d->stage)[i];
    return CLG_OK;
}

static clg_status write_back(clg_dist *d, clg_tensor *g, const double *src, double scale) {
    const size_t n = clg_tensor_numel(g);
    if (clg_tensor_dtype(g) == CLG_F64) {
        double *s = d->stage;
        for (size_t i = 0; i < n; i++)
            s[i] = src[i] * scale;
    } else {
        float *s = d->stage;
        for (size_t i = 0; i < n; i++)
            s[i] = (float)(src[i] * scale);
    }
    return clg_tensor_write(g, d->stage, clg_tensor_bytes(g));
}

clg_status clg_dist_average_grads(clg_dist *d, clg_context *ctx, clg_tensor *const *params, size_t n) {
    if (!d || !ctx) return CLG_INVALID_ARGUMENT;
    if (!params && n > 0) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "dist: params is NULL");
    const double t0 = clg__now_seconds();
    /* Which parameters have gradients must agree: min and max of the mask over the ranks. */
    int *mask = calloc(2 * (n ? n : 1), sizeof *mask);
    if (!mask) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "dist: out of host memory");
    size_t biggest = 0;
    for (size_t i = 0; i < n; i++) {
        const clg_tensor *g = params[i] ? clg_tensor_grad(params[i]) : NULL;
        mask[i] = g != NULL;
        if (g && clg_tensor_numel(g) > biggest) biggest = clg_tensor_numel(g);
    }
    int rc = MPI_Allreduce(MPI_IN_PLACE, mask, (int)n, MPI_INT, MPI_MIN, d->comm);
    for (size_t i = 0; rc == MPI_SUCCESS && i < n; i++)
        mask[n + i] = params[i] && clg_tensor_grad(params[i]) != NULL;
    if (rc == MPI_SUCCESS) rc = MPI_Allreduce(MPI_IN_PLACE, mask + n, (int)n, MPI_INT, MPI_MAX, d->comm);
    if (rc != MPI_SUCCESS) {
        free(mask);
        return comm_fail(ctx, d, rc, "MPI_Allreduce(gradient mask)");
    }
    for (size_t i = 0; i < n; i++)
        if (mask[i] != mask[n + i]) {
            free(mask);
            return clg__fail(ctx, CLG_INVALID_STATE,
                             "dist: rank %d: params[%zu] has a gradient on some ranks and not on others", d->rank, i);
        }
    const size_t bucket = biggest > BUCKET_DOUBLES ? biggest : BUCKET_DOUBLES;
    if (!reserve(d, bucket)) {
        free(mask);
        return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "dist: out of host memory for a %zu-value bucket", bucket);
    }
    const double scale = 1.0 / d->world;
    clg_status st = CLG_OK;
    size_t i = 0;
    while (st == CLG_OK && i < n) { /* one bucket: params[i..j) */
        size_t j = i, used = 0;
        while (j < n && (!mask[j] || used + clg_tensor_numel(clg_tensor_grad(params[j])) <= bucket)) {
            if (mask[j]) {
                st = stage_to_host(d, clg_tensor_grad(params[j]), d->buf + used);
                if (st != CLG_OK) break;
                used += clg_tensor_numel(clg_tensor_grad(params[j]));
            }
            j++;
        }
        if (st != CLG_OK) break;
        rc = ring_allreduce(d, d->buf, used, &d->bytes_sent);
        if (rc != MPI_SUCCESS) {
            st = comm_fail(ctx, d, rc, "MPI_Sendrecv(gradients)");
            break;
        }
        used = 0;
        for (size_t k = i; st == CLG_OK && k < j; k++)
            if (mask[k]) {
                clg_tensor *g = clg_tensor_grad(params[k]);
                st = write_back(d, g, d->buf + used, scale);
                used += clg_tensor_numel(g);
            }
        i = j;
    }
    free(mask);
    d->seconds += clg__now_seconds() - t0;
    return st;
}

clg_status clg_dist_broadcast_module(clg_dist *d, clg_context *ctx, clg_module *m) {
    if (!d || !ctx || !m) return CLG_INVALID_ARGUMENT;
    const size_t n = clg_module_state(m, NULL, 0);
    clg_named_tensor *e = calloc(n ? n : 1, sizeof *e);
    if (!e) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "dist: out of host memory");
    clg_module_state(m, e, n);
    /* The names, shapes and dtypes, hashed: every rank checks against rank 0's. */
    uint64_t h = CLG_FNV1A_START;
    for (size_t i = 0; i < n; i++) {
        h = clg__fnv1a(h, e[i].name, strlen(e[i].name) + 1);
        const clg_dtype dt = clg_tensor_dtype(e[i].tensor);
        h = clg__fnv1a(h, &dt, sizeof dt);
        h = clg__fnv1a(h, clg_tensor_shape(e[i].tensor), sizeof(int) * (size_t)clg_tensor_ndim(e[i].tensor));
    }
    uint64_t h0 = h;
    int rc = MPI_Bcast(&h0, 1, MPI_UINT64_T, 0, d->comm);
    int ok = h0 == h;
    if (rc == MPI_SUCCESS) rc = MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, d->comm);
    clg_status st = CLG_OK;
    if (rc != MPI_SUCCESS)
        st = comm_fail(ctx, d, rc, "MPI_Bcast(state names)");
    else if (!ok)
        st = clg__fail(ctx, CLG_INVALID_STATE, "dist: rank %d: the model's state names or shapes differ between ranks",
                       d->rank);
    for (size_t i = 0; st == CLG_OK && i < n; i++) {
        const size_t bytes = clg_tensor_bytes(e[i].tensor);
        if (bytes > d->stage_cap) {
            void *s = realloc(d->stage, bytes);
            if (!s) {
                st = clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "dist: out of host memory");
                break;
            }
            d->stage = s;
            d->stage_cap = bytes;
        }
        if (d->rank == 0 && (st = clg_tensor_to_host(e[i].tensor, d->stage, bytes)) != CLG_OK) break;
        if (bytes > (size_t)INT32_MAX) {
            st = clg__fail(ctx, CLG_UNSUPPORTED, "dist: %s is over 2 GiB", e[i].name);
            break;
        }
        rc = MPI_Bcast(d->stage, (int)bytes, MPI_BYTE, 0, d->comm);
        if (rc != MPI_SUCCESS)
            st = comm_fail(ctx, d, rc, "MPI_Bcast(state)");
        else if (d->rank != 0)
            st = clg_tensor_write(e[i].tensor, d->stage, bytes);
    }
    free(e);
    return st;
}

void clg_dist_stats(const clg_dist *d, uint64_t *bytes_sent, double *seconds) {
    if (bytes_sent) *bytes_sent = d ? d->bytes_sent : 0;
    if (seconds) *seconds = d ? d->seconds : 0;
}

void clg_dist_abort(clg_dist *d, int code, const char *message) {
    fprintf(stderr, "clgrad: rank %d of %d: %s\n", d ? d->rank : -1, d ? d->world : 0, message ? message : "");
    fflush(stderr);
    MPI_Abort(d ? d->comm : MPI_COMM_WORLD, code ? code : 1);
}
