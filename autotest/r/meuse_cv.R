# meuse_cv.R: leave-one-out cross-validation of fields::Tps on meuse log
# zinc, without and with the distance to the river as a covariate, for
# docs/validation.md ("Covariates"): fields' GCV choice of lambda, then the
# leave-one-out residuals by refitting without each point at that lambda
# (155 fits each), their RMSE; and the same at a lambda given in our units
# (8 pi lambda_f), to set beside the driver's LOO_RMSE.
#
#   Rscript autotest/r/meuse_cv.R data/meuse.csv [LAMBDA_NO_COV LAMBDA_COV]
suppressPackageStartupMessages(library(fields))
args <- commandArgs(trailingOnly = TRUE)
m <- read.csv(args[1])
x <- cbind(m$x, m$y)
z <- log(m$zinc)
Z <- matrix(m$dist, ncol = 1)
loo <- function(lambda_f, cov) {
    r <- numeric(length(z))
    for (i in seq_along(z)) {
        fit <- if (cov) Tps(x[-i, ], z[-i], Z = Z[-i, , drop = FALSE], scale.type = "unscaled",
                            lambda = lambda_f)
               else Tps(x[-i, ], z[-i], scale.type = "unscaled", lambda = lambda_f)
        p <- if (cov) predict(fit, x[i, , drop = FALSE], Z = Z[i, , drop = FALSE])
             else predict(fit, x[i, , drop = FALSE])
        r[i] <- z[i] - p
    }
    sqrt(mean(r^2))
}
for (cov in c(FALSE, TRUE)) {
    fit <- if (cov) Tps(x, z, Z = Z, scale.type = "unscaled") else Tps(x, z, scale.type = "unscaled")
    lam <- fit$lambda
    cat(sprintf("@@ %s lambda_f %.8g lambda %.8g eff_df %.4f loo_rmse %.6f",
                if (cov) "dist" else "none", lam, 8 * pi * lam, fit$eff.df, loo(lam, cov)))
    if (length(args) >= 3) {
        ours <- as.numeric(args[if (cov) 3 else 2]) / (8 * pi)
        cat(sprintf(" at_ours_lambda_f %.8g loo_rmse_at_ours %.6f", ours, loo(ours, cov)))
    }
    cat("\n")
}
