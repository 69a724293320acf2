"""gdal-tps for QGIS: a Processing provider ("gdaltps") whose algorithm
"thinplatespline" writes a .tps file for a point layer and renders it with
the gdal_translate command through the gdal-tps driver (docs/guide.md,
"QGIS")."""


def classFactory(iface):  # noqa: N802 (QGIS's name)
    from .plugin import GdalTpsPlugin
    return GdalTpsPlugin(iface)
