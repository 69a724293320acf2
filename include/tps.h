/*
 * tps.h: the public C11 API of the gdal-tps engine.
 *
 * Scattered points in, a thin plate spline model out, the model evaluated
 * into caller-owned strided buffers. No GDAL here: the driver is the only
 * place that knows GDAL.
 *
 * Conventions (PROJ-like):
 *  - every call that can fail takes a tps_context, which carries the last
 *    error (code and message); one context per thread. A NULL context is
 *    allowed in every call: the call does the same work and returns the same
 *    status, only the message (and the log lines) are lost;
 *  - objects are opaque; tps_*_destroy returns NULL so that callers can
 *    write `m = tps_model_destroy(m);`;
 *  - a tps_model is immutable once created: any number of threads may
 *    evaluate one model at the same time, each with its own context.
 *
 * The mathematics: for each band,
 *     f(x) = sum_i w_i phi(|x - x_i|) + a0 + a1 x + a2 y,  phi(r) = r^2 log r,
 * with sum w_i = sum w_i x_i = sum w_i y_i = 0 and (K + lambda I) w + P a = z.
 * With linear covariates c_1 .. c_p (tps_fit_options.covariates: a partial
 * thin plate spline, as R's fields::Tps(Z =)) the fixed part P = [1 x y]
 * becomes [1 x y c_1 .. c_p], f gains sum_k b_k c_k(x) and the side
 * conditions sum_i w_i c_k(x_i) = 0.
 * lambda means what `smoothing` means in scipy's
 * RBFInterpolator(kernel='thin_plate_spline', degree=1), in the units of
 * the coordinates given to tps_model_create.
 */
#ifndef TPS_H
#define TPS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TPS_VERSION_MAJOR 0
#define TPS_VERSION_MINOR 4
#define TPS_VERSION_PATCH 0

typedef struct tps_context tps_context;
typedef struct tps_model tps_model;

typedef enum tps_status {
    TPS_OK = 0,
    TPS_ERR_INVALID_ARGUMENT,   /* NULL or out-of-range argument */
    TPS_ERR_TOO_FEW_POINTS,     /* fewer than 3 distinct usable points */
    TPS_ERR_COLLINEAR,          /* all points on one line: the plane is undetermined */
    TPS_ERR_SINGULAR,           /* factorisation failed: degenerate input */
    TPS_ERR_MEMORY_LIMIT,       /* the dense system would exceed the allowed memory */
    TPS_ERR_OUT_OF_MEMORY,      /* an allocation failed */
    TPS_ERR_DEVICE_UNAVAILABLE, /* the requested device cannot be used */
    TPS_ERR_INTERNAL,
    TPS_ERR_BAD_MODEL_DATA,     /* saved model bytes that are damaged, truncated or foreign */
    TPS_ERR_MODEL_MISMATCH      /* a valid saved model, but of other inputs (hash differs) */
} tps_status;

/* Where work runs. */
typedef enum tps_device {
    TPS_DEVICE_AUTO = 0, /* the fastest available for the work */
    TPS_DEVICE_CPU = 1,
    TPS_DEVICE_GPU = 2
} tps_device;

/* ---- context ------------------------------------------------------------ */

/* Messages that are not errors: warnings (e.g. coincident points merged) and
 * debug lines (e.g. counts of dropped values). The driver forwards them to
 * CPLError(CE_Warning) and CPLDebug. */
typedef enum tps_log_level { TPS_LOG_DEBUG = 1, TPS_LOG_WARNING = 2 } tps_log_level;
typedef void (*tps_log_fn)(void *user_data, tps_log_level level, const char *message);

tps_context *tps_context_create(void);
tps_context *tps_context_destroy(tps_context *ctx);
void tps_context_set_log(tps_context *ctx, tps_log_fn fn, void *user_data);
/* The last error; TPS_OK and "" when the last call succeeded
 * (TPS_ERR_INVALID_ARGUMENT and "no context" for a NULL context). */
tps_status tps_context_errno(const tps_context *ctx);
const char *tps_context_errmsg(const tps_context *ctx);
const char *tps_status_string(tps_status status);

/* ---- model -------------------------------------------------------------- */

/* How the surface is built (docs/design.md, "Local mode").
 * GLOBAL: one dense spline over all points (O(N^2) memory, O(N^3) time).
 * LOCAL: a partition of unity over overlapping patches of a quadtree, a
 * spline solved per patch, blended with C2 weights: O(N) memory and time.
 * AUTO: GLOBAL up to TPS_AUTO_GLOBAL_MAX_POINTS points (with a usable GPU
 * and device != CPU: TPS_AUTO_GLOBAL_MAX_POINTS_GPU; with cross_validation
 * TPS_AUTO_GLOBAL_MAX_POINTS; with a GCV band TPS_AUTO_GLOBAL_MAX_POINTS_GCV)
 * when its dense system (and GCV's) fits max_memory, else LOCAL. */
