/* mixed_fields.h: the generated fields PRECISION=MIXED is checked on
 * (test_mixed.c, small, each with the tolerance it must meet) and measured
 * on (bench/mixed_suite.c, up to issue 16's sizes): one definition of a
 * field (points, values per band, smoothing, the raster read over it), so
 * that the bench's rows and the test's are the same fields. Drawn from
 * testdata.h's stream, in a fixed order: the same table gives the same
 * points. */
#ifndef TPS_TEST_MIXED_FIELDS_H
#define TPS_TEST_MIXED_FIELDS_H

#include "tps.h"

#include <stdlib.h>

#include "testdata.h"

enum { MF_BANDS = 3 };

/* A band's values at (u, v) in the unit box (point i). */
enum {
    MF_NONE = -1,     /* no band */
    MF_ISSUE16,       /* sin 9u cos 6v + 0.3u */
    MF_WIGGLY,        /* sin 6u cos 4v + 0.3u (test_gpu's) */
    MF_SMOOTH,        /* sin 2u cos 1.5v + 0.5u */
    MF_FRANKE,        /* testdata.h's */
    MF_BUMP,          /* 100 exp(-8 |(u, v) - (0.4, 0.6)|^2) */
    MF_BUMP_HOLES,    /* the bump, NaN at every 7th point */
    MF_ROUGH,         /* sin 20u cos 17v */
    MF_NOISE,         /* uniform in [0, 1) */
    MF_PRODUCT_HOLES, /* 1000 u v, NaN at every 11th point */
    MF_QUADRATIC      /* u^2 + v^2 */
};

/* Where the points are. */
enum {
    MF_BOX,       /* uniform over 1000 x 1000 at the origin */
    MF_UTM,       /* uniform over 20 x 20 km at (500 km, 5000 km) */
    MF_ELONGATED, /* uniform over 4000 x 1000 */
    MF_CLUSTERED, /* the box, 80% of the points in 0.25% of it */
    MF_LATTICE    /* the box, a 50-column lattice jittered by 1e-3 of a cell */
};

/* The raster read over the points' box (cols x rows pixels). */
enum {
    MF_COVER,   /* the box */
    MF_ROTATED, /* 50% past the box on every side, slightly rotated */
    MF_ZOOM,    /* a tenth of the box */
    MF_COARSE   /* coarse_cols x coarse_rows pixels over the box */
};

typedef struct mixed_field {
    const char *name;
    size_t n;
    int layout;          /* MF_BOX .. */
    int kind[MF_BANDS];  /* band b's values (MF_ISSUE16 ..), MF_NONE: no band b and after */
    double lambda;       /* in the points' units */
    int grid;            /* MF_COVER .. */
    double tolerance;    /* test_mixed: the tolerance it is checked at (the bench: 0) */
    int smooth;          /* test_mixed: must stay in MIXED at the default tolerance */
} mixed_field;

static inline size_t mixed_field_bands(const mixed_field *f)
{
    size_t nb = 0;
    while (nb < MF_BANDS && f->kind[nb] != MF_NONE)
        ++nb;
    return nb;
}

static double mixed_field_value(int kind, double u, double v, size_t i)
{
    const double bump = 100.0 * exp(-8 * ((u - 0.4) * (u - 0.4) + (v - 0.6) * (v - 0.6)));
    switch (kind) {
    case MF_ISSUE16: return sin(9 * u) * cos(6 * v) + 0.3 * u;
    case MF_WIGGLY: return sin(6 * u) * cos(4 * v) + 0.3 * u;
    case MF_SMOOTH: return sin(2 * u) * cos(1.5 * v) + 0.5 * u;
    case MF_FRANKE: return franke(u, v);
    case MF_BUMP: return bump;
    case MF_BUMP_HOLES: return i % 7 == 0 ? NAN : bump;
    case MF_ROUGH: return sin(20 * u) * cos(17 * v);
    case MF_NOISE: return uniform();
    case MF_PRODUCT_HOLES: return i % 11 == 0 ? NAN : 1000.0 * u * v;
    default: return u * u + v * v;
    }
}

