# fields_tps.R: R's fields::Tps on a CSV of points, the independent reference
# for autotest/test_gcv_fields.py (and for per-point weights).
#
#   Rscript fields_tps.R POINTS.csv XCOL YCOL ZCOL WEIGHTCOL|- TARGETS.csv OUT.csv [LAMBDA ...]
#
# Fits fields::Tps (m = 2, thin plate spline in 2-D) with the coordinates
# unscaled (scale.type = "unscaled") and lambda chosen by GCV, then prints
# "@@ key value" lines on stdout (fields prints its own warnings there too):
#   lambda      the GCV lambda (fields' units: see docs/design.md for the map)
#   eff_df      fields' effective degrees of freedom, tr A
#   gcv         the GCV score at that lambda
#   grid_index  where the minimum of fields' coarse search grid lies,
#   grid_size   and the grid's size (index 1 or grid_size: at its end)
#   at_<k>      for each extra LAMBDA k (fields' units): its GCV score and tr A
# OUT.csv gets, for every row (x, y) of TARGETS.csv, the spline at the GCV
# lambda (column gcv) and at each LAMBDA (columns lam1, lam2, ...).
suppressPackageStartupMessages(library(fields))
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 7) stop("usage: fields_tps.R POINTS XCOL YCOL ZCOL WEIGHTCOL|- TARGETS OUT [LAMBDA ...]")
d <- read.csv(args[1])
x <- cbind(d[[args[2]]], d[[args[3]]])
z <- d[[args[4]]]
w <- if (args[5] == "-") rep(1, length(z)) else d[[args[5]]]
targets <- as.matrix(read.csv(args[6])[, c("x", "y")])
lambdas <- as.numeric(args[-(1:7)])

fit <- Tps(x, z, weights = w, scale.type = "unscaled")
cat("@@ lambda", format(fit$lambda, digits = 17), "\n")
cat("@@ eff_df", format(fit$eff.df, digits = 17), "\n")
cat("@@ gcv", format(fit$lambda.est["GCV", "GCV"], digits = 17), "\n")
cat("@@ grid_index", which.min(fit$gcv.grid$GCV), "\n")
cat("@@ grid_size", nrow(fit$gcv.grid), "\n")
out <- data.frame(x = targets[, 1], y = targets[, 2], gcv = c(predict(fit, targets)))
for (k in seq_along(lambdas)) {
    cat(paste0("@@ at_", k), format(fields:::Krig.fgcv(lambdas[k], fit), digits = 17),
        format(fields:::Krig.ftrace(lambdas[k], fit$matrices$D), digits = 17), "\n")
    out[[paste0("lam", k)]] <- c(predict(fit, targets, lambda = lambdas[k]))
}
write.csv(out, args[7], row.names = FALSE)