typedef enum tps_mode { TPS_MODE_AUTO = 0, TPS_MODE_GLOBAL = 1, TPS_MODE_LOCAL = 2 } tps_mode;

#define TPS_AUTO_GLOBAL_MAX_POINTS 5000

/* How a GLOBAL model's system is solved (docs/design.md, "The iterative
 * solve"). DIRECT: the dense factorisation (O(N^2) memory, O(N^3) time;
 * GCV, cross-validation, covariates and the standard error need it).
 * ITERATIVE: preconditioned GMRES with fast products (O(N) memory, about
 * O(N) work per iteration; 10-20 iterations measured from 10^3 to 10^5
 * points), to a relative residual of solver_tolerance. AUTO: DIRECT with
 * covariates or cross-validation, else DIRECT up to
 * TPS_AUTO_DIRECT_MAX_POINTS points (TPS_AUTO_GLOBAL_MAX_POINTS_GPU when
 * the GPU can solve) when its dense system fits max_memory, else
 * ITERATIVE. LOCAL models solve their patches directly whatever this says. */
typedef enum tps_solver {
    TPS_SOLVER_AUTO = 0,
    TPS_SOLVER_DIRECT = 1,
    TPS_SOLVER_ITERATIVE = 2
} tps_solver;
#define TPS_AUTO_DIRECT_MAX_POINTS 5000
/* The iterative solve's default relative residual. */
#define TPS_DEFAULT_SOLVER_TOLERANCE 1e-10
/* ... or this many when the solve may run on a usable GPU (cuSOLVER). */
#define TPS_AUTO_GLOBAL_MAX_POINTS_GPU 30000
/* ... or this many with a GCV band (its eigendecomposition runs on the CPU). */
#define TPS_AUTO_GLOBAL_MAX_POINTS_GCV 3000
/* LOCAL models' defaults and limits (tps_fit_options; the driver's open
 * options PATCH_POINTS and OVERLAP are built from these). */
#define TPS_DEFAULT_PATCH_POINTS 500
#define TPS_MIN_PATCH_POINTS 20
#define TPS_DEFAULT_OVERLAP 1.5
#define TPS_MAX_OVERLAP 4.0 /* and > 1 */
/* Linear covariates a model may have (tps_fit_options.n_covariates). */
#define TPS_MAX_COVARIATES 16

/* Progress of a long solve: `stage` says what runs (e.g. "band 1:
 * factorising 7997 x 7997 (Cholesky)"), `fraction` how much of that stage is
 * done, from 0 to 1, never decreasing within a stage. Called only on the
 * thread that called tps_model_create, on whole-percent steps (about a
 * hundred times per stage at most); rate limiting (say once a second) is
 * the caller's. */
typedef void (*tps_progress_fn)(void *user_data, const char *stage, double fraction);

/* Every default is 0 (or NULL): a zero-initialised tps_fit_options and one
 * from tps_fit_options_init are the same (mode AUTO). */
