/*
 * tps_mask.cpp: the convex hull and MaxDistance masks (see tps_mask.h and
 * docs/design.md, "Masks").
 *
 * Hull: Andrew's monotone chain once (O(N log N)); then, per grid row, the
 * row's pixel centres are the line A + i D, and a convex polygon cuts a
 * line in one interval of i: clipping the line against every edge gives it
 * in O(H) per row, and a pixel's test is two comparisons.
 *
 * Distance: a uniform grid of buckets over the points; a pixel looks at the
 * buckets within MaxDistance of it, skips the ones whose box is out of
 * reach, accepts at once a non-empty one whose box is wholly in reach, and
 * otherwise stops at the first point in reach. Buckets are at least
 * MaxDistance / 2 wide (at most 5 x 5 of them per pixel) and at most about
 * N / 2 of them (two points per bucket on average when MaxDistance is
 * small), so a pixel costs a few dozen operations, not O(N).
 */
#include "tps_mask.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <new>
#include <numeric>
#include <system_error>
#include <thread>

namespace
{

/* Twice the signed area of (o, a, b): > 0 when b is left of o -> a. */
double Cross(double dfOX, double dfOY, double dfAX, double dfAY, double dfBX, double dfBY)
{
    return (dfAX - dfOX) * (dfBY - dfOY) - (dfAY - dfOY) * (dfBX - dfOX);
}

/* Andrew's monotone chain: the hull counter-clockwise, collinear points
 * on edges left out. Points must be distinct. */
void ConvexHull(const double *padfX, const double *padfY, size_t n, std::vector<double> &adfHX,
                std::vector<double> &adfHY)
{
    std::vector<size_t> anOrder(n);
    std::iota(anOrder.begin(), anOrder.end(), size_t{0});
    std::sort(anOrder.begin(), anOrder.end(),
              [&](size_t a, size_t b)
              { return padfX[a] != padfX[b] ? padfX[a] < padfX[b] : padfY[a] < padfY[b]; });
    std::vector<size_t> anHull(2 * n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) // lower chain
    {
        const size_t p = anOrder[i];
        while (k >= 2 && Cross(padfX[anHull[k - 2]], padfY[anHull[k - 2]], padfX[anHull[k - 1]],
                               padfY[anHull[k - 1]], padfX[p], padfY[p]) <= 0)
            k--;
        anHull[k++] = p;
    }
    for (size_t i = n - 1, t = k + 1; i-- > 0;) // upper chain
    {
        const size_t p = anOrder[i];
        while (k >= t && Cross(padfX[anHull[k - 2]], padfY[anHull[k - 2]], padfX[anHull[k - 1]],
                               padfY[anHull[k - 1]], padfX[p], padfY[p]) <= 0)
            k--;
        anHull[k++] = p;
    }
    k--; // the last point is the first one again
    adfHX.resize(k);
    adfHY.resize(k);
    for (size_t i = 0; i < k; i++)
    {
        adfHX[i] = padfX[anHull[i]];
        adfHY[i] = padfY[anHull[i]];
    }
}

} // namespace

