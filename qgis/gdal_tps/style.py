"""The default style of the result: singleband pseudocolor over the data's
range, its colours spread over the data's distribution.

A spline extrapolates: far from the points its values run far beyond the
data (docs/format.md, "Masks"). QGIS's default stretch comes from the
raster's statistics, which those values dominate, so the area of the data
gets a sliver of the colour ramp. The value band is stretched instead from
the minimum to the maximum of the field at the points the spline went
through, with the ramp's six colours (viridis) at the 0, 20, ..., 100 %
quantiles of those values: skewed data (a few high values) still gets
every colour where the points are. Values beyond take the end colours.
A derivative band has no such values at the points: its colours are
spread evenly over the 2-98 % percentiles of the written raster (slope
from 0, aspect over 0-360 degrees).
"""
import math

import numpy as np
from osgeo import gdal
from qgis.core import (QgsColorRampShader, QgsFeatureRequest,
                       QgsProcessingLayerPostProcessorInterface, QgsRasterShader,
                       QgsSingleBandPseudoColorRenderer)
from qgis.PyQt.QtGui import QColor

# viridis at six stops (data/meuse_zinc_colors.txt has the same colours)
VIRIDIS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (190, 223, 38),
           (253, 231, 37))
SAMPLE_SIDE = 1024  # percentiles from a read of at most this many pixels a side


def _even(lo, hi):
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return [lo + (hi - lo) * i / (len(VIRIDIS) - 1) for i in range(len(VIRIDIS))]


def field_stops(layer, field):
    """The colour stops of a value band: quantiles of the finite numbers of
    `field` over the layer's features (its subset applied), read as the
    driver reads them (text holding a number counts; other text, nulls, NaN
    do not); evenly spaced when quantiles coincide; None without values."""
    idx = layer.fields().indexOf(field)
    request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry)
    request.setSubsetOfAttributes([idx])
    values = []
    for feature in layer.getFeatures(request):
        try:
            v = float(feature.attributes()[idx])
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            values.append(v)
    if not values:
        return None
    stops = [float(q) for q in np.quantile(values, np.linspace(0, 1, len(VIRIDIS)))]
    if any(b <= a for a, b in zip(stops, stops[1:])):
        return _even(stops[0], stops[-1])
    return stops


def raster_stops(path, quantity):
    """The colour stops of a derivative band, from the written raster."""
    if quantity == 'aspect':
        return _even(0.0, 360.0)
    ds = gdal.Open(path)
    if ds is None:
        return None
    band = ds.GetRasterBand(1)
    scale = max(1.0, max(ds.RasterXSize, ds.RasterYSize) / SAMPLE_SIDE)
    a = band.ReadAsArray(buf_xsize=max(1, int(ds.RasterXSize / scale)),
                         buf_ysize=max(1, int(ds.RasterYSize / scale))).astype(float)
    nodata = band.GetNoDataValue()
    keep = np.isfinite(a)
    if nodata is not None:
        keep &= a != nodata
    a = a[keep]
    if a.size == 0:
        return None
    lo, hi = np.percentile(a, [2, 98])
    return _even(0.0 if quantity == 'slope' else float(lo), float(hi))


def renderer(provider, stops):
    ramp = QgsColorRampShader(stops[0], stops[-1])
    ramp.setColorRampType(QgsColorRampShader.Interpolated)
    ramp.setClip(False)  # beyond the ends: the end colours
    ramp.setColorRampItemList([QgsColorRampShader.ColorRampItem(v, QColor(*c), '%.6g' % v)
                               for v, c in zip(stops, VIRIDIS)])
    shader = QgsRasterShader(stops[0], stops[-1])
    shader.setRasterShaderFunction(ramp)
    r = QgsSingleBandPseudoColorRenderer(provider, 1, shader)
    r.setClassificationMin(stops[0])
    r.setClassificationMax(stops[-1])
    return r


class StyleResult(QgsProcessingLayerPostProcessorInterface):
    """Applied by Processing to the loaded result. Processing holds no
    reference to it: the instances are kept here until they are used."""
    _alive = []

    def __init__(self, stops):
        super().__init__()
        self.stops = stops

    @classmethod
    def create(cls, stops):
        instance = cls(stops)
        cls._alive.append(instance)
        return instance

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if layer is not None and layer.isValid():
            layer.setRenderer(renderer(layer.dataProvider(), self.stops))
            layer.triggerRepaint()
        if self in StyleResult._alive:
            StyleResult._alive.remove(self)