typedef struct tps_fit_options {
    /* Bytes the dense solve may allocate; 0 means no limit. Exceeding it
     * fails with TPS_ERR_MEMORY_LIMIT and a message giving the bytes needed. */
    size_t max_memory;
    /* Threads for building the system and computing residuals; <= 0 (the
     * default): one. (The factorisation runs on OpenBLAS's own threads.) */
    int num_threads;
    /* Where the O(N^3) part of the solve runs: CPU; GPU (cuSOLVER, when a
     * GPU and cuSOLVER are usable and the device has the memory, else the
     * CPU, with a debug line); AUTO (default): the GPU from a few thousand
     * points on, where it pays. */
    tps_device device;
    /* Bytes of GPU memory the GPU solve may allocate; 0: no limit beyond
     * what the device has free. Over it, the solve runs on the CPU. */
    size_t gpu_max_memory;
    /* AUTO (the default), GLOBAL or LOCAL. */
    tps_mode mode;
    /* LOCAL: a quadtree cell is split while it holds more points than this
     * (>= TPS_MIN_PATCH_POINTS; 0: TPS_DEFAULT_PATCH_POINTS). */
    size_t patch_points;
    /* LOCAL: each patch is its cell enlarged by this factor (> 1, <=
     * TPS_MAX_OVERLAP; 0: TPS_DEFAULT_OVERLAP). With a GCV band and both
     * patch_points and overlap 0, the patches are sized from GCV's lambda:
     * GCV runs on the defaults, and again on larger cells (Overlap 1.75 or
     * 2) while the cells are small against the spline's smoothing length,
     * within a work cap (docs/design.md, "Patch sizes for GCV");
     * tps_model_info says what was used. Either given: kept as given. */
    double overlap;
    /* Progress reports of the long parts (building the system, the
     * factorisation, GCV's eigendecomposition, local patches): NULL (the
     * default) or a function, called with progress_data. */
    tps_progress_fn progress;
    void *progress_data;
    /* Automatic smoothing: NULL (the default), or n_bands flags; a nonzero
     * smoothing_gcv[b] makes band b's lambda the minimiser of the
     * generalised cross-validation score (Craven & Wahba) and ignores
     * smoothing[b]. GLOBAL: one eigendecomposition, on the CPU; LOCAL: one
     * lambda for the whole model, the minimiser of the blended model's own
     * GCV score on a grid of 10 values per decade, from each patch's
     * eigendecomposition (on the CPU threads, or batched on the GPU).
     * tps_band_info reports the choice; the solve with the chosen lambda
     * is the fixed-lambda solve. */
    const int *smoothing_gcv;
    /* Per-point weights: NULL (the default: all 1), or n_points values,
     * each finite and > 0 (else TPS_ERR_INVALID_ARGUMENT) for the points
     * with finite x and y. The fit minimises
     *     sum_i weight_i (z_i - f(x_i))^2 + lambda J(f),
     * i.e. solves (K + lambda W^-1) w + P a = z (weight = 1 / measurement
     * variance, up to a factor lambda absorbs; GCV is weighted too).
     * Coincident points merge into their weighted mean, with the sum of
     * their weights. GLOBAL and LOCAL; solves run on the CPU. */
    const double *weights;
    /* Nonzero: leave-one-out RMSE and MAE (tps_band_info) for bands of a
     * fixed lambda too, in closed form from the inverse of the solve's
     * system (Rippa 1999; defined for lambda = 0 as well): one extra
     * ~2/3 N^3 (dpotri) per factorisation, on the CPU. LOCAL models: each
     * patch's, blended as the surface is (exact for the model's partition:
     * the blend of the patch splines fitted without the point; with
     * covariates times a factor for the point's leverage on their
     * coefficients, exact with one patch). GCV bands have them whatever
     * this says. */
    int cross_validation;
    /* GLOBAL models: AUTO (the default), DIRECT or ITERATIVE (tps_solver).
     * ITERATIVE with MODE AUTO builds a GLOBAL model; with LOCAL, with
     * GCV or cross-validation (which need the dense factorisation), or with
     * covariates (its preconditioner and products know only the affine
     * part), it fails with TPS_ERR_INVALID_ARGUMENT; AUTO with covariates
     * or cross-validation is DIRECT. An ITERATIVE band has no standard
     * error (tps_band_info.sigma2 NaN; TPS_QUANTITY_STANDARD_ERROR fails
     * with TPS_ERR_INVALID_ARGUMENT): it needs the dense factorisation. */
    tps_solver solver;
    /* ITERATIVE: the relative residual ||[A P; P^T 0][w; a] - [z; 0]|| / ||z||
     * to reach, in [1e-14, 1e-6]; 0: TPS_DEFAULT_SOLVER_TOLERANCE. */
    double solver_tolerance;
    /* Linear covariates: 0 (the default) to TPS_MAX_COVARIATES columns;
     * covariates[k][i] is covariate k at point i (n_points values each).
     * The fixed part of the spline is [1 x y c_1 .. c_p] (a partial thin
     * plate spline, R's fields::Tps(Z =)): f(x) = spline + a0 + a1 x + a2 y
     * + sum_k b_k c_k(x), the spline's weights orthogonal to every column
     * (fixed lambda, GCV, LOO and weights alike). A point whose covariate
     * is not finite is dropped, with a warning giving the count
     * (tps_model_info.n_dropped_covariate). A covariate that is constant,
     * or a linear combination of x, y, a constant and the covariates
     * before it, over a band's points fails with TPS_ERR_COLLINEAR, naming
     * it. The global solve runs on the CPU. LOCAL models (AUTO picks as
     * without covariates) keep one coefficient per covariate and band,
     * estimated from the patches (docs/design.md, "Covariates on local
     * models"): fixed lambda, GCV, LOO, weights and the standard error
     * (TPS_QUANTITY_STANDARD_ERROR), evaluated on the CPU (DEVICE=GPU fails
     * with TPS_ERR_DEVICE_UNAVAILABLE). Evaluation needs the
     * covariates' values at every target (tps_eval_options.covariates),
     * and derivative quantities their derivatives there
     * (tps_eval_options.covariate_derivatives). */
    size_t n_covariates;
    const double *const *covariates;
    /* NULL, or n_covariates names for messages ("dist"). */
    const char *const *covariate_names;
} tps_fit_options;