std::shared_ptr<const TPSMask> TPSMask::Build(const double *padfX, const double *padfY, size_t n,
                                              double dfMaxDistance, bool bConvexHull)
{
    try
    {
        std::shared_ptr<TPSMask> poMask(new TPSMask());
        double dfMinX = std::numeric_limits<double>::infinity(), dfMaxX = -dfMinX;
        double dfMinY = dfMinX, dfMaxY = dfMaxX;
        for (size_t i = 0; i < n; i++)
        {
            dfMinX = std::min(dfMinX, padfX[i]);
            dfMaxX = std::max(dfMaxX, padfX[i]);
            dfMinY = std::min(dfMinY, padfY[i]);
            dfMaxY = std::max(dfMaxY, padfY[i]);
        }
        const double dfW = dfMaxX - dfMinX, dfH = dfMaxY - dfMinY;
        const double dfMagnitude = std::max(std::max(std::fabs(dfMinX), std::fabs(dfMaxX)),
                                            std::max(std::fabs(dfMinY), std::fabs(dfMaxY)));

        if (bConvexHull)
        {
            poMask->m_bConvexHull = true;
            ConvexHull(padfX, padfY, n, poMask->m_adfHullX, poMask->m_adfHullY);
            // Rounding in the edge tests (and in the points, which come
            // back from the model's scaled coordinates) must not turn a
            // centre on the hull into one outside: 1e-9 of the points'
            // extent is far above it and far below any pixel.
            poMask->m_dfHullTolerance = 1e-9 * std::max(dfW, dfH);
        }

        if (dfMaxDistance > 0)
        {
            TPSMask &m = *poMask;
            m.m_dfMaxDistance = dfMaxDistance;
            m.m_dfMaxDistance2 = dfMaxDistance * dfMaxDistance;
            m.m_dfMinX = dfMinX;
            m.m_dfMinY = dfMinY;
            m.m_dfMaxX = dfMaxX;
            m.m_dfMaxY = dfMaxY;
            // Just over MaxDistance / 2 (so that a pixel's reach is two
            // buckets, not three), but no more buckets than about N / 2.
            const double dfN = static_cast<double>(n);
            double dfCell =
                std::max({0.5 * dfMaxDistance * (1 + 1e-6), std::sqrt(2 * dfW * dfH / dfN),
                          2 * std::max(dfW, dfH) / dfN});
            const double dfMaxBuckets = dfN / 2 + 64;
            while ((std::floor(dfW / dfCell) + 1) * (std::floor(dfH / dfCell) + 1) > dfMaxBuckets)
                dfCell *= 1.25;
            m.m_dfCell = dfCell;
            m.m_nReach = static_cast<int>(std::floor(dfMaxDistance / dfCell)) + 1;
            m.m_nBucketsX = static_cast<size_t>(std::floor(dfW / dfCell)) + 1;
            m.m_nBucketsY = static_cast<size_t>(std::floor(dfH / dfCell)) + 1;
            m.m_dfSlack = 1e-12 * (dfMagnitude + dfCell);
            const size_t nBuckets = m.m_nBucketsX * m.m_nBucketsY;
            std::vector<size_t> anBucket(n);
            m.m_anStart.assign(nBuckets + 1, 0);
            for (size_t i = 0; i < n; i++)
            {
                const double dfBX = std::floor((padfX[i] - dfMinX) / dfCell);
                const double dfBY = std::floor((padfY[i] - dfMinY) / dfCell);
                const size_t bx = std::min(m.m_nBucketsX - 1, static_cast<size_t>(dfBX));
                const size_t by = std::min(m.m_nBucketsY - 1, static_cast<size_t>(dfBY));
                anBucket[i] = by * m.m_nBucketsX + bx;
                m.m_anStart[anBucket[i] + 1]++;
            }
            for (size_t b = 0; b < nBuckets; b++)
                m.m_anStart[b + 1] += m.m_anStart[b];
            std::vector<size_t> anFill(m.m_anStart.begin(), m.m_anStart.end() - 1);
            m.m_adfX.resize(n);
            m.m_adfY.resize(n);
            for (size_t i = 0; i < n; i++)
            {
                const size_t k = anFill[anBucket[i]]++;
                m.m_adfX[k] = padfX[i];
                m.m_adfY[k] = padfY[i];
            }
        }
        return poMask;
    }
    catch (const std::bad_alloc &)
    {
        return nullptr;
    }
}

