# fields_loo.R: leave-one-out cross-validation of fields::Tps without and
# with one linear covariate, for docs/validation.md ("Covariates"):
# fields' own GCV choice of lambda, then the leave-one-out residuals by
# refitting without each point at that lambda (N fits each), and their RMSE.
#
#   Rscript autotest/r/fields_loo.R POINTS.csv XCOL YCOL ZCOL COVCOL
#
# Prints "@@ none|cov lambda_f L lambda L*8pi eff_df D loo_rmse R" lines.
suppressPackageStartupMessages(library(fields))
args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 5) stop("usage: fields_loo.R POINTS.csv XCOL YCOL ZCOL COVCOL")
d <- read.csv(args[1])
x <- cbind(d[[args[2]]], d[[args[3]]])
z <- d[[args[4]]]
Z <- matrix(d[[args[5]]], ncol = 1)
fit_at <- function(i, lambda_f, cov) {
    keep <- if (is.null(i)) seq_along(z) else -i
    if (cov) Tps(x[keep, , drop = FALSE], z[keep], Z = Z[keep, , drop = FALSE],
                 scale.type = "unscaled", lambda = lambda_f)
    else Tps(x[keep, , drop = FALSE], z[keep], scale.type = "unscaled", lambda = lambda_f)
}
for (cov in c(FALSE, TRUE)) {
    fit <- if (cov) Tps(x, z, Z = Z, scale.type = "unscaled") else Tps(x, z, scale.type = "unscaled")
    lam <- fit$lambda
    r <- sapply(seq_along(z), function(i) {
        f <- fit_at(i, lam, cov)
        p <- if (cov) predict(f, x[i, , drop = FALSE], Z = Z[i, , drop = FALSE])
             else predict(f, x[i, , drop = FALSE])
        z[i] - p
    })
    cat(sprintf("@@ %s lambda_f %.8g lambda %.8g eff_df %.4f loo_rmse %.6f\n",
                if (cov) "cov" else "none", lam, 8 * pi * lam, fit$eff.df, sqrt(mean(r^2))))
}