void tps_fit_options_init(tps_fit_options *options);

/* Solve the spline of `n_bands` value sets over the same `n_points`
 * locations. values[b][i] is band b's value at point i; a NaN or infinite
 * value is missing (that point is left out of that band's solve only).
 * Points with a non-finite x or y are dropped. Points at the same (x, y)
 * are merged: their values are averaged per band (a warning says how many).
 * smoothing[b] >= 0 is band b's lambda; bands with the same lambda and the
 * same missing values share one factorisation. */
tps_model *tps_model_create(tps_context *ctx, size_t n_points, const double *x, const double *y,
                            size_t n_bands, const double *const *values, const double *smoothing,
                            const tps_fit_options *options);
tps_model *tps_model_destroy(tps_model *model);

typedef struct tps_model_info {
    size_t n_input;          /* points given */
    size_t n_points;         /* distinct points the model holds */
    size_t n_dropped;        /* points dropped for a non-finite x or y */
    size_t n_merged;         /* points merged into another at the same location */
    size_t n_bands;
    size_t n_factorisations; /* distinct systems solved */
    double solve_seconds;    /* wall time of tps_model_create */
    tps_device solve_device; /* CPU, or GPU if any factorisation ran there */
    double min_x, min_y, max_x, max_y; /* bounding box of the points */
    tps_mode mode;           /* GLOBAL or LOCAL: what was built */
    size_t n_patches;        /* LOCAL: patches; GLOBAL: 0 */
    /* Point-pixel pairs one evaluated pixel costs, the engine's own estimate
     * (what DEVICE=AUTO weighs): n_points (GLOBAL), twice the mean patch
     * size (LOCAL: a pixel blends a few patches). */
    double pairs_per_pixel;
    /* Host-to-device copies of the model made so far: 0 before the first GPU
     * evaluation, 1 after any number of them from any number of threads. */
    size_t device_uploads;
    size_t n_covariates;        /* linear covariates of the fixed part */
    size_t n_dropped_covariate; /* points dropped for a non-finite covariate */
    /* LOCAL: the partition's settings, those given or, for a GCV model
     * without them, those the patch sizing rule chose; GLOBAL and models
     * read from a file: 0. */
    size_t patch_points;
    double overlap;
} tps_model_info;

typedef struct tps_band_info {
    size_t n_points;          /* points that entered this band's solve */
    size_t n_missing;         /* points whose value was missing (NaN, inf) */
    double smoothing;         /* lambda (with GCV: the chosen one) */
    double max_abs_residual;  /* max |f(x_i) - z_i| over the band's points */
    double value_min, value_max;
    /* GCV bands (smoothing_gcv): 1, else 0; the next two are NaN for
     * bands of a fixed lambda, the LOO ones too unless cross_validation. */
    int smoothing_gcv;
    double gcv_score;         /* N ||(I - A) z||^2 / (N - tr A)^2 at the chosen lambda
                                 (weighted: N sum w_i r_i^2 / (N - tr A)^2) */
    double effective_df;      /* tr A: 3 (a plane) to N (interpolation; LOCAL:
                                 more than 3 at any lambda, a plane per patch) */
    /* leave-one-out residuals z_i - f_(-i)(x_i), closed form: r_i / (1 - A_ii)
     * (GCV), w_i / (M^-1)_ii (fixed lambda); LOCAL: the patches' own,
     * blended as the surface is. Unweighted RMSE and MAE */
    double loo_rmse, loo_mae;
    /* How this band was solved: DIRECT (also every LOCAL model) or
     * ITERATIVE; GMRES iterations and the relative residual reached,
     * measured by a product after the last iteration (DIRECT: 0 and NaN). */
    tps_solver solver;
    int iterations;
    double relative_residual;
    /* The variances of the standard error (TPS_QUANTITY_STANDARD_ERROR), the
     * maximum-likelihood estimates R's fields::Krig puts in its best.model
     * for this lambda (fields' sigma.MLE and tauHat.MLE^2):
     *   sigma2 = 8 pi sum_i w_i z_i / N (0 if negative), N the observations
     *            of the band (before merging), w the kernel weights: the
     *            process variance for fields' kernel r^2 log r / (8 pi);
     *   tau2   = sigma2 lambda / (8 pi), the noise variance (0 for lambda 0).
     * In the band's unit squared (sigma2 also per unit of the kernel). NaN
     * for a LOCAL model (its standard error pools its patches' estimates
     * when first evaluated), for a band solved ITERATIVE (no standard
     * error: it needs the dense factorisation) and for models saved before
     * format version 4. */
    double sigma2, tau2;
} tps_band_info;

