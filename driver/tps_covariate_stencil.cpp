/*
 * tps_covariate_stencil.cpp: see tps_covariate_stencil.h.
 */
#include "tps_covariate_stencil.h"

#include "tps.h"

#include <cmath>
#include <cstddef>
#include <limits>

namespace
{

/* Three pixels along one axis and their weights for the first and the
 * second derivative per pixel step. */
struct Stencil
{
    int anOffset[3];
    double adfD1[3];
    double adfD2[3];
};

constexpr Stencil CENTRAL = {{-1, 0, 1}, {-0.5, 0.0, 0.5}, {1.0, -2.0, 1.0}};
constexpr Stencil FORWARD = {{0, 1, 2}, {-1.5, 2.0, -0.5}, {1.0, -2.0, 1.0}};
constexpr Stencil BACKWARD = {{-2, -1, 0}, {0.5, -2.0, 1.5}, {1.0, -2.0, 1.0}};

/* The stencil at a pixel from which of its neighbours along the axis lie
 * inside the raster (abIn[m] for offset m - 2); nullptr when none fits. */
const Stencil *Choose(const bool abIn[5])
{
    if (!abIn[2])
        return nullptr;
    if (abIn[1] && abIn[3])
        return &CENTRAL;
    if (abIn[3] && abIn[4])
        return &FORWARD;
    if (abIn[1] && abIn[0])
        return &BACKWARD;
    return nullptr;
}

} // namespace

unsigned TPSCovariatePlanesRead(unsigned nNeeds)
{
    unsigned nRead = 0;
    if (nNeeds & TPS_NEEDS_GRADIENT)
        nRead |= 1u << TPS_COV_DX | 1u << TPS_COV_DY;
    if (nNeeds & TPS_NEEDS_LAPLACIAN)
        nRead |= 1u << TPS_COV_DXX | 1u << TPS_COV_DYY;
    if (nNeeds & TPS_NEEDS_HESSIAN)
        nRead |= 1u << TPS_COV_DXX | 1u << TPS_COV_DXY | 1u << TPS_COV_DYY;
    return nRead;
}

void TPSCovariateStencil(const double adfGT[6], int nXSize, int nYSize,
                         const double *padfCells, const unsigned char *pabyInside,
                         double *padfOut)
{
    constexpr int M = TPS_STENCIL_MARGIN;
    constexpr double NaN = std::numeric_limits<double>::quiet_NaN();
    const size_t nW = static_cast<size_t>(nXSize) + 2 * M;
    const size_t nPixels = static_cast<size_t>(nXSize) * static_cast<size_t>(nYSize);
    // d(column, row)/d(x, y): the inverse of the Jacobian [gt1 gt2; gt4 gt5].
    const double dfDet = adfGT[1] * adfGT[5] - adfGT[2] * adfGT[4];
    const double dfIX = adfGT[5] / dfDet, dfIY = -adfGT[2] / dfDet;
    const double dfJX = -adfGT[4] / dfDet, dfJY = adfGT[1] / dfDet;
    const auto At = [&](int i, int j) { return static_cast<size_t>(j) * nW + i; };
    for (int j = 0; j < nYSize; j++)
        for (int i = 0; i < nXSize; i++)
        {
            const int I = i + M, J = j + M;
            bool abInI[5], abInJ[5];
            for (int m = 0; m < 5; m++)
            {
                abInI[m] = pabyInside[At(I + m - 2, J)] != 0;
                abInJ[m] = pabyInside[At(I, J + m - 2)] != 0;
            }
            const Stencil *psI = Choose(abInI), *psJ = Choose(abInJ);
            double dfCi = NaN, dfCii = NaN, dfCj = NaN, dfCjj = NaN, dfCij = NaN;
            if (psI)
            {
                dfCi = dfCii = 0;
                for (int a = 0; a < 3; a++)
                {
                    const double c = padfCells[At(I + psI->anOffset[a], J)];
                    dfCi += psI->adfD1[a] * c;
                    dfCii += psI->adfD2[a] * c;
                }
            }
            if (psJ)
            {
                dfCj = dfCjj = 0;
                for (int b = 0; b < 3; b++)
                {
                    const double c = padfCells[At(I, J + psJ->anOffset[b])];
                    dfCj += psJ->adfD1[b] * c;
                    dfCjj += psJ->adfD2[b] * c;
                }
            }
            if (psI && psJ)
            {
                // The product of the two first-derivative stencils: exact
                // for the x y term of a quadratic, like the others for x^2.
                // A corner of it outside the raster is NaN there: NaN.
                dfCij = 0;
                for (int b = 0; b < 3; b++)
                    for (int a = 0; a < 3; a++)
                        dfCij += psI->adfD1[a] * psJ->adfD1[b] *
                                 padfCells[At(I + psI->anOffset[a], J + psJ->anOffset[b])];
            }
            // The chain rule: c is c(i(x, y), j(x, y)), i and j affine.
            const size_t p = static_cast<size_t>(j) * nXSize + i;
            padfOut[TPS_COV_DX * nPixels + p] = dfCi * dfIX + dfCj * dfJX;
            padfOut[TPS_COV_DY * nPixels + p] = dfCi * dfIY + dfCj * dfJY;
            padfOut[TPS_COV_DXX * nPixels + p] =
                dfCii * dfIX * dfIX + 2 * dfCij * dfIX * dfJX + dfCjj * dfJX * dfJX;
            padfOut[TPS_COV_DXY * nPixels + p] = dfCii * dfIX * dfIY +
                                                 dfCij * (dfIX * dfJY + dfIY * dfJX) +
                                                 dfCjj * dfJX * dfJY;
            padfOut[TPS_COV_DYY * nPixels + p] =
                dfCii * dfIY * dfIY + 2 * dfCij * dfIY * dfJY + dfCjj * dfJY * dfJY;
        }
}
