"""The plugin object QGIS loads: it only registers the Processing provider.
initProcessing is what qgis_process calls (it has no GUI); initGui is what
the desktop calls."""
from qgis.core import QgsApplication

from .provider import GdalTpsProvider


class GdalTpsPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802 (QGIS's name)
        if self.provider is None:
            self.provider = GdalTpsProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