tps_status tps_model_get_info(tps_context *ctx, const tps_model *model, tps_model_info *info);
tps_status tps_model_get_band_info(tps_context *ctx, const tps_model *model, size_t band,
                                   tps_band_info *info);
/* The model's distinct points (after dropping and merging, info.n_points
 * of them) in the coordinates they were given in, e.g. for masks that
 * depend on where the data are. x and y receive info.n_points values each;
 * they are the model's own coordinates mapped back (x = cx + scale * u),
 * so equal to the input up to rounding (~1e-16 relative). */
tps_status tps_model_get_points(tps_context *ctx, const tps_model *model, double *x, double *y);
/* Band `band`'s covariate coefficients b_1 .. b_p in the caller's units
 * (the band's unit per unit of each covariate): info.n_covariates values
 * into b (nothing for a model without covariates). */
tps_status tps_model_get_covariate_coefficients(tps_context *ctx, const tps_model *model,
                                                size_t band, double *b);

/* ---- saved models ------------------------------------------------------- */

/* A solved model as bytes, so that a solve is done once and kept; file
 * I/O is the caller's (the driver goes through GDAL's VSI). The bytes are
 * a versioned binary (docs/design.md gives the layout) in this machine's
 * byte order: a fixed header of TPS_MODEL_HEADER_BYTES, the model's arrays,
 * the caller's opaque extra bytes, and a checksum of all of it.
 *
 * `hash` is the caller's digest of everything the model depends on (the
 * points, the options of the solve): it is stored, and a load that expects
 * another one fails with TPS_ERR_MODEL_MISMATCH. Evaluating a loaded model
 * gives bit-identical results to evaluating the saved one. */
#define TPS_MODEL_HEADER_BYTES 128

/* GLOBAL and LOCAL models alike (a LOCAL model whose patch lookup is
 * beyond what a load would take is refused with TPS_ERR_INVALID_ARGUMENT).
 * Serialises `model` with `hash` and `extra_size` bytes of `extra` (may be
 * NULL when 0) into a buffer allocated here: *data, *size bytes, to free
 * with tps_free. */
tps_status tps_model_save(tps_context *ctx, const tps_model *model, const unsigned char hash[32],
                          const void *extra, size_t extra_size, void **data, size_t *size);

/* Checks the first header_size (>= TPS_MODEL_HEADER_BYTES) bytes of saved
 * model data and, when they are a valid header of a model saved with
 * expected_hash (NULL: any hash), gives the total size the data must have.
 * Lets a reader reject a stale or foreign file, and bound what it reads,
 * before reading the rest. TPS_ERR_BAD_MODEL_DATA, TPS_ERR_MODEL_MISMATCH
 * otherwise. */
tps_status tps_model_saved_size(tps_context *ctx, const void *header, size_t header_size,
                                const unsigned char expected_hash[32], size_t *total_size);

/* The point and band counts that a header tps_model_saved_size accepts
 * announces (the same checks, any hash), so that a reader can refuse a
 * model of the wrong shape before it reads the rest. */
tps_status tps_model_saved_counts(tps_context *ctx, const void *header, size_t header_size,
                                  size_t *n_points, size_t *n_bands);

/* The model saved in data[0, size), or NULL with TPS_ERR_BAD_MODEL_DATA
 * (anything damaged: signature, version, byte order, sizes, counts,
 * checksum, non-finite or inconsistent values) or TPS_ERR_MODEL_MISMATCH
 * (saved with a hash other than expected_hash; NULL: any hash). Nothing
 * is allocated before the counts are checked against `size`. *extra and
 * *extra_size (either may be NULL) receive the saved extra bytes: a
 * pointer into `data`, valid while it is. */
tps_model *tps_model_load(tps_context *ctx, const void *data, size_t size,
                          const unsigned char expected_hash[32], const void **extra,
                          size_t *extra_size);

/* Frees memory the engine allocated for the caller (tps_model_save's data). */
void tps_free(void *data);

/* ---- evaluation --------------------------------------------------------- */

typedef enum tps_type { TPS_FLOAT32 = 1, TPS_FLOAT64 = 2 } tps_type;

