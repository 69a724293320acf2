"""Render rasters with the QGIS map renderer, headless (run as a subprocess
by autotest/test_clients.py; also makes docs/img/qgis_meuse_zinc.png).

    QT_QPA_PLATFORM=offscreen GDAL_DRIVER_PATH=build \\
        /usr/bin/python3 autotest/clients/qgis_render.py OUT.json RASTER PNG [RASTER PNG ...]

Each RASTER is loaded as a QgsRasterLayer through the "gdal" provider and
drawn alone with one pseudocolor style (the colour stops of
data/meuse_zinc_colors.txt, fixed min/max, so the style does not depend on
statistics) over the FIRST raster's extent at its size in pixels (one map
pixel per raster pixel). OUT.json gets, per raster: valid, provider, the
GDAL driver, extent, CRS, size, band count, and the render's errors.
Options (before the positional arguments): --scale N renders N x N map
pixels per raster pixel (for the docs picture).
"""
import json
import re
import os
import sys

os.environ.setdefault('QT_QPA_PLATFORM', 'offscreen')

from qgis.core import (QgsApplication, QgsColorRampShader, QgsMapRendererSequentialJob,  # noqa: E402
                       QgsMapSettings, QgsRasterLayer, QgsRasterShader,
                       QgsSingleBandPseudoColorRenderer)
from qgis.PyQt.QtCore import QSize  # noqa: E402
from qgis.PyQt.QtGui import QColor  # noqa: E402

# data/meuse_zinc_colors.txt: zinc (ppm) -> RGB, roughly logarithmic steps
STOPS = [(100, (68, 1, 84)), (200, (59, 82, 139)), (400, (33, 145, 140)),
         (800, (94, 201, 98)), (1200, (190, 223, 38)), (1800, (253, 231, 37))]


def style(layer):
    ramp = QgsColorRampShader(STOPS[0][0], STOPS[-1][0])
    ramp.setColorRampType(QgsColorRampShader.Interpolated)
    ramp.setClip(False)  # beyond the ends: the end colours
    ramp.setColorRampItemList([QgsColorRampShader.ColorRampItem(v, QColor(*rgb), str(v))
                               for v, rgb in STOPS])
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(STOPS[0][0])
    renderer.setClassificationMax(STOPS[-1][0])
    layer.setRenderer(renderer)


def driver_name(layer):
    m = re.search(r'GDAL Driver Description</td><td>([^<]*)<', layer.dataProvider().htmlMetadata())
    return m.group(1) if m else None


def main(argv):
    scale = 1
    if argv[:1] == ['--scale']:
        scale = int(argv[1])
        argv = argv[2:]
    out_json, pairs = argv[0], argv[1:]
    assert pairs and len(pairs) % 2 == 0, __doc__
    app = QgsApplication([], False)
    app.initQgis()
    report = {'qgis_version': __import__('qgis.core').core.Qgis.QGIS_VERSION, 'layers': []}
    extent = size = None
    for path, png in zip(pairs[0::2], pairs[1::2]):
        layer = QgsRasterLayer(path, os.path.basename(path), 'gdal')
        info = {'path': path, 'valid': layer.isValid()}
        report['layers'].append(info)
        if not layer.isValid():
            info['error'] = layer.error().summary()
            continue
        e = layer.extent()
        info.update(provider=layer.providerType(),
                    driver=driver_name(layer),
                    extent=[e.xMinimum(), e.yMinimum(), e.xMaximum(), e.yMaximum()],
                    crs=layer.crs().authid(), width=layer.width(), height=layer.height(),
                    bands=layer.bandCount())
        if extent is None:
            extent, size = e, QSize(layer.width() * scale, layer.height() * scale)
        style(layer)
        settings = QgsMapSettings()
        settings.setLayers([layer])
        settings.setDestinationCrs(layer.crs())
        settings.setExtent(extent)
        settings.setOutputSize(size)
        settings.setOutputDpi(96)
        settings.setBackgroundColor(QColor(0, 0, 0, 0))
        job = QgsMapRendererSequentialJob(settings)
        job.start()
        job.waitForFinished()
        img = job.renderedImage()
        info['render_errors'] = [err.message for err in job.errors()]
        info['image_size'] = [img.width(), img.height()]
        info['saved'] = bool(img.save(png, 'PNG'))
        del img, job, settings, layer  # before exitQgis (else a crash at exit)
    with open(out_json, 'w') as f:
        json.dump(report, f, indent=1)
    app.exitQgis()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
