/* tests/install/example.c - a program outside the library, built by tests/install/check.sh
 * against the installed clgrad through `pkg-config --cflags --libs clgrad`: it proves the
 * installed headers and library are complete. Computes one small GEMM and checks it.
 */
#include <clgrad.h>

#include <math.h>
#include <stdio.h>

int main(void) {
    clg_context_params params = clg_context_default_params(); /* device from CLGRAD_DEVICE */
    clg_context *ctx = NULL;
    char err[1024];
    clg_status st = clg_context_create(&params, &ctx, err, sizeof err);
    if (st != CLG_OK) {
        fprintf(stderr, "example: %s: %s\n", clg_status_name(st), err);
        return 1;
    }
    /* C (2x2) = A (2x3) . B (3x2) */
    const float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {7, 8, 9, 10, 11, 12};
    const float want[4] = {58, 64, 139, 154};
    const int sa[2] = {2, 3}, sb[2] = {3, 2}, sc[2] = {2, 2};
    clg_tensor *ta = NULL, *tb = NULL, *tc = NULL;
    float c[4] = {0};
    if ((st = clg_tensor_from_host(ctx, CLG_F32, 2, sa, a, &ta)) == CLG_OK &&
        (st = clg_tensor_from_host(ctx, CLG_F32, 2, sb, b, &tb)) == CLG_OK &&
        (st = clg_tensor_zeros(ctx, CLG_F32, 2, sc, &tc)) == CLG_OK &&
        (st = clg_gemm(ctx, false, false, 2, 2, 3, 1.0, ta, 0, 3, tb, 0, 2, 0.0, tc, 0, 2)) == CLG_OK)
        st = clg_tensor_to_host(tc, c, sizeof c);
    int bad = st != CLG_OK;
    if (bad) fprintf(stderr, "example: %s: %s\n", clg_status_name(st), clg_context_errmsg(ctx));
    for (int i = 0; i < 4 && !bad; i++)
        bad = fabsf(c[i] - want[i]) > 1e-4f;
    printf("clgrad %s example: C = [%g %g; %g %g] %s\n", CLGRAD_VERSION_STRING, c[0], c[1], c[2], c[3],
           bad ? "WRONG" : "ok");
    clg_tensor_free(ta);
    clg_tensor_free(tb);
    clg_tensor_free(tc);
    clg_context_free(ctx);
    return bad;
}