/* A window of a regular grid of evaluation points. Cell (c, r) of the
 * window, for c < ncols and r < nrows, is the grid's cell
 * (i, j) = (first_col + c, first_row + r), evaluated at
 *   x = x0 + i * col_dx + j * row_dx,  y = y0 + i * col_dy + j * row_dy.
 * A cell's value depends only on (i, j), never on the window around it:
 * any window, block or thread split of a raster gives the same bytes.
 * tps_grid_from_geotransform fills it from a GDAL geotransform, so rotated
 * grids and overviews (their own geotransform) come for free. */
typedef struct tps_grid {
    double x0, y0;         /* the centre of grid cell (0, 0) */
    double col_dx, col_dy;
    double row_dx, row_dy;
    size_t first_col, first_row;
    size_t ncols, nrows;
} tps_grid;

/* The pixel centres of the window [x_off, x_off + ncols) x [y_off, y_off +
 * nrows) of a raster whose geotransform is gt (GDAL's six coefficients). */
void tps_grid_from_geotransform(tps_grid *grid, const double gt[6], size_t x_off, size_t y_off,
                                size_t ncols, size_t nrows);

/* The centre (*x, *y) of the grid's cell (i, j): absolute indices (not
 * offset by first_col, first_row), any, inside the window or not. The
 * formula the engine evaluates at, in its order of operations:
 * x = (x0 + j row_dx) + i col_dx, y = (y0 + j row_dy) + i col_dy. For
 * callers that place other things on the same pixels (the driver's masks). */
void tps_grid_cell_centre(const tps_grid *grid, double i, double j, double *x, double *y);

/* What an output holds: the surface f of its band, or a quantity derived
 * analytically from the same weights (docs/design.md, "Derivative bands").
 * x, y are the coordinates given to tps_model_create (the grid's CRS), not
 * the grid's column and row: on a north-up raster y grows upwards, against
 * the rows. Slope and aspect follow `gdaldem` and treat f as a height in
 * the coordinates' unit. A LOCAL model's derivatives are those of its
 * blend of patch splines (on the GPU too). Each quantity is one row of the
 * engine's table (tps_quantity_info): its name, unit, the sums it needs
 * and its formula from them. */
typedef enum tps_quantity {
    TPS_QUANTITY_VALUE = 0,     /* f */
    TPS_QUANTITY_DZDX = 1,      /* df/dx */
    TPS_QUANTITY_DZDY = 2,      /* df/dy */
    TPS_QUANTITY_SLOPE = 3,     /* atan(|grad f|), degrees in [0, 90) */
    TPS_QUANTITY_ASPECT = 4,    /* azimuth of -grad f (the downhill direction), degrees
                                 * clockwise from +y (north), in [0, 360); NaN where
                                 * grad f is exactly 0 (flat) */
    TPS_QUANTITY_LAPLACIAN = 5, /* d2f/dx2 + d2f/dy2; NaN exactly at a data point of
                                 * nonzero weight, where it is infinite */
    /* Curvatures as GRASS v.surf.rst gives them, f a height in the
     * coordinates' unit (so in 1 / that unit), from fx, fy, fxx, fxy, fyy
     * (y north), p = fx^2 + fy^2, q = 1 + p; NaN exactly at a data point of
     * nonzero weight, as the laplacian: */
    TPS_QUANTITY_PROFILE_CURVATURE = 6,    /* (fxx fx^2 + 2 fxy fx fy + fyy fy^2) / (p q^3/2),
                                            * 0 where p = 0 */
    TPS_QUANTITY_TANGENTIAL_CURVATURE = 7, /* (fxx fy^2 - 2 fxy fx fy + fyy fx^2) / (p q^1/2),
                                            * 0 where p = 0 */
    TPS_QUANTITY_MEAN_CURVATURE = 8,       /* ((1 + fy^2) fxx - 2 fxy fx fy + (1 + fx^2) fyy)
                                            * / (2 q^3/2) */
    /* The prediction standard error of f, R's fields::predictSE for the
     * same fit: sqrt(sigma2 (k(x,x) - v^T S^-1 v)) in the band's unit,
     * with fields' kernel k = r^2 log r / (8 pi), S the saddle matrix of
     * the fit ([K + lambda_f W^-1, T; T^T, 0]), v the kernel and
     * fixed-part column at x, sigma2 and tau2 = sigma2 lambda_f (lambda_f
     * = lambda / (8 pi)) the maximum-likelihood estimates of
     * tps_band_info. With covariates, x's covariate values enter v. lambda = 0 is
     * defined: tau2 = 0, the kriging error of an exact interpolator, 0 at
     * the data points. A LOCAL model blends its patches' standard errors
     * with the partition-of-unity weights, with covariates each adding
     * the variance of the model's one b (docs/design.md gives the
     * approximation; not for LOCAL models with per-point weights). On the
     * first use per band it costs one more
     * factorisation, kept with the model; then ~N^2 flops a pixel. */
    TPS_QUANTITY_STANDARD_ERROR = 9
} tps_quantity;