bool TPSMask::HullSpan(double dfAX, double dfAY, double dfDX, double dfDY, double *pdfFirst,
                       double *pdfLast) const
{
    // Inside edge a -> b (counter-clockwise): cross(b - a, P - a) >= -tol |b - a|,
    // with P = A + i D: c0 + i c1 >= 0.
    double dfLo = -std::numeric_limits<double>::infinity();
    double dfHi = std::numeric_limits<double>::infinity();
    const size_t nH = m_adfHullX.size();
    for (size_t k = 0; k < nH; k++)
    {
        const size_t k1 = k + 1 == nH ? 0 : k + 1;
        const double dfEX = m_adfHullX[k1] - m_adfHullX[k];
        const double dfEY = m_adfHullY[k1] - m_adfHullY[k];
        const double c0 = dfEX * (dfAY - m_adfHullY[k]) - dfEY * (dfAX - m_adfHullX[k]) +
                          m_dfHullTolerance * std::hypot(dfEX, dfEY);
        const double c1 = dfEX * dfDY - dfEY * dfDX;
        if (c1 > 0)
            dfLo = std::max(dfLo, -c0 / c1);
        else if (c1 < 0)
            dfHi = std::min(dfHi, -c0 / c1);
        else if (c0 < 0)
            return false; // the row runs parallel to this edge, outside it
    }
    *pdfFirst = dfLo;
    *pdfLast = dfHi;
    return dfLo <= dfHi;
}

bool TPSMask::NearAPoint(double dfX, double dfY) const
{
    const double d = m_dfMaxDistance;
    if (!(dfX >= m_dfMinX - d && dfX <= m_dfMaxX + d && dfY >= m_dfMinY - d &&
          dfY <= m_dfMaxY + d))
        return false;
    // The pixel's bucket (it may lie up to MaxDistance outside the grid of
    // buckets) and the ones within reach, clipped to the grid.
    const double dfBX = std::floor((dfX - m_dfMinX) / m_dfCell);
    const double dfBY = std::floor((dfY - m_dfMinY) / m_dfCell);
    const double dfLastX = static_cast<double>(m_nBucketsX - 1);
    const double dfLastY = static_cast<double>(m_nBucketsY - 1);
    const size_t bx0 = static_cast<size_t>(std::max(0.0, dfBX - m_nReach));
    const size_t bx1 = static_cast<size_t>(std::min(dfLastX, dfBX + m_nReach));
    const size_t by0 = static_cast<size_t>(std::max(0.0, dfBY - m_nReach));
    const size_t by1 = static_cast<size_t>(std::min(dfLastY, dfBY + m_nReach));
    const double d2 = m_dfMaxDistance2;
    // The pixel's own bucket first: when it holds a point that is usually
    // the answer, and for MaxDistance >= 2 bucket diagonals at once.
    if (dfBX >= 0 && dfBX <= dfLastX && dfBY >= 0 && dfBY <= dfLastY)
    {
        const size_t b = static_cast<size_t>(dfBY) * m_nBucketsX + static_cast<size_t>(dfBX);
        for (size_t k = m_anStart[b]; k < m_anStart[b + 1]; k++)
        {
            const double dx = m_adfX[k] - dfX, dy = m_adfY[k] - dfY;
            if (dx * dx + dy * dy <= d2)
                return true;
        }
    }
    for (size_t by = by0; by <= by1 && by1 >= by0; by++)
    {
        // Bucket bounds widened by the slack: never skip a bucket that
        // holds a point in reach, never accept one that does not.
        const double y0 = m_dfMinY + static_cast<double>(by) * m_dfCell - m_dfSlack;
        const double y1 = m_dfMinY + static_cast<double>(by + 1) * m_dfCell + m_dfSlack;
        const double dyNear = std::max({y0 - dfY, dfY - y1, 0.0});
        const double dyFar = std::max(dfY - y0, y1 - dfY);
        for (size_t bx = bx0; bx <= bx1 && bx1 >= bx0; bx++)
        {
            const size_t b = by * m_nBucketsX + bx;
            const size_t nBegin = m_anStart[b], nEnd = m_anStart[b + 1];
            if (nBegin == nEnd)
                continue;
            const double x0 = m_dfMinX + static_cast<double>(bx) * m_dfCell - m_dfSlack;
            const double x1 = m_dfMinX + static_cast<double>(bx + 1) * m_dfCell + m_dfSlack;
            const double dxNear = std::max({x0 - dfX, dfX - x1, 0.0});
            if (dxNear * dxNear + dyNear * dyNear > d2)
                continue;
            const double dxFar = std::max(dfX - x0, x1 - dfX);
            if (dxFar * dxFar + dyFar * dyFar <= d2)
                return true;
            for (size_t k = nBegin; k < nEnd; k++)
            {
                const double dx = m_adfX[k] - dfX, dy = m_adfY[k] - dfY;
                if (dx * dx + dy * dy <= d2)
                    return true;
            }
        }
    }
    return false;
}

