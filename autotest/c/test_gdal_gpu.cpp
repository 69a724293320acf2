/* test_gdal_gpu.cpp: the GPU through GDAL, for machines without GDAL's
 * Python bindings (the GPU host). Links libgdal; the plugin comes from
 * GDAL_DRIVER_PATH.
 *   test_gdal_gpu share      two DEVICE=GPU handles read 64 blocks x 3 bands;
 *                            exactly one upload of the model (DEVICE_UPLOADS),
 *                            values within 1e-9 x range of a DEVICE=CPU handle,
 *                            a PRECISION=MIXED handle within 1e-5, same upload,
 *                            its MIXED_* metadata (blocks counted, no failed
 *                            self-check, the error estimate within TOLERANCE);
 *                            PRECISION=AUTO with a TOLERANCE no block meets:
 *                            every block recomputed, DOUBLE's bytes;
 *                            the same for a LOCAL model; 8 threads on 8 GPU
 *                            handles read random windows byte-identical to a
 *                            serial read (one handle closed mid-way), global
 *                            and local; every quantity of the engine's table
 *                            (slope, aspect, curvatures, ...) within 1e-9 of
 *                            the CPU's, global and local;
 *                            masks (MAX_DISTANCE, CONVEX_HULL) give the same
 *                            NaN pixels and mask band as on the CPU; then,
 *                            with TPS_GPU_MAX_MEMORY=1000 (a stand-in for a
 *                            device out of memory), AUTO reads on the CPU and
 *                            DEVICE=GPU reads fail clearly
 *                            (the checks of autotest/test_gpu.py and of the GPU
 *                            case of test_local.py, for the GPU host, whose
 *                            Python has no GDAL bindings); a TPS: connection
 *                            string (open options only) opens with DEVICE=GPU
 *   test_gdal_gpu fallback   without a GPU: DEVICE=GPU fails at open with a
 *                            message naming the GPU (a .tps and a TPS: string),
 *                            AUTO reads on the CPU: the CPU handle's bytes, no
 *                            upload
 * Whether there is a GPU is decided by gpu_probe.h (the CUDA driver), not by
 * the driver under test: exit 77 (skipped) only when the mode does not apply
 * by the probe; where it finds a GPU, a DEVICE=GPU open that fails is a
 * failure. */
#include "gdal_priv.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "check.h"
#include "gpu_probe.h"
#include "tps.h" /* the quantity table only (the engine itself is the plugin's) */

static std::string g_last_error;
static void CPL_STDCALL capture(CPLErr, CPLErrorNum, const char *msg)
{
    g_last_error = msg;
}

/* 2000 random points, three value columns, and a 2048 x 2048 .tps with
 * 256 x 256 blocks: 64 blocks per band. */
static std::string write_fixture(const std::string &dir)
{
    const std::string csv = dir + "/points.csv", tps = dir + "/gpu.tps";
    FILE *f = fopen(csv.c_str(), "w");
    fprintf(f, "x,y,a,b,c\n");
    srand(3);
    /* TPS_TEST_QUICK=1 (valgrind, scripts/valgrind_tests.py): 300 points,
     * for a solve and a block that valgrind gets through in a minute. */
    const char *quick = getenv("TPS_TEST_QUICK");
    const int n = quick && strcmp(quick, "1") == 0 ? 300 : 2000;
    for (int i = 0; i < n; ++i) {
        double u = rand() / double(RAND_MAX), v = rand() / double(RAND_MAX);
        fprintf(f, "%.17g,%.17g,%.17g,%.17g,%.17g\n", 400000 + 5000 * u, 6000000 + 5000 * v,
                sin(6 * u) * cos(4 * v), 50 * exp(-8 * ((u - .5) * (u - .5) + v * v)), u * v);
    }
    fclose(f);
    f = fopen(tps.c_str(), "w");
    fprintf(f, "<TPSDataset><Points><Source>points.csv</Source><XField>x</XField>"
               "<YField>y</YField></Points>"
               "<GeoTransform>400000, 2.44140625, 0, 6005000, 0, -2.44140625</GeoTransform>"
               "<Size>2048 2048</Size><BlockSize>256 256</BlockSize><DataType>Float64</DataType>"
               "<Band><Field>a</Field></Band><Band><Field>b</Field><Smoothing>1000</Smoothing>"
               "</Band><Band><Field>c</Field></Band></TPSDataset>\n");
    fclose(f);
    /* The same as a LOCAL model of small patches, next to it. */
    f = fopen((dir + "/local.tps").c_str(), "w");
    fprintf(f, "<TPSDataset><Points><Source>points.csv</Source><XField>x</XField>"
               "<YField>y</YField></Points><Mode>LOCAL</Mode><PatchPoints>100</PatchPoints>"
               "<GeoTransform>400000, 2.44140625, 0, 6005000, 0, -2.44140625</GeoTransform>"
               "<Size>2048 2048</Size><BlockSize>256 256</BlockSize><DataType>Float64</DataType>"
               "<Band><Field>a</Field></Band><Band><Field>b</Field><Smoothing>1000</Smoothing>"
               "</Band><Band><Field>c</Field></Band></TPSDataset>\n");
    fclose(f);
    return tps;
}