/* The sums a quantity is formed from, at each pixel (bit flags). */
enum {
    TPS_NEEDS_VALUE = 1,     /* f */
    TPS_NEEDS_GRADIENT = 2,  /* df/dx, df/dy */
    TPS_NEEDS_LAPLACIAN = 4, /* d2f/dx2 + d2f/dy2 */
    TPS_NEEDS_HESSIAN = 8,   /* d2f/dx2, d2f/dxdy, d2f/dy2 */
    TPS_NEEDS_VARIANCE = 16  /* the prediction variance: a solve against the
                              * factorised system per pixel */
};

/* One row of the quantity table. */
typedef struct tps_quantity_desc {
    tps_quantity quantity;
    const char *name;        /* "value", "dzdx", ... (<Quantity> in a .tps file) */
    const char *unit;        /* "degrees", or "": the band's unit over powers of
                              * the coordinates' unit (the description says) */
    const char *description; /* one line */
    unsigned needs;          /* TPS_NEEDS_* */
} tps_quantity_desc;

/* How many quantities there are: tps_quantity values 0 .. count - 1. */
size_t tps_quantity_count(void);
/* Quantity q's row, or NULL when q is not one. */
const tps_quantity_desc *tps_quantity_info(tps_quantity q);
/* The quantity named `name` (case-insensitive) in *q: TPS_OK, or
 * TPS_ERR_INVALID_ARGUMENT when none is. */
tps_status tps_quantity_from_name(const char *name, tps_quantity *q);

/* Where one band's values go: element (col, row) is written at
 * (char *)data + row * line_stride + col * pixel_stride. */
typedef struct tps_output {
    size_t band;
    void *data;
    tps_type type;
    ptrdiff_t pixel_stride; /* bytes */
    ptrdiff_t line_stride;  /* bytes */
    tps_quantity quantity;  /* last, so that {band, data, type, ps, ls} means VALUE */
} tps_output;

/* Arithmetic of the GPU kernels (the CPU always evaluates in double).
 * DOUBLE: FP64 throughout; within 1e-9 x value range of the CPU path.
 * MIXED: the points near a block of 32 x 16 pixels in FP32 (the special-
 * function unit's log2), the others as FP64 multipole expansions, with a
 * rigorous bound of every pixel's error; a block whose bound exceeds
 * `tolerance` x the band's data range, or whose self-check (one pixel
 * recomputed in FP64) disagrees, is recomputed in DOUBLE (docs/design.md,
 * "PRECISION=MIXED"). Global models only: a local model evaluates in FP64.
 * AUTO: the fastest arithmetic that meets `tolerance`: MIXED when the
 * tolerance is at least TPS_MIXED_MIN_TOLERANCE, else DOUBLE. */
typedef enum tps_precision {
    TPS_PRECISION_DOUBLE = 0,
    TPS_PRECISION_MIXED = 1,
    TPS_PRECISION_AUTO = 2
} tps_precision;

/* The default of tps_eval_options.tolerance: relative to each band's data
 * range (tps_band_info's value_max - value_min). */
#define TPS_DEFAULT_TOLERANCE 1e-5
/* Below this tolerance AUTO evaluates in DOUBLE: MIXED's bound would fail
 * (and recompute) nearly every block. */
#define TPS_MIXED_MIN_TOLERANCE 1e-7

/* What one evaluation in MIXED (or AUTO resolved to MIXED) on the GPU did;
 * all 0 for any other evaluation. */
typedef struct tps_eval_stats {
    size_t mixed_blocks;    /* blocks of 32 x 16 pixels evaluated in MIXED, per pass of up to
                             * 4 bands */
    size_t fallback_blocks; /* of them, recomputed in DOUBLE */
    size_t check_failures;  /* of those, the ones whose self-check found an error above the
                             * bound: 0 unless the device's arithmetic is not what the bound
                             * assumes (its documented lg2.approx accuracy) */
    double max_error_estimate; /* the largest error bound over the pixels delivered in MIXED,
                                * relative to the band's data range; 0 when none */
} tps_eval_stats;

