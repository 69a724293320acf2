/*
 * mixed_error.cu: where MIXED's error comes from. For one random point set
 * (the test's wiggly field), evaluates a 400 x 300 grid with simple kernels
 * that differ in one ingredient each, every term summed in FP64, and prints
 * max |variant - CPU| / range:
 *   fp32_lg2approx   FP32 r^2, lg2.approx (what MIXED does)
 *   fp32_log2f       FP32 r^2, CUDA's accurate log2f
 *   fp32_lg2_decor   FP32 r^2, lg2.approx of r^2 K_i minus log2 K_i, K_i in [1, 2)
 *   fp64_r2_lg2      FP64 r^2 rounded to FP32 for lg2.approx only
 *   usage: tps_mixed_error [N]
 */
#include "gpu_backend.h"
#include "internal.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <vector>

enum { W = 400, H = 300 };

__global__ void variant(int which, const double *u, const double *v, const double *w,
                        const float *k, const float *lk, int n, double u0, double du, double v0,
                        double dv, double *out)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
    if (c >= W)
        return;
    const double pu = u0 + c * du, pv = v0 + r * dv;
    const float fu = float(pu), fv = float(pv);
    const float fu_lo = float(pu - double(fu)), fv_lo = float(pv - double(fv));
    double s = 0.0;
    for (int i = 0; i < n; ++i) {
        const float uh = float(u[i]), vh = float(v[i]);
        const float ul = float(u[i] - double(uh)), vl = float(v[i] - double(vh));
        const double ddx = pu - u[i], ddy = pv - v[i], dr2 = ddx * ddx + ddy * ddy + 1e-300;
        double phi, wi = w[i] * 0.69314718055994530942;
        switch (which) {
        case 0: { /* plain FP32 coordinates */
            const float dx = fu - uh, dy = fv - vh, r2 = fmaf(dx, dx, fmaf(dy, dy, 1e-30f));
            phi = double(r2 * __log2f(r2));
            break;
        }
        case 1: { /* hi/lo coordinates, FP32 r2 and product */
            const float dx = (fu - uh) + (fu_lo - ul), dy = (fv - vh) + (fv_lo - vl);
            const float r2 = fmaf(dx, dx, fmaf(dy, dy, 1e-30f));
            phi = double(r2 * __log2f(r2));
            break;
        }
        case 2: { /* exact dx rounded to FP32, FP32 r2 and product */
            const float dx = float(ddx), dy = float(ddy), r2 = fmaf(dx, dx, fmaf(dy, dy, 1e-30f));
            phi = double(r2 * __log2f(r2));
            break;
        }
        case 3: { /* exact r2 rounded to FP32; product in FP64 */
            const float r2 = float(dr2);
            phi = double(r2) * double(__log2f(r2));
            break;
        }
        case 4: /* exact r2; lg2 of its FP32 rounding; product in FP64 */
            phi = dr2 * double(__log2f(float(dr2)));
            break;
        default: { /* case 1 with FP32 weights */
            const float dx = (fu - uh) + (fu_lo - ul), dy = (fv - vh) + (fv_lo - vl);
            const float r2 = fmaf(dx, dx, fmaf(dy, dy, 1e-30f));
            phi = double(r2 * __log2f(r2));
            wi = double(float(wi));
        }
        }
        s += wi * phi;
    }
    out[size_t(r) * W + c] = s;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000;
    std::vector<double> x(n), y(n), z(n);
    srand(9);
    double lo = 1e300, hi = -1e300;
    for (size_t i = 0; i < n; ++i) {
        double a = rand() / (double)RAND_MAX, b = rand() / (double)RAND_MAX;
        x[i] = a;
        y[i] = b;
        z[i] = sin(6 * a) * cos(4 * b) + 0.3 * a;
        lo = fmin(lo, z[i]);
        hi = fmax(hi, z[i]);
    }
    tps_context *ctx = tps_context_create();
    const double *zp = z.data();
    double lambda = 0;
    tps_model *m = tps_model_create(ctx, n, x.data(), y.data(), 1, &zp, &lambda, NULL);
    /* CPU reference of the kernel part only: total minus affine. */
    const double gt[6] = {-0.05, 1.1 / W, 0, 1.05, 0, -1.1 / H};
    tps_grid g;
    tps_grid_from_geotransform(&g, gt, 0, 0, W, H);
    std::vector<double> ref(W * H);
    tps_output o = {0, ref.data(), TPS_FLOAT64, 8, 8 * W};
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.device = TPS_DEVICE_CPU;
    eo.num_threads = 8;
    tps_evaluate_grid(ctx, m, &g, 1, &o, &eo);
    const double s = m->scale;
    const double u0 = (g.x0 - m->cx) / s, v0 = (g.y0 - m->cy) / s, du = g.col_dx / s,
                 dv = g.row_dy / s;
    for (int r = 0; r < H; ++r)
        for (int c = 0; c < W; ++c) {
            double pu = u0 + c * du, pv = v0 + r * dv;
            ref[r * W + c] -= m->affine[0][0] + m->affine[0][1] * pu + m->affine[0][2] * pv;
        }
    std::vector<float> k(n), lk(n);
    double sum_abs_w = 0;
    for (size_t i = 0; i < n; ++i) {
        k[i] = 1.0f + float(rand()) / float(RAND_MAX);
        lk[i] = float(log2((double)k[i]));
        sum_abs_w += fabs(m->half_weights[0][i]);
    }
    double *d_u, *d_v, *d_w, *d_out;
    float *d_k, *d_lk;
    cudaMalloc(&d_u, n * 8);
    cudaMalloc(&d_v, n * 8);
    cudaMalloc(&d_w, n * 8);
    cudaMalloc(&d_k, n * 4);
    cudaMalloc(&d_lk, n * 4);
    cudaMalloc(&d_out, W * H * 8);
    cudaMemcpy(d_u, m->u, n * 8, cudaMemcpyHostToDevice);
    cudaMemcpy(d_v, m->v, n * 8, cudaMemcpyHostToDevice);
    cudaMemcpy(d_w, m->half_weights[0], n * 8, cudaMemcpyHostToDevice);
    cudaMemcpy(d_k, k.data(), n * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(d_lk, lk.data(), n * 4, cudaMemcpyHostToDevice);
    const char *names[] = {"plain_fp32_xy", "hilo_xy", "exact_dx_f32", "exact_r2_f32",
                           "exact_r2_f64prod", "hilo_xy_f32_w"};
    printf("N = %zu, sum |w| = %.1f, range %.3f\n", n, 2 * sum_abs_w, hi - lo);
    std::vector<double> got(W * H);
    for (int which = 0; which < 6; ++which) {
        variant<<<dim3(4, H), 128>>>(which, d_u, d_v, d_w, d_k, d_lk, int(n), u0, du, v0, dv, d_out);
        cudaMemcpy(got.data(), d_out, W * H * 8, cudaMemcpyDeviceToHost);
        double worst = 0, mean = 0;
        for (int i = 0; i < W * H; ++i) {
            worst = fmax(worst, fabs(got[i] - ref[i]));
            mean += got[i] - ref[i];
        }
        printf("%-16s max %.2e  mean %+.2e  (x range)\n", names[which], worst / (hi - lo),
               mean / (W * H) / (hi - lo));
    }
    return 0;
}
