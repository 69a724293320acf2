# fields_covse.R: the references for linear covariates and the standard
# error, from R's fields::Tps(Z =), predict() and predictSE() (Debian
# r-cran-fields). The tests read what this writes and need no R:
#
#   Rscript autotest/r/fields_covse.R DATA_DIR OUT_DIR
#
# DATA_DIR holds meuse.csv and meuse_grid.csv (the repository's data/);
# OUT_DIR (autotest/r/fields_covse/) receives, per case:
#   CASE_points.csv   x, y, z, w (weight), c1, c2: the fit's points
#   CASE_targets.csv  x, y, the case's covariates, pred, se: fields' prediction and
#                     predictSE at every target (a grid, row by row)
#   CASE_params.csv   key,value: the grid (x0, dx, y0, dy, ncols, nrows:
#                     target (col, row) at x0 + col dx, y0 + row dy), the
#                     fit's lambda_f (fields' units) and lambda = 8 pi
#                     lambda_f (ours), sigma2 and tau2 (fields' best.model),
#                     the coefficients d_1, d_x, d_y, b_1 [, b_2], eff_df
#                     and, for GCV cases, the GCV score and fields' own
#                     (coarser) GCV choice fields_lambda_f
# and provenance.txt (R and fields versions, this command).
#
# Fits use scale.type = "unscaled" (the only one comparable with ours, see
# docs/design.md). GCV cases: fields' golden section stops ~1% from the
# minimum, so its GCV function (Krig.fgcv) is minimised again here to
# 1e-12 in log lambda; the references are the fit at that lambda.
suppressPackageStartupMessages(library(fields))
args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 2) stop("usage: fields_covse.R DATA_DIR OUT_DIR")
data_dir <- args[1]
out <- args[2]
dir.create(out, showWarnings = FALSE, recursive = TRUE)

fmt <- function(v) format(v, digits = 17)

write_case <- function(name, pts, covs, targets, grid, lambda_f, gcv = FALSE, weighted = FALSE) {
    x <- cbind(pts$x, pts$y)
    Z <- if (length(covs)) as.matrix(pts[, covs, drop = FALSE]) else NULL
    w <- if (weighted) pts$w else rep(1, nrow(pts))
    extra <- list()
    if (gcv) {
        coarse <- Tps(x, pts$z, Z = Z, weights = w, scale.type = "unscaled")
        l0 <- log(coarse$lambda)
        refined <- optimize(function(l) fields:::Krig.fgcv(exp(l), coarse),
                            c(l0 - 0.2, l0 + 0.2), tol = 1e-12)
        lambda_f <- exp(refined$minimum)
        extra$fields_lambda_f <- coarse$lambda
        extra$gcv <- fields:::Krig.fgcv(lambda_f, coarse)
    }
    fit <- Tps(x, pts$z, Z = Z, weights = w, scale.type = "unscaled", lambda = lambda_f)
    xt <- cbind(targets$x, targets$y)
    if (length(covs)) {
        Zt <- as.matrix(targets[, covs, drop = FALSE])
        targets$pred <- c(predict(fit, xt, Z = Zt))
        targets$se <- c(predictSE(fit, xt, Z = Zt))
    } else {
        targets$pred <- c(predict(fit, xt))
        targets$se <- c(predictSE(fit, xt))
    }
    params <- c(grid, list(lambda_f = lambda_f, lambda = 8 * pi * lambda_f,
                           sigma2 = fit$best.model[3], tau2 = fit$best.model[2],
                           eff_df = fields:::Krig.ftrace(lambda_f, fit$matrices$D)), extra)
    d <- c(fit$d)
    names(d) <- c("d_1", "d_x", "d_y", if (length(covs)) paste0("b_", seq_along(covs)))
    params <- c(params, as.list(d))
    write.csv(pts, file.path(out, paste0(name, "_points.csv")), row.names = FALSE)
    write.csv(targets[, c("x", "y", covs, "pred", "se")],
              file.path(out, paste0(name, "_targets.csv")), row.names = FALSE)
    writeLines(c("key,value", paste0(names(params), ",", sapply(params, fmt))),
               file.path(out, paste0(name, "_params.csv")))
}

grid_targets <- function(x0, dx, y0, dy, ncols, nrows, covfun) {
    g <- expand.grid(col = 0:(ncols - 1), row = 0:(nrows - 1)) # col varies fastest
    t <- data.frame(x = x0 + g$col * dx, y = y0 + g$row * dy)
    cbind(t, covfun(t$x, t$y))
}