static GDALDataset *open_tps(const std::string &path, const char *device, const char *precision,
                             const char *tolerance = nullptr)
{
    CPLStringList options;
    options.SetNameValue("DEVICE", device);
    if (precision)
        options.SetNameValue("PRECISION", precision);
    if (tolerance)
        options.SetNameValue("TOLERANCE", tolerance);
    return GDALDataset::FromHandle(GDALOpenEx(path.c_str(), GDAL_OF_RASTER | GDAL_OF_READONLY,
                                              nullptr, options.List(), nullptr));
}

/* Removes the solved models the driver keeps next to a .tps, one file per
 * configuration ("<tps>.model.<hash>", docs/format.md), so that the next
 * open solves again. */
static void remove_models(const std::string &tps)
{
    std::string dir = CPLGetPath(tps.c_str());
    if (dir.empty())
        dir = ".";
    const std::string prefix = std::string(CPLGetFilename(tps.c_str())) + ".model.";
    char **names = VSIReadDir(dir.c_str());
    for (char **p = names; p && *p; p++)
        if (strncmp(*p, prefix.c_str(), prefix.size()) == 0)
            VSIUnlink((dir + "/" + *p).c_str());
    CSLDestroy(names);
}

static const char *md(GDALDataset *ds, const char *key)
{
    const char *v = ds->GetMetadataItem(key, "TPS");
    return v ? v : "(none)";
}