/* Values given at every target, read like outputs are written: element
 * (col, row) of a grid window at (const char *)data + row * line_stride +
 * col * pixel_stride; scattered point k at data + k * pixel_stride. A NaN
 * (or infinite) value makes that target's outputs NaN. */
typedef struct tps_plane {
    const void *data;
    tps_type type;
    ptrdiff_t pixel_stride; /* bytes */
    ptrdiff_t line_stride;  /* bytes */
} tps_plane;

typedef struct tps_eval_options {
    int num_threads;           /* CPU threads; <= 0: one */
    tps_device device;         /* AUTO resolves with tps_device_choose */
    tps_precision precision;   /* GPU only */
    /* Bytes of GPU memory a GPU evaluation may allocate (the model's device
     * copy on first use, and its transfer buffers); 0: no limit. Over it the
     * evaluation fails with TPS_ERR_DEVICE_UNAVAILABLE (AUTO: on the CPU). */
    size_t gpu_max_memory;
    /* MIXED and AUTO: the largest error allowed, relative to each band's
     * data range; <= 0 (the default): TPS_DEFAULT_TOLERANCE. */
    double tolerance;
    /* NULL (the default), or where the call reports what MIXED did
     * (zeroed first, filled when the call returns TPS_OK). */
    tps_eval_stats *stats;
    /* A model with covariates: its n_covariates planes, the covariates'
     * values at every target in their own units (NULL otherwise; a model
     * with covariates evaluated without them fails with
     * TPS_ERR_INVALID_ARGUMENT). */
    const tps_plane *covariates;
    /* A model with covariates, for derivative quantities (grids only):
     * NULL (the default; derivative quantities are then refused), or
     * n_covariates * TPS_COV_DERIVATIVES planes, covariate k's derivative
     * d (TPS_COV_DX .. TPS_COV_DYY) at [k * TPS_COV_DERIVATIVES + d], in
     * its unit per unit (or squared unit) of x and y, the grid's CRS
     * coordinates (y as in tps_grid, not the rows). The derivative sums
     * of f gain sum_k b_k times them before the quantity formulas, so
     * every derivative quantity is that of spline + affine + sum_k b_k c_k.
     * Planes a request does not need may have data NULL: gradient
     * quantities read DX, DY; the laplacian DXX, DYY; curvatures all five.
     * A non-finite value makes that pixel's output NaN. How the caller
     * gets them is its business (the driver: differences of the resampled
     * covariate on the grid's lattice, docs/format.md). */
    const tps_plane *covariate_derivatives;
} tps_eval_options;

/* The derivative planes of one covariate (tps_eval_options.covariate_derivatives). */
enum {
    TPS_COV_DX = 0,  /* dc/dx */
    TPS_COV_DY = 1,  /* dc/dy */
    TPS_COV_DXX = 2, /* d2c/dx2 */
    TPS_COV_DXY = 3, /* d2c/dxdy */
    TPS_COV_DYY = 4, /* d2c/dy2 */
    TPS_COV_DERIVATIVES = 5
};

void tps_eval_options_init(tps_eval_options *options);

/* Evaluate the listed bands over the grid in one pass over the points (the
 * distances are computed once for all bands). Outputs of a derivative
 * quantity take a second pass of their own (once per model band, however
 * many quantities of it are asked for). */
tps_status tps_evaluate_grid(tps_context *ctx, const tps_model *model, const tps_grid *grid,
                             size_t n_outputs, const tps_output *outputs,
                             const tps_eval_options *options);

/* Evaluate one band at scattered locations. */
tps_status tps_evaluate_points(tps_context *ctx, const tps_model *model, size_t band, size_t n,
                               const double *x, const double *y, double *out,
                               const tps_eval_options *options);

/* ---- devices ------------------------------------------------------------ */

const char *tps_device_name(tps_device device);
/* TPS_OK when `device` can evaluate in this process; otherwise the reason
 * in ctx (no GPU support built in, no driver, no device, ...). */
tps_status tps_device_check(tps_context *ctx, tps_device device);
/* The device that evaluates a job of `pairs` point-pixel pairs when
 * `requested` is asked for: AUTO is the GPU when one is usable and the job
 * is big enough for the GPU to win, else the CPU. Never fails: GPU is
 * returned only when usable. */
tps_device tps_device_choose(tps_device requested, double pairs);
/* A description of the GPU (name, memory) or "" when there is none. */
const char *tps_gpu_description(void);

/* The CPU evaluation kernel this processor runs: "avx512", "avx2" or
 * "generic" (picked at run time). */
const char *tps_cpu_description(void);

#ifdef __cplusplus
}
#endif

#endif /* TPS_H */
