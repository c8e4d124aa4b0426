/* src/core/pool.c - the per-context buffer pool: the only caller of clCreateBuffer.
 * Requests round up to a size class (powers of two and the midpoints between them, so
 * at most a third is wasted); a freed buffer waits in the pool for the next request of
 * its class, so a training loop stops allocating from the driver after its first step.
 * Tests: tests/tensor/test_tensor.c.
 */
#include <stdlib.h>

#include "core/core.h"

#define MIN_CLASS 256u

size_t clg__pool_size_class(size_t bytes) {
    if (bytes <= MIN_CLASS) return MIN_CLASS;
    size_t p = MIN_CLASS;
    while (p < bytes) {
        if (p > SIZE_MAX / 2) return bytes; /* absurd sizes: exact */
        size_t mid = p + p / 2;
        if (mid >= bytes) return mid;
        p *= 2;
    }
    return p;
}

clg_status clg__pool_alloc(clg_context *ctx, size_t bytes, clg_pool_block *out) {
    clg_pool *pool = &ctx->pool;
    size_t cls = clg__pool_size_class(bytes);
    for (size_t i = pool->n_free; i-- > 0;) {
        if (pool->free_blocks[i].capacity == cls) {
            *out = pool->free_blocks[i];
            pool->free_blocks[i] = pool->free_blocks[--pool->n_free];
            pool->stats.bytes_cached -= cls;
            pool->stats.bytes_in_use += cls;
            pool->stats.hits++;
            return CLG_OK;
        }
    }
    if (cls > ctx->info.global_mem_bytes && ctx->info.global_mem_bytes)
        return clg__fail(ctx, CLG_OUT_OF_DEVICE_MEMORY,
                         "clCreateBuffer: %zu bytes requested, the device has %llu", bytes,
                         (unsigned long long)ctx->info.global_mem_bytes);
    if (clg__fault(ctx, CLG_FAULT_ALLOC))
        return clg__fail(ctx, CLG_OUT_OF_DEVICE_MEMORY, "clCreateBuffer: %zu bytes: injected fault", cls);
    cl_int e;
    cl_mem mem = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, cls, NULL, &e);
    if ((e == CL_MEM_OBJECT_ALLOCATION_FAILURE || e == CL_OUT_OF_RESOURCES || e == CL_INVALID_BUFFER_SIZE) &&
        pool->n_free > 0) {
        /* Give the cache back to the driver and try once more. */
        clg_context_pool_trim(ctx);
        mem = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, cls, NULL, &e);
    }
    if (e != CL_SUCCESS) {
        clg__cl_fail(ctx, e, "clCreateBuffer");
        return clg__fail(ctx, e == CL_OUT_OF_HOST_MEMORY ? CLG_OUT_OF_HOST_MEMORY : CLG_OUT_OF_DEVICE_MEMORY,
                         "clCreateBuffer: %zu bytes: %s", cls, clg__cl_error_name(e));
    }
    pool->stats.driver_allocs++;
    pool->stats.misses++;
    pool->stats.bytes_in_use += cls;
    *out = (clg_pool_block){mem, cls};
    return CLG_OK;
}

void clg__pool_release(clg_context *ctx, clg_pool_block block) {
    clg_pool *pool = &ctx->pool;
    if (!block.mem) return;
    pool->stats.bytes_in_use -= block.capacity;
    if (pool->n_free == pool->cap_free) {
        size_t cap = pool->cap_free ? pool->cap_free * 2 : 64;
        clg_pool_block *grown = realloc(pool->free_blocks, cap * sizeof *grown);
        if (!grown) { /* cannot cache it: give it back to the driver */
            clReleaseMemObject(block.mem);
            return;
        }
        pool->free_blocks = grown;
        pool->cap_free = cap;
    }
    pool->free_blocks[pool->n_free++] = block;
    pool->stats.bytes_cached += block.capacity;
}

void clg__pool_destroy(clg_pool *pool) {
    for (size_t i = 0; i < pool->n_free; i++) clReleaseMemObject(pool->free_blocks[i].mem);
    free(pool->free_blocks);
    pool->free_blocks = NULL;
    pool->n_free = pool->cap_free = 0;
}

clg_pool_stats clg_context_pool_stats(const clg_context *ctx) {
    clg_pool_stats s = {0};
    return ctx ? ctx->pool.stats : s;
}

void clg_context_pool_trim(clg_context *ctx) {
    if (!ctx) return;
    for (size_t i = 0; i < ctx->pool.n_free; i++) clReleaseMemObject(ctx->pool.free_blocks[i].mem);
    ctx->pool.n_free = 0;
    ctx->pool.stats.bytes_cached = 0;
}