static int share(const std::string &tps, bool local)
{
    GDALDataset *a = open_tps(tps, "GPU", nullptr), *b = open_tps(tps, "GPU", nullptr);
    GDALDataset *cpu = open_tps(tps, "CPU", nullptr);
    if (!a || !b || !cpu) {
        fprintf(stderr, "open failed: %s\n", g_last_error.c_str());
        return 1;
    }
    CHECK(strcmp(md(a, "DEVICE"), "GPU") == 0, "DEVICE=%s", md(a, "DEVICE"));
    CHECK(strcmp(md(a, "MODE"), local ? "LOCAL" : "GLOBAL") == 0, "MODE=%s", md(a, "MODE"));
    CHECK(strcmp(md(cpu, "DEVICE"), "CPU") == 0, "DEVICE=%s", md(cpu, "DEVICE"));
    CHECK(strcmp(md(a, "DEVICE_UPLOADS"), "0") == 0, "before any read: %s",
          md(a, "DEVICE_UPLOADS"));
    std::vector<double> ga(256 * 256), gc(256 * 256);
    double worst[3] = {0, 0, 0}, lo[3], hi[3];
    for (int k = 0; k < 3; ++k) {
        lo[k] = 1e300;
        hi[k] = -1e300;
    }
    int blocks = 0;
    for (int by = 0; by < 8; ++by)
        for (int bx = 0; bx < 8; ++bx)
            for (int k = 1; k <= 3; ++k) {
                GDALDataset *gpu = (bx + by + k) % 2 ? a : b; /* both handles */
                CHECK(gpu->GetRasterBand(k)->ReadBlock(bx, by, ga.data()) == CE_None, "%s",
                      g_last_error.c_str());
                CHECK(cpu->GetRasterBand(k)->ReadBlock(bx, by, gc.data()) == CE_None, "%s",
                      g_last_error.c_str());
                for (size_t i = 0; i < ga.size(); ++i) {
                    worst[k - 1] = max_nan(worst[k - 1], std::fabs(ga[i] - gc[i]));
                    lo[k - 1] = std::fmin(lo[k - 1], gc[i]);
                    hi[k - 1] = std::fmax(hi[k - 1], gc[i]);
                }
                ++blocks;
            }
    for (int k = 0; k < 3; ++k) {
        printf("%s band %d: max |GPU - CPU| = %.3g x range\n", local ? "local" : "global", k + 1,
               worst[k] / (hi[k] - lo[k]));
        CHECK(worst[k] <= 1e-9 * (hi[k] - lo[k]), "band %d: %.3g", k + 1, worst[k]);
    }
    printf("%d blocks read through two GPU handles; DEVICE_UPLOADS %s / %s, SOLVES %s\n", blocks,
           md(a, "DEVICE_UPLOADS"), md(b, "DEVICE_UPLOADS"), md(a, "SOLVES"));
    CHECK(strcmp(md(a, "DEVICE_UPLOADS"), "1") == 0, "uploads %s", md(a, "DEVICE_UPLOADS"));
    CHECK(strcmp(md(b, "DEVICE_UPLOADS"), "1") == 0, "uploads %s", md(b, "DEVICE_UPLOADS"));
    CHECK(strcmp(md(a, "SOLVES"), "1") == 0, "solves %s", md(a, "SOLVES"));
    if (local) { /* patches solve on the CPU threads; MIXED does not apply */
        GDALClose(a);
        GDALClose(b);
        GDALClose(cpu);
        return 0;
    }
    /* The model was solved by the first DEVICE=GPU open: with cuSOLVER. */
    printf("SOLVE_DEVICE %s, SOLVE_SECONDS %s\n", md(a, "SOLVE_DEVICE"), md(a, "SOLVE_SECONDS"));
    CHECK(strcmp(md(a, "SOLVE_DEVICE"), "GPU") == 0, "SOLVE_DEVICE=%s", md(a, "SOLVE_DEVICE"));

    /* MIXED on the same model: the same device copy. */
    GDALDataset *mixed = open_tps(tps, "GPU", "MIXED");
    CHECK(mixed != nullptr, "%s", g_last_error.c_str());
    if (mixed) {
        std::vector<double> all_g(2048 * 64), all_c(2048 * 64);
        for (int k = 1; k <= 3; ++k) {
            CHECK(mixed->GetRasterBand(k)->RasterIO(GF_Read, 0, 1000, 2048, 64, all_g.data(), 2048,
                                                    64, GDT_Float64, 0, 0, nullptr) == CE_None,
                  "%s", g_last_error.c_str());
            CHECK(cpu->GetRasterBand(k)->RasterIO(GF_Read, 0, 1000, 2048, 64, all_c.data(), 2048,
                                                  64, GDT_Float64, 0, 0, nullptr) == CE_None,
                  "%s", g_last_error.c_str());
            double w = 0;
            for (size_t i = 0; i < all_g.size(); ++i)
                w = max_nan(w, std::fabs(all_g[i] - all_c[i]));
            printf("band %d MIXED: max |GPU - CPU| = %.3g x range\n", k, w / (hi[k - 1] - lo[k - 1]));
            CHECK(w <= 1e-5 * (hi[k - 1] - lo[k - 1]), "MIXED band %d: %.3g", k, w);
        }
        CHECK(strcmp(md(mixed, "DEVICE_UPLOADS"), "1") == 0, "uploads %s",
              md(mixed, "DEVICE_UPLOADS"));
        printf("MIXED: MIXED_BLOCKS %s, MIXED_FALLBACK_BLOCKS %s, MIXED_CHECK_FAILURES %s, "
               "MIXED_MAX_ERROR_ESTIMATE %s, TOLERANCE %s\n",
               md(mixed, "MIXED_BLOCKS"), md(mixed, "MIXED_FALLBACK_BLOCKS"),
               md(mixed, "MIXED_CHECK_FAILURES"), md(mixed, "MIXED_MAX_ERROR_ESTIMATE"),
               md(mixed, "TOLERANCE"));
        /* 2048 x 64 pixels x 3 bands in one pass: 64 x 4 (or 5) blocks */
        CHECK(atoll(md(mixed, "MIXED_BLOCKS")) >= 64 * 4, "MIXED_BLOCKS %s",
              md(mixed, "MIXED_BLOCKS"));
        CHECK(strcmp(md(mixed, "MIXED_CHECK_FAILURES"), "0") == 0, "MIXED_CHECK_FAILURES %s",
              md(mixed, "MIXED_CHECK_FAILURES"));
        CHECK(CPLAtof(md(mixed, "MIXED_MAX_ERROR_ESTIMATE")) <= 1e-5, "estimate %s",
              md(mixed, "MIXED_MAX_ERROR_ESTIMATE"));
        GDALClose(mixed);
    }
    /* MIXED with a tolerance no block can meet: every block recomputed in
     * DOUBLE, with DOUBLE's bytes (the kernel's own fallback); AUTO with
     * TOLERANCE=1e-6: the blocks it keeps in MIXED within 1e-6. */
    GDALDataset *none = open_tps(tps, "GPU", "MIXED", "1e-15");
    GDALDataset *strict = open_tps(tps, "GPU", "AUTO", "1e-6");
    GDALDataset *dbl = open_tps(tps, "GPU", "DOUBLE");
    CHECK(none && strict && dbl, "%s", g_last_error.c_str());
    if (none && strict && dbl) {
        std::vector<double> gn(600 * 40), gs(600 * 40), gd(600 * 40);
        for (int k = 1; k <= 3; ++k) {
            GDALDataset *ds[3] = {none, strict, dbl};
            double *buf[3] = {gn.data(), gs.data(), gd.data()};
            for (int d = 0; d < 3; ++d)
                CHECK(ds[d]->GetRasterBand(k)->RasterIO(GF_Read, 101, 333, 600, 40, buf[d], 600,
                                                        40, GDT_Float64, 0, 0, nullptr) == CE_None,
                      "%s", g_last_error.c_str());
            CHECK(memcmp(gn.data(), gd.data(), gn.size() * sizeof(double)) == 0,
                  "band %d: MIXED, TOLERANCE=1e-15: not DOUBLE's bytes", k);
            double w = 0;
            for (size_t i = 0; i < gs.size(); ++i)
                w = max_nan(w, std::fabs(gs[i] - gd[i]));
            printf("band %d AUTO, TOLERANCE=1e-6: max |AUTO - DOUBLE| = %.3g x range\n", k,
                   w / (hi[k - 1] - lo[k - 1]));
            CHECK(w <= 1e-6 * (hi[k - 1] - lo[k - 1]), "band %d AUTO, TOLERANCE=1e-6: %.3g", k, w);
        }
        printf("MIXED, TOLERANCE=1e-15: MIXED_BLOCKS %s, MIXED_FALLBACK_BLOCKS %s; AUTO, "
               "TOLERANCE=1e-6: MIXED_BLOCKS %s, MIXED_FALLBACK_BLOCKS %s, "
               "MIXED_MAX_ERROR_ESTIMATE %s\n",
               md(none, "MIXED_BLOCKS"), md(none, "MIXED_FALLBACK_BLOCKS"),
               md(strict, "MIXED_BLOCKS"), md(strict, "MIXED_FALLBACK_BLOCKS"),
               md(strict, "MIXED_MAX_ERROR_ESTIMATE"));
        CHECK(atoll(md(none, "MIXED_BLOCKS")) > 0 &&
                  strcmp(md(none, "MIXED_BLOCKS"), md(none, "MIXED_FALLBACK_BLOCKS")) == 0,
              "TOLERANCE=1e-15: %s blocks, %s fell back", md(none, "MIXED_BLOCKS"),
              md(none, "MIXED_FALLBACK_BLOCKS"));
        CHECK(strcmp(md(none, "MIXED_MAX_ERROR_ESTIMATE"), "0") == 0, "estimate %s",
              md(none, "MIXED_MAX_ERROR_ESTIMATE"));
        CHECK(atoll(md(strict, "MIXED_BLOCKS")) > 0, "AUTO evaluated no MIXED block");
        CHECK(CPLAtof(md(strict, "MIXED_MAX_ERROR_ESTIMATE")) <= 1e-6, "estimate %s",
              md(strict, "MIXED_MAX_ERROR_ESTIMATE"));
    }
    for (GDALDataset *ds : {none, strict, dbl})
        if (ds)
            GDALClose(ds);
    GDALClose(a);
    GDALClose(b);
    GDALClose(cpu);
    return 0;
}