size_t TPSMask::Compute(const tps_grid &g, unsigned char *pabyValid, int nThreads) const
{
    // Rows are independent: big windows are cut into row ranges, one per
    // thread (a few tens of ns per pixel: worth it from ~10^5 pixels).
    const size_t nPixels = g.ncols * g.nrows;
    const size_t nParts = std::min<size_t>(
        {static_cast<size_t>(std::max(1, nThreads)), g.nrows, nPixels / 65536 + 1});
    if (nParts <= 1)
        return ComputeRows(g, 0, g.nrows, pabyValid);
    std::vector<size_t> anValid(nParts, 0);
    std::vector<std::thread> aoThreads;
    size_t nStarted = 0;
    try
    {
        for (; nStarted + 1 < nParts; nStarted++)
            aoThreads.emplace_back(
                [&, nStarted]()
                {
                    anValid[nStarted] = ComputeRows(g, g.nrows * nStarted / nParts,
                                                    g.nrows * (nStarted + 1) / nParts, pabyValid);
                });
    }
    catch (const std::system_error &)
    {
        // No more threads: this one does the rest.
    }
    const size_t nValid = ComputeRows(g, g.nrows * nStarted / nParts, g.nrows, pabyValid);
    for (auto &oThread : aoThreads)
        oThread.join();
    return std::accumulate(anValid.begin(), anValid.end(), nValid);
}

size_t TPSMask::ComputeRows(const tps_grid &g, size_t nFirstRow, size_t nEndRow,
                            unsigned char *pabyValid) const
{
    size_t nValid = 0;
    for (size_t r = nFirstRow; r < nEndRow; r++)
    {
        unsigned char *pabyRow = pabyValid + r * g.ncols;
        const double j = static_cast<double>(g.first_row + r);
        // The centre of column i of this row is A + i D (the engine's
        // formula, tps_grid_cell_centre, as below).
        double dfAX = 0, dfAY = 0;
        tps_grid_cell_centre(&g, 0.0, j, &dfAX, &dfAY);
        size_t c0 = 0, c1 = g.ncols; // the columns [c0, c1) may be kept
        if (m_bConvexHull)
        {
            double dfFirst = 0, dfLast = 0;
            if (!HullSpan(dfAX, dfAY, g.col_dx, g.col_dy, &dfFirst, &dfLast))
                c1 = 0;
            else
            {
                // Absolute columns ceil(first) .. floor(last), clipped to
                // the window (in double: the span may be huge or infinite).
                const double dfCol0 = static_cast<double>(g.first_col);
                const double dfFrom = std::max(0.0, std::ceil(dfFirst) - dfCol0);
                const double dfTo =
                    std::min(static_cast<double>(g.ncols), std::floor(dfLast) - dfCol0 + 1);
                if (dfTo <= dfFrom)
                    c1 = 0;
                else
                {
                    c0 = static_cast<size_t>(dfFrom);
                    c1 = static_cast<size_t>(dfTo);
                }
            }
        }
        std::fill(pabyRow, pabyRow + g.ncols, static_cast<unsigned char>(0));
        for (size_t c = c0; c < c1; c++)
        {
            bool bKeep = true;
            if (m_dfMaxDistance > 0)
            {
                double dfX = 0, dfY = 0;
                tps_grid_cell_centre(&g, static_cast<double>(g.first_col + c), j, &dfX, &dfY);
                bKeep = NearAPoint(dfX, dfY);
            }
            pabyRow[c] = bKeep ? 1 : 0;
            nValid += bKeep ? 1 : 0;
        }
    }
    return nValid;
}
