"""The Processing provider "gdaltps" (shown as gdal-tps)."""
from qgis.core import QgsProcessingProvider

from .algorithm import ThinPlateSplineAlgorithm


class GdalTpsProvider(QgsProcessingProvider):
    def id(self):
        return 'gdaltps'

    def name(self):
        return 'gdal-tps'

    def longName(self):  # noqa: N802
        return 'gdal-tps: thin plate splines through the GDAL TPS driver'

    def loadAlgorithms(self):  # noqa: N802
        self.addAlgorithm(ThinPlateSplineAlgorithm())