/* Every quantity of the engine's table (value, derivatives, curvatures:
 * read from tps_quantity_info, so a new row is checked here too) through
 * GDAL, global and local models: a DEVICE=GPU handle against a DEVICE=CPU
 * one within 1e-9 x range (aspect: of 360 degrees, where not nearly flat;
 * the standard error: 1e-5), NaN at the same pixels, one upload. */
static int quantities(const std::string &dir, bool local)
{
    const std::string tps = dir + (local ? "/quantities_local.tps" : "/quantities.tps");
    const size_t nq = tps_quantity_count();
    FILE *f = fopen(tps.c_str(), "w");
    fprintf(f, "<TPSDataset><Points><Source>points.csv</Source><XField>x</XField>"
               "<YField>y</YField></Points>%s"
               "<GeoTransform>399000, 13.671875, 0.5, 6006000, 0.25, -13.671875</GeoTransform>"
               "<Size>512 512</Size><DataType>Float64</DataType>",
            local ? "<Mode>LOCAL</Mode><PatchPoints>100</PatchPoints>" : "");
    for (size_t q = 0; q < nq; ++q)
        fprintf(f, "<Band><Field>a</Field><Quantity>%s</Quantity></Band>",
                tps_quantity_info((tps_quantity)q)->name);
    fprintf(f, "</TPSDataset>\n");
    fclose(f);
    GDALDataset *gpu = open_tps(tps, "GPU", nullptr), *cpu = open_tps(tps, "CPU", nullptr);
    CHECK(gpu && cpu, "open: %s", g_last_error.c_str());
    if (gpu && cpu) {
        CHECK(strcmp(md(gpu, "MODE"), local ? "LOCAL" : "GLOBAL") == 0, "MODE=%s",
              md(gpu, "MODE"));
        const size_t n = 512 * 512;
        std::vector<double> g(nq * n), c(nq * n);
        std::vector<int> bands(nq);
        for (size_t q = 0; q < nq; ++q)
            bands[q] = int(q) + 1;
        CHECK(gpu->RasterIO(GF_Read, 0, 0, 512, 512, g.data(), 512, 512, GDT_Float64, int(nq),
                            bands.data(), 0, 0, 0, nullptr) == CE_None,
              "GPU read: %s", g_last_error.c_str());
        CHECK(cpu->RasterIO(GF_Read, 0, 0, 512, 512, c.data(), 512, 512, GDT_Float64, int(nq),
                            bands.data(), 0, 0, 0, nullptr) == CE_None,
              "CPU read: %s", g_last_error.c_str());
        /* The CPU's |grad f| where aspect is compared: not nearly flat. */
        const double *gx = &c[TPS_QUANTITY_DZDX * n], *gy = &c[TPS_QUANTITY_DZDY * n];
        double max_grad = 0;
        for (size_t i = 0; i < n; ++i)
            max_grad = std::fmax(max_grad, std::hypot(gx[i], gy[i]));
        for (size_t q = 0; q < nq; ++q) {
            const double *cq = &c[q * n], *gq = &g[q * n];
            double lo = 1e300, hi = -1e300, worst = 0;
            for (size_t i = 0; i < n; ++i)
                if (std::isfinite(cq[i])) {
                    lo = std::fmin(lo, cq[i]);
                    hi = std::fmax(hi, cq[i]);
                }
            for (size_t i = 0; i < n; ++i) {
                if (std::isnan(cq[i]) || std::isnan(gq[i]))
                    worst = std::isnan(cq[i]) && std::isnan(gq[i]) ? worst : INFINITY;
                else if (q == TPS_QUANTITY_ASPECT) { /* an angle */
                    if (std::hypot(gx[i], gy[i]) >= 1e-3 * max_grad)
                        worst = std::fmax(worst, std::fabs(std::remainder(cq[i] - gq[i], 360.0)) /
                                                     360);
                } else
                    worst = std::fmax(worst, std::fabs(cq[i] - gq[i]) / (hi - lo));
            }
            const char *name = tps_quantity_info((tps_quantity)q)->name;
            printf("%s %s: max |GPU - CPU| = %.3g x range\n", local ? "local" : "global", name,
                   worst);
            CHECK(hi > lo, "%s: a constant band", name);
            /* The standard error is the square root of a variance that is
             * ~0 near a data point (lambda 0 here): there the square root
             * amplifies the rounding of the variance (DGEMMs in another
             * order on the GPU) to ~sqrt(1e-11) of the error's scale. */
            const double bound = q == TPS_QUANTITY_STANDARD_ERROR ? 1e-5 : 1e-9;
            CHECK(worst <= bound, "%s %s: GPU off by %.3g x range",
                  local ? "local" : "global", name, worst);
        }
        CHECK(strcmp(md(gpu, "DEVICE_UPLOADS"), "1") == 0, "uploads %s",
              md(gpu, "DEVICE_UPLOADS"));
    }
    for (GDALDataset *ds : {gpu, cpu})
        if (ds)
            GDALClose(ds);
    remove_models(tps);
    VSIUnlink(tps.c_str());
    return 0;
}