/* The points' box: origin (box[0], box[1]), extent box[2] x box[3]. */
static inline void mixed_field_box(const mixed_field *f, double box[4])
{
    box[0] = f->layout == MF_UTM ? 500000 : 0;
    box[1] = f->layout == MF_UTM ? 5000000 : 0;
    box[2] = f->layout == MF_UTM ? 20000 : f->layout == MF_ELONGATED ? 4000 : 1000;
    box[3] = f->layout == MF_UTM ? 20000 : 1000;
}

/* The field's GLOBAL model (threads for its solve); NULL on failure, with
 * ctx's message (empty when out of memory here). *n_bands: its bands. */
static tps_model *mixed_field_model(tps_context *ctx, const mixed_field *f, int threads,
                                    size_t *n_bands)
{
    const size_t nb = mixed_field_bands(f);
    double *x = malloc(f->n * sizeof *x), *y = malloc(f->n * sizeof *y), *z[MF_BANDS] = {0};
    int ok = x && y;
    for (size_t b = 0; b < nb; ++b)
        ok &= (z[b] = malloc(f->n * sizeof(double))) != NULL;
    double box[4];
    mixed_field_box(f, box);
    tps_model *model = NULL;
    for (size_t i = 0; ok && i < f->n; ++i) {
        double u = uniform(), v = uniform();
        if (f->layout == MF_CLUSTERED && i % 5) {
            u = 0.3 + 0.05 * u;
            v = 0.6 + 0.05 * v;
        } else if (f->layout == MF_LATTICE) {
            u = ((double)(i % 50) + 0.5 + 1e-3 * (u - 0.5)) / 50;
            v = ((double)(i / 50) + 0.5 + 1e-3 * (v - 0.5)) / 50;
        }
        x[i] = box[0] + box[2] * u;
        y[i] = box[1] + box[3] * v;
        for (size_t b = 0; b < nb; ++b)
            z[b][i] = mixed_field_value(f->kind[b], u, v, i);
    }
    if (ok) {
        const double lambda[MF_BANDS] = {f->lambda, f->lambda, f->lambda};
        tps_fit_options fo;
        tps_fit_options_init(&fo);
        fo.mode = TPS_MODE_GLOBAL;
        fo.num_threads = threads;
        model = tps_model_create(ctx, f->n, x, y, nb, (const double *const *)z, lambda, &fo);
    }
    for (size_t b = 0; b < nb; ++b)
        free(z[b]);
    free(x);
    free(y);
    *n_bands = nb;
    return model;
}

/* The raster over the field's box: cols x rows pixels (MF_COARSE:
 * coarse_cols x coarse_rows). */
static inline void mixed_field_grid(const mixed_field *f, size_t cols, size_t rows,
                                    size_t coarse_cols, size_t coarse_rows, tps_grid *grid)
{
    double box[4];
    mixed_field_box(f, box);
    const double x0 = box[0], y0 = box[1], ex = box[2], ey = box[3];
    const double c = (double)cols, r = (double)rows;
    double gt[6] = {x0, ex / c, 0, y0 + ey, 0, -ey / r};
    if (f->grid == MF_ROTATED) {
        gt[0] = x0 - 0.5 * ex;
        gt[1] = 2 * ex / c;
        gt[2] = 0.002 * ex / r;
        gt[3] = y0 + 1.5 * ey;
        gt[4] = 0.001 * ex / c;
        gt[5] = -2 * ey / r;
    } else if (f->grid == MF_ZOOM) {
        gt[0] = x0 + 0.45 * ex;
        gt[1] = 0.1 * ex / c;
        gt[3] = y0 + 0.55 * ey;
        gt[5] = -0.1 * ey / r;
    } else if (f->grid == MF_COARSE) {
        cols = coarse_cols;
        rows = coarse_rows;
        gt[1] = ex / (double)cols;
        gt[5] = -ey / (double)rows;
    }
    tps_grid_from_geotransform(grid, gt, 0, 0, cols, rows);
}

#endif