# ---- synthetic: a smooth field plus a covariate that is not a plane ----
set.seed(20261213)
n <- 200
c1f <- function(x, y) 50 * exp(-((x - 300)^2 + (y - 600)^2) / 2e5) + 0.02 * x * sin(y / 200)
c2f <- function(x, y) 30 * cos(x / 170) + 0.01 * y
covf <- function(x, y) data.frame(c1 = c1f(x, y), c2 = c2f(x, y))
sx <- runif(n, 0, 1000)
sy <- runif(n, 0, 1000)
sz <- 10 * sin(sx / 250) * cos(sy / 300) + 0.3 * c1f(sx, sy) - 0.2 * c2f(sx, sy) + rnorm(n, 0, 1)
synth <- data.frame(x = sx, y = sy, z = sz, w = 0.5 + runif(n), c1 = c1f(sx, sy), c2 = c2f(sx, sy))
grid <- list(x0 = -40, dx = 1080 / 23, y0 = 1040, dy = -1080 / 17, ncols = 24, nrows = 18)
tg <- grid_targets(grid$x0, grid$dx, grid$y0, grid$dy, grid$ncols, grid$nrows, covf)

write_case("synth_fixed", synth, "c1", tg, grid, lambda_f = 30)
write_case("synth_gcv", synth, "c1", tg, grid, lambda_f = NA, gcv = TRUE)
write_case("synth_weighted", synth, "c1", tg, grid, lambda_f = 30, weighted = TRUE)
write_case("synth_two", synth, c("c1", "c2"), tg, grid, lambda_f = 30)
write_case("synth_interp", synth[1:60, ], "c1", tg, grid, lambda_f = 0)
write_case("synth_plain", synth, character(0), tg, grid, lambda_f = 30)
write_case("synth_plain_gcv", synth, character(0), tg, grid, lambda_f = NA, gcv = TRUE)

# ---- meuse: log zinc with the distance to the river ----
meuse <- read.csv(file.path(data_dir, "meuse.csv"))
mg <- read.csv(file.path(data_dir, "meuse_grid.csv"))
mp <- data.frame(x = meuse$x, y = meuse$y, z = log(meuse$zinc), w = 1, dist = meuse$dist)
# every other cell of the 40 m grid (centres on multiples of 40 m + 20), the
# grid's dist where it has a cell, NaN elsewhere (the test maps those to
# NaN outputs); references only where dist exists
mgrid <- list(x0 = 178460, dx = 80, y0 = 333740, dy = -80, ncols = 39, nrows = 52)
mt <- grid_targets(mgrid$x0, mgrid$dx, mgrid$y0, mgrid$dy, mgrid$ncols, mgrid$nrows,
                   function(x, y) data.frame(dist = NA))
key <- paste(mg$x, mg$y)
mt$dist <- mg$dist[match(paste(mt$x, mt$y), key)]
have <- !is.na(mt$dist)
write_case_na <- function(name, lambda_f, gcv) {
    # fields needs Z everywhere: predict where dist exists, NA elsewhere
    sub <- mt[have, ]
    tmp <- tempfile()
    dir.create(tmp)
    old <- out
    out <<- tmp
    write_case(name, mp, "dist", sub, mgrid, lambda_f, gcv)
    out <<- old
    full <- mt
    full$pred <- NA
    full$se <- NA
    ref <- read.csv(file.path(tmp, paste0(name, "_targets.csv")))
    full$pred[have] <- ref$pred
    full$se[have] <- ref$se
    write.csv(full[, c("x", "y", "dist", "pred", "se")],
              file.path(out, paste0(name, "_targets.csv")), row.names = FALSE, na = "NaN")
    for (f in c("_points.csv", "_params.csv"))
        file.copy(file.path(tmp, paste0(name, f)), file.path(out, paste0(name, f)),
                  overwrite = TRUE)
}
write_case_na("meuse_fixed", lambda_f = 2000, gcv = FALSE)
write_case_na("meuse_gcv", lambda_f = NA, gcv = TRUE)

writeLines(c(paste("generated by: Rscript autotest/r/fields_covse.R data", out),
             paste("R:", R.version.string),
             paste("fields:", as.character(packageVersion("fields"))),
             paste("spam:", as.character(packageVersion("spam")))),
           file.path(out, "provenance.txt"))