/* Masks are geometry, applied on the host whatever evaluates: a GPU handle
 * with MAX_DISTANCE and CONVEX_HULL has NaN exactly where a CPU handle
 * has, the same mask band, and its kept values within 1e-9 x range. */
static int masks(const std::string &tps, const char *device)
{
    GDALDataset *ds[2] = {nullptr, nullptr};
    const char *devices[2] = {device, "CPU"};
    for (int k = 0; k < 2; ++k) {
        CPLStringList options;
        options.SetNameValue("DEVICE", devices[k]);
        options.SetNameValue("MAX_DISTANCE", "60");
        options.SetNameValue("CONVEX_HULL", "YES");
        ds[k] = GDALDataset::FromHandle(GDALOpenEx(
            tps.c_str(), GDAL_OF_RASTER | GDAL_OF_READONLY, nullptr, options.List(), nullptr));
        CHECK(ds[k] != nullptr, "%s: %s", devices[k], g_last_error.c_str());
    }
    if (ds[0] && ds[1]) {
        CHECK(strcmp(md(ds[0], "DEVICE"), device) == 0, "DEVICE=%s", md(ds[0], "DEVICE"));
        const int n = 2048;
        std::vector<double> v[2] = {std::vector<double>(size_t(n) * n),
                                    std::vector<double>(size_t(n) * n)};
        std::vector<GByte> m[2] = {std::vector<GByte>(size_t(n) * n),
                                   std::vector<GByte>(size_t(n) * n)};
        for (int k = 0; k < 2; ++k) {
            GDALRasterBand *band = ds[k]->GetRasterBand(1);
            CHECK(band->GetMaskFlags() == GMF_PER_DATASET, "mask flags %d", band->GetMaskFlags());
            CHECK(band->RasterIO(GF_Read, 0, 0, n, n, v[k].data(), n, n, GDT_Float64, 0, 0,
                                 nullptr) == CE_None,
                  "%s", g_last_error.c_str());
            CHECK(band->GetMaskBand()->RasterIO(GF_Read, 0, 0, n, n, m[k].data(), n, n, GDT_Byte,
                                                0, 0, nullptr) == CE_None,
                  "%s", g_last_error.c_str());
        }
        size_t kept = 0, nan_differs = 0, mask_differs = 0, mask_vs_nan = 0;
        double worst = 0, lo = 1e300, hi = -1e300;
        for (size_t i = 0; i < v[0].size(); ++i) {
            nan_differs += std::isnan(v[0][i]) != std::isnan(v[1][i]);
            mask_differs += m[0][i] != m[1][i];
            mask_vs_nan += (m[0][i] == 255) == std::isnan(v[0][i]);
            if (!std::isnan(v[1][i])) {
                ++kept;
                lo = std::fmin(lo, v[1][i]);
                hi = std::fmax(hi, v[1][i]);
                if (!std::isnan(v[0][i]))
                    worst = std::fmax(worst, std::fabs(v[0][i] - v[1][i]));
            }
        }
        printf("masks on %s: %.1f%% of the pixels kept, max |%s - CPU| = %.3g x range\n", device,
               100.0 * kept / v[0].size(), device, worst / (hi - lo));
        CHECK(kept > v[0].size() / 4 && kept < v[0].size(), "kept %zu", kept);
        CHECK(nan_differs == 0, "%zu pixels NaN on one device only", nan_differs);
        CHECK(mask_differs == 0, "%zu mask pixels differ", mask_differs);
        CHECK(mask_vs_nan == 0, "%zu mask pixels disagree with the NaN", mask_vs_nan);
        CHECK(worst <= 1e-9 * (hi - lo), "%.3g", worst);
    }
    for (GDALDataset *d : ds)
        if (d)
            GDALClose(d);
    return 0;
}

