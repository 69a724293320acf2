"""The default style of the result: singleband pseudocolor, stretched over
the data's range.

A spline extrapolates: far from the points its values run far beyond the
data (docs/format.md, "Masks"). QGIS's default stretch comes from the
raster's statistics, which those values dominate, so the area of the data
gets a sliver of the colour ramp. The value band is stretched instead over
the minimum and maximum of the field at the points the spline went
through; values beyond take the end colours. A derivative band has no
such range at the points: it is stretched over the 2-98 % percentiles of
the written raster (aspect: 0-360 degrees).
"""
import math

import numpy as np
from osgeo import gdal
from qgis.core import (QgsColorRampShader, QgsFeatureRequest, QgsGradientColorRamp,
                       QgsGradientStop, QgsProcessingLayerPostProcessorInterface,
                       QgsRasterShader, QgsSingleBandPseudoColorRenderer)
from qgis.PyQt.QtGui import QColor

# viridis at six stops (data/meuse_zinc_colors.txt has the same colours)
VIRIDIS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (190, 223, 38),
           (253, 231, 37))
SAMPLE_SIDE = 1024  # percentiles from a read of at most this many pixels a side


def field_range(layer, field):
    """min, max of the finite numbers of `field` over the layer's features
    (its subset applied), as the driver reads them (text holding a number
    counts; other text, nulls, NaN do not); None when there are none."""
    idx = layer.fields().indexOf(field)
    request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry)
    request.setSubsetOfAttributes([idx])
    lo, hi = math.inf, -math.inf
    for feature in layer.getFeatures(request):
        try:
            v = float(feature.attributes()[idx])
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            lo, hi = min(lo, v), max(hi, v)
    return (lo, hi) if lo <= hi else None


def raster_range(path, quantity):
    """The stretch of a derivative band, from the written raster."""
    if quantity == 'aspect':
        return 0.0, 360.0
    ds = gdal.Open(path)
    if ds is None:
        return None
    band = ds.GetRasterBand(1)
    scale = max(1.0, max(ds.RasterXSize, ds.RasterYSize) / SAMPLE_SIDE)
    a = band.ReadAsArray(buf_xsize=max(1, int(ds.RasterXSize / scale)),
                         buf_ysize=max(1, int(ds.RasterYSize / scale))).astype(float)
    nodata = band.GetNoDataValue()
    a = a[np.isfinite(a) & (a != nodata if nodata is not None else True)]
    if a.size == 0:
        return None
    lo, hi = np.percentile(a, [2, 98])
    if quantity == 'slope':
        lo = 0.0
    return float(lo), float(hi)


def renderer(provider, lo, hi):
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    ramp = QgsGradientColorRamp(QColor(*VIRIDIS[0]), QColor(*VIRIDIS[-1]), False,
                                [QgsGradientStop(i / (len(VIRIDIS) - 1), QColor(*c))
                                 for i, c in enumerate(VIRIDIS[1:-1], 1)])
    shader_fn = QgsColorRampShader(lo, hi, ramp, QgsColorRampShader.Interpolated)
    shader_fn.setClip(False)  # beyond the ends: the end colours
    shader_fn.classifyColorRamp(len(VIRIDIS), 1)
    shader = QgsRasterShader(lo, hi)
    shader.setRasterShaderFunction(shader_fn)
    r = QgsSingleBandPseudoColorRenderer(provider, 1, shader)
    r.setClassificationMin(lo)
    r.setClassificationMax(hi)
    return r


class StyleResult(QgsProcessingLayerPostProcessorInterface):
    """Applied by Processing to the loaded result. Processing holds no
    reference to it: the instances are kept here until they are used."""
    _alive = []

    def __init__(self, lo, hi):
        super().__init__()
        self.lo, self.hi = lo, hi

    @classmethod
    def create(cls, lo, hi):
        instance = cls(lo, hi)
        cls._alive.append(instance)
        return instance

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if layer is not None and layer.isValid():
            layer.setRenderer(renderer(layer.dataProvider(), self.lo, self.hi))
            layer.triggerRepaint()
        if self in StyleResult._alive:
            StyleResult._alive.remove(self)
