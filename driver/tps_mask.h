/*
 * tps_mask.h: which pixels a data set leaves NoData, from where the points
 * are (never from the spline): pixels whose centre is farther than
 * <MaxDistance> from every point, and/or outside the points' convex hull.
 *
 * Built once per data set from the model's points, read-only afterwards:
 * any number of threads may call Compute() at once. A pixel's answer
 * depends only on its absolute (column, row) in its grid and on the
 * points, never on the window asked for, so every window, block or
 * thread split gives the same mask (as the values do).
 */
#ifndef TPS_MASK_H
#define TPS_MASK_H

#include "tps.h"

#include <cstddef>
#include <memory>
#include <vector>

class TPSMask
{
  public:
    /* dfMaxDistance > 0 turns on the distance mask (output CRS units), 0
     * leaves it off; bConvexHull the hull mask. n >= 3 points, not all on
     * one line (the model guarantees it). nullptr when out of memory. */
    static std::shared_ptr<const TPSMask> Build(const double *padfX, const double *padfY, size_t n,
                                                double dfMaxDistance, bool bConvexHull);

    /* pabyValid[r * ncols + c] = 1 when cell (first_col + c, first_row + r)
     * of the grid is kept, 0 when it is masked, for the window sGrid
     * describes (its pixel centres, as the engine evaluates them), on up
     * to nThreads threads. Returns the number of kept cells. */
    size_t Compute(const tps_grid &sGrid, unsigned char *pabyValid, int nThreads) const;

    /* The hull's vertices, counter-clockwise, for tests and messages. */
    size_t HullSize() const
    {
        return m_adfHullX.size();
    }

  private:
    TPSMask() = default;

    /* Convex hull: vertices counter-clockwise, without repeating the first.
     * A cell is inside when it is on the inner side of every edge, up to
     * m_dfHullTolerance (a distance): a centre on the hull counts as inside. */
    bool m_bConvexHull = false;
    std::vector<double> m_adfHullX{}, m_adfHullY{};
    double m_dfHullTolerance = 0;

    /* Distance: a uniform grid of square buckets of side m_dfCell over the
     * points' bounding box; bucket (bx, by) holds the points
     * m_adfX/Y[m_anStart[b] .. m_anStart[b + 1]) with b = by * m_nBucketsX
     * + bx. A cell looks at the buckets within m_nReach of its own. */
    double m_dfMaxDistance = 0; /* 0: no distance mask */
    double m_dfMaxDistance2 = 0;
    double m_dfMinX = 0, m_dfMinY = 0, m_dfMaxX = 0, m_dfMaxY = 0;
    double m_dfCell = 1;
    double m_dfSlack = 0; /* bucket bounds are widened by this for rounding */
    size_t m_nBucketsX = 1, m_nBucketsY = 1;
    int m_nReach = 1;
    std::vector<size_t> m_anStart{};
    std::vector<double> m_adfX{}, m_adfY{};

    /* The columns [*pnFirst, *pnLast] of the row through A with step D
     * that lie inside the hull; false when none do. */
    bool HullSpan(double dfAX, double dfAY, double dfDX, double dfDY, double *pdfFirst,
                  double *pdfLast) const;
    bool NearAPoint(double dfX, double dfY) const;
    /* Compute() for the window's rows [nFirstRow, nEndRow). */
    size_t ComputeRows(const tps_grid &sGrid, size_t nFirstRow, size_t nEndRow,
                       unsigned char *pabyValid) const;
};

#endif /* TPS_MASK_H */