/* Issue 6's concurrency on the GPU path: 8 threads, each with its own
 * DEVICE=GPU handle, read random windows (of all 3 bands at once) of the
 * same .tps; every window is byte-identical to the same window of a serial
 * read taken first, and one handle closed mid-way does not disturb the
 * others. For the global and the local model. */
static int threads_gpu(const std::string &tps)
{
    const int W = 2048, H = 2048, NB = 3, THREADS = 8, WINDOWS = 24;
    GDALDataset *serial = open_tps(tps, "GPU", nullptr);
    CHECK(serial != nullptr, "%s", g_last_error.c_str());
    if (!serial)
        return 0;
    std::vector<double> ref(size_t(NB) * W * H);
    int bands[3] = {1, 2, 3};
    CHECK(serial->RasterIO(GF_Read, 0, 0, W, H, ref.data(), W, H, GDT_Float64, NB, bands, 0, 0, 0,
                           nullptr) == CE_None, "serial read: %s", g_last_error.c_str());
    std::vector<GDALDataset *> handles(THREADS);
    int unopened = 0;
    for (int t = 0; t < THREADS; ++t)
        unopened += (handles[t] = open_tps(tps, "GPU", nullptr)) == nullptr;
    CHECK(unopened == 0, "%d of %d DEVICE=GPU handles did not open: %s", unopened, THREADS,
          g_last_error.c_str());
    std::vector<int> bad(THREADS, 0), done(THREADS, 0);
    std::vector<std::thread> pool;
    for (int t = 0; t < THREADS; ++t)
        pool.emplace_back([&, t]() {
            unsigned long long st = 0x9E3779B97F4A7C15ULL * (t + 1);
            auto next = [&st](int n) {
                st ^= st << 13;
                st ^= st >> 7;
                st ^= st << 17;
                return int((st >> 11) % (unsigned long long)n);
            };
            for (int k = 0; k < WINDOWS && handles[t]; ++k) {
                const int x0 = next(W), y0 = next(H);
                const int w = 1 + next(std::min(W - x0, 700)), h = 1 + next(std::min(H - y0, 700));
                std::vector<double> got(size_t(NB) * w * h);
                if (handles[t]->RasterIO(GF_Read, x0, y0, w, h, got.data(), w, h, GDT_Float64, NB,
                                         bands, 0, 0, 0, nullptr) != CE_None) {
                    ++bad[t];
                    continue;
                }
                for (int b = 0; b < NB; ++b)
                    for (int r = 0; r < h; ++r)
                        if (memcmp(&got[(size_t(b) * h + r) * w],
                                   &ref[(size_t(b) * H + y0 + r) * W + x0], sizeof(double) * w))
                            ++bad[t];
                ++done[t];
                if (t == 0 && k == WINDOWS / 2) { /* closed while the others read */
                    GDALClose(handles[0]);
                    handles[0] = nullptr;
                    break;
                }
            }
        });
    for (std::thread &th : pool)
        th.join();
    int total_bad = 0, total_done = 0;
    for (int t = 0; t < THREADS; ++t) {
        total_bad += bad[t];
        total_done += done[t];
    }
    printf("%s: %d windows read by %d threads on their own GPU handles, %d differ from the "
           "serial read; DEVICE_UPLOADS %s\n", tps.c_str(), total_done, THREADS, total_bad,
           md(serial, "DEVICE_UPLOADS"));
    CHECK(total_bad == 0, "%d windows differ", total_bad);
    CHECK(total_done > THREADS * WINDOWS / 2, "only %d windows read", total_done);
    CHECK(strcmp(md(serial, "DEVICE_UPLOADS"), "1") == 0, "uploads %s",
          md(serial, "DEVICE_UPLOADS"));
    for (GDALDataset *ds : handles)
        if (ds)
            GDALClose(ds);
    GDALClose(serial);
    return 0;
}

/* TPS_GPU_MAX_MEMORY far too small for the model (a stand-in for a device
 * out of memory): AUTO reads on the CPU and says so, GPU fails clearly. */
static int budget(const std::string &dir)
{
    const std::string tps = dir + "/budget.tps";
    FILE *f = fopen(tps.c_str(), "w");
    fprintf(f, "<TPSDataset><Points><Source>points.csv</Source><XField>x</XField>"
               "<YField>y</YField></Points>"
               "<GeoTransform>400000, 2.44140625, 0, 6005000, 0, -2.44140625</GeoTransform>"
               "<Size>2048 2048</Size><DataType>Float64</DataType>"
               "<Band><Field>a</Field><Smoothing>7</Smoothing></Band></TPSDataset>\n");
    fclose(f);
    CPLSetConfigOption("TPS_GPU_MAX_MEMORY", "1000");
    GDALDataset *autods = open_tps(tps, "AUTO", nullptr), *gpu = open_tps(tps, "GPU", nullptr);
    GDALDataset *cpu = open_tps(tps, "CPU", nullptr);
    CHECK(autods && gpu && cpu, "open: %s", g_last_error.c_str());
    if (autods && gpu && cpu) {
        CHECK(strcmp(md(autods, "DEVICE"), "GPU") == 0, "AUTO chose %s", md(autods, "DEVICE"));
        std::vector<double> va(256 * 64), vc(256 * 64);
        CHECK(autods->GetRasterBand(1)->RasterIO(GF_Read, 100, 200, 256, 64, va.data(), 256, 64,
                                                 GDT_Float64, 0, 0, nullptr) == CE_None,
              "AUTO read: %s", g_last_error.c_str());
        CHECK(cpu->GetRasterBand(1)->RasterIO(GF_Read, 100, 200, 256, 64, vc.data(), 256, 64,
                                              GDT_Float64, 0, 0, nullptr) == CE_None,
              "CPU read: %s", g_last_error.c_str());
        CHECK(va == vc, "AUTO over budget: not the CPU's values");
        CHECK(strcmp(md(autods, "DEVICE"), "CPU") == 0, "after the fallback DEVICE=%s",
              md(autods, "DEVICE"));
        g_last_error.clear();
        CHECK(gpu->GetRasterBand(1)->RasterIO(GF_Read, 100, 200, 256, 64, va.data(), 256, 64,
                                              GDT_Float64, 0, 0, nullptr) == CE_Failure,
              "DEVICE=GPU over budget read succeeded");
        CHECK(g_last_error.find("GPU memory") != std::string::npos, "message: %s",
              g_last_error.c_str());
        printf("DEVICE=GPU over budget: %s\n", g_last_error.c_str());
        CHECK(strcmp(md(gpu, "DEVICE_UPLOADS"), "0") == 0, "uploads %s",
              md(gpu, "DEVICE_UPLOADS"));
    }
    CPLSetConfigOption("TPS_GPU_MAX_MEMORY", nullptr);
    for (GDALDataset *ds : {autods, gpu, cpu})
        if (ds)
            GDALClose(ds);
    remove_models(tps);
    remove_models(std::string(dir) + "/local.tps");
    VSIUnlink(tps.c_str());
    VSIUnlink((std::string(dir) + "/local.tps").c_str());
    return 0;
}

/* A TPS: connection string (no .tps file: the points and the grid in open
 * options) with DEVICE=GPU. */
static GDALDataset *open_tps_string(const std::string &dir, const char *device)
{
    CPLStringList options;
    options.SetNameValue("FIELD", "a");
    options.SetNameValue("XFIELD", "x");
    options.SetNameValue("YFIELD", "y");
    options.SetNameValue("SIZE", "64 48");
    options.SetNameValue("EXTENT", "400000 6000000 405000 6005000");
    options.SetNameValue("DEVICE", device);
    return GDALDataset::FromHandle(GDALOpenEx(("TPS:" + dir + "/points.csv").c_str(),
                                              GDAL_OF_RASTER | GDAL_OF_READONLY, nullptr,
                                              options.List(), nullptr));
}

/* A TPS: string with DEVICE=GPU opens where a GPU is (it fails where none
 * is: test_errors.py, fallback below), and reads on the GPU what the CPU
 * reads, within 1e-9 x range. */
static int tps_string_gpu(const std::string &dir)
{
    GDALDataset *gpu = open_tps_string(dir, "GPU"), *cpu = open_tps_string(dir, "CPU");
    CHECK(gpu && cpu, "TPS: string, DEVICE=GPU: %s", g_last_error.c_str());
    if (gpu && cpu) {
        CHECK(strcmp(md(gpu, "DEVICE"), "GPU") == 0, "DEVICE=%s", md(gpu, "DEVICE"));
        std::vector<double> g(64 * 48, NAN), c(64 * 48, NAN);
        CHECK(gpu->GetRasterBand(1)->RasterIO(GF_Read, 0, 0, 64, 48, g.data(), 64, 48,
                                              GDT_Float64, 0, 0, nullptr) == CE_None,
              "%s", g_last_error.c_str());
        CHECK(cpu->GetRasterBand(1)->RasterIO(GF_Read, 0, 0, 64, 48, c.data(), 64, 48,
                                              GDT_Float64, 0, 0, nullptr) == CE_None,
              "%s", g_last_error.c_str());
        double lo = 1e300, hi = -1e300, worst = 0;
        for (size_t i = 0; i < c.size(); ++i) {
            lo = std::fmin(lo, c[i]);
            hi = std::fmax(hi, c[i]);
            worst = max_nan(worst, std::fabs(g[i] - c[i]));
        }
        printf("TPS: string, DEVICE=GPU: max |GPU - CPU| = %.3g x range\n", worst / (hi - lo));
        CHECK(worst <= 1e-9 * (hi - lo), "TPS: string on the GPU: %.3g", worst);
        CHECK(strcmp(md(gpu, "DEVICE_UPLOADS"), "1") == 0, "uploads %s",
              md(gpu, "DEVICE_UPLOADS"));
    }
    for (GDALDataset *ds : {gpu, cpu})
        if (ds)
            GDALClose(ds);
    return 0;
}

static int fallback(const std::string &tps, const std::string &dir)
{
    g_last_error.clear();
    GDALDataset *gpu = open_tps(tps, "GPU", nullptr);
    CHECK(gpu == nullptr, "DEVICE=GPU opened without a GPU");
    CHECK(g_last_error.find("GPU") != std::string::npos, "message: %s", g_last_error.c_str());
    printf("DEVICE=GPU: %s\n", g_last_error.c_str());
    if (gpu)
        GDALClose(gpu);
    g_last_error.clear();
    gpu = open_tps_string(dir, "GPU");
    CHECK(gpu == nullptr, "TPS: string, DEVICE=GPU opened without a GPU");
    CHECK(g_last_error.find("GPU") != std::string::npos, "message: %s", g_last_error.c_str());
    if (gpu)
        GDALClose(gpu);
    GDALDataset *autods = open_tps(tps, "AUTO", nullptr), *cpu = open_tps(tps, "CPU", nullptr);
    CHECK(autods && cpu, "AUTO / CPU: %s", g_last_error.c_str());
    if (autods && cpu) {
        CHECK(strcmp(md(autods, "DEVICE"), "CPU") == 0, "DEVICE=%s", md(autods, "DEVICE"));
        /* 256 x 64 pixels of 2000 points: a read AUTO would give a GPU
         * (under valgrind, TPS_TEST_QUICK=1: 64 x 16 of 300 points). */
        const char *quick = getenv("TPS_TEST_QUICK");
        const int w = quick && strcmp(quick, "1") == 0 ? 64 : 256, h = w / 4;
        const size_t n = size_t(w) * h;
        std::vector<double> va(n, NAN), vc(n, NAN);
        for (int k = 1; k <= 3; ++k) {
            CHECK(autods->GetRasterBand(k)->RasterIO(GF_Read, 100, 200, w, h, va.data(), w, h,
                                                      GDT_Float64, 0, 0, nullptr) == CE_None,
                  "AUTO read: %s", g_last_error.c_str());
            CHECK(cpu->GetRasterBand(k)->RasterIO(GF_Read, 100, 200, w, h, vc.data(), w, h,
                                                   GDT_Float64, 0, 0, nullptr) == CE_None,
                  "CPU read: %s", g_last_error.c_str());
            size_t differ = 0;
            for (size_t i = 0; i < n; ++i)
                differ += !(va[i] == vc[i]); /* NaN counts as different */
            CHECK(differ == 0, "band %d: AUTO differs from the CPU in %zu pixels", k, differ);
        }
        CHECK(strcmp(md(autods, "DEVICE_UPLOADS"), "0") == 0, "uploads %s",
              md(autods, "DEVICE_UPLOADS"));
    }
    for (GDALDataset *ds : {autods, cpu})
        if (ds)
            GDALClose(ds);
    return 0;
}

int main(int argc, char **argv)
{
    const std::string mode = argc > 1 ? argv[1] : "share";
    GDALAllRegister();
    CPLPushErrorHandler(capture);
    if (!GDALGetDriverByName("TPS")) {
        fprintf(stderr, "the TPS driver is not registered: set GDAL_DRIVER_PATH\n");
        return 1;
    }
    char dir[] = "/tmp/tps_gpu_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    const std::string tps = write_fixture(dir);
    char why[512];
    const bool expected = gpu_expected(why, sizeof why) != 0;
    GDALDataset *first = nullptr;
    int rc;
    if (mode == "fallback") {
        if (expected) {
            printf("SKIP: the probe finds %s; run with CUDA_VISIBLE_DEVICES= to test the "
                   "fallback\n", why);
            rc = 77;
        } else {
            printf("fallback: %s\n", why);
            rc = fallback(tps, dir);
        }
    } else if (!expected) {
        printf("SKIP: %s\n", why);
        rc = 77;
    } else {
        printf("the probe finds %s: every GPU check must pass\n", why);
        /* The first open, kept: the model lives while a handle does, so
         * SOLVES stays 1 across the test, and it was solved on the GPU. */
        first = open_tps(tps, "GPU", nullptr);
        CHECK(first != nullptr, "a GPU is present but DEVICE=GPU does not open: %s",
              g_last_error.c_str());
        rc = first ? share(tps, false) : 1;
        if (rc == 0)
            rc = share(std::string(dir) + "/local.tps", true);
        if (rc == 0)
            rc = threads_gpu(tps);
        if (rc == 0)
            rc = threads_gpu(std::string(dir) + "/local.tps");
        if (rc == 0)
            rc = quantities(dir, false);
        if (rc == 0)
            rc = quantities(dir, true);
        if (rc == 0)
            rc = masks(tps, "GPU");
        if (rc == 0)
            rc = tps_string_gpu(dir);
        if (rc == 0)
            rc = budget(dir);
        if (first && gpu_test_broken_on_purpose())
            CHECK(strcmp(md(first, "DEVICE"), "CPU") == 0, "DEVICE=%s, expected CPU "
                  "(TPS_TEST_BREAK_GPU=1: wrong on purpose)", md(first, "DEVICE"));
    }
    if (first)
        GDALClose(first);
    if (rc != 77)
        printf("%d checks, %d failed\n", checks, failures);
    VSIUnlink((std::string(dir) + "/points.csv").c_str());
    remove_models(tps); /* the solved models kept next to it */
    remove_models(std::string(dir) + "/local.tps");
    VSIUnlink(tps.c_str());
    VSIUnlink((std::string(dir) + "/local.tps").c_str());
    VSIRmdir(dir);
    return rc == 77 ? 77 : (failures || rc ? 1 : 0);
}
