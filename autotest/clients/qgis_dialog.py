"""Screenshot of the algorithm's Processing dialog, as QGIS shows it (run
under Xvfb by autotest/test_qgis_processing.py; also makes
docs/img/qgis_tps_dialog.png).

    GDAL_DRIVER_PATH=build xvfb-run -a -s '-screen 0 1280x1024x24' \\
        /usr/bin/python3 autotest/clients/qgis_dialog.py POINTS.gpkg OUT.png OUT.json

A real QGIS GUI application (not offscreen) with the plugin loaded as
QGIS loads it; POINTS.gpkg's first layer is in the project and picked as
INPUT, with the field zinc, pixel size 10 and GCV; the advanced
parameters are unfolded. OUT.json gets the
dialog's title and the labels of the parameter widgets it shows.
"""
import json
import os
import sys
from unittest import mock

from qgis.core import QgsApplication, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt import sip
from qgis.PyQt.QtWidgets import QGroupBox, QLabel

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(points, png, out_json):
    app = QgsApplication([], True)
    app.initQgis()
    sys.path.insert(0, '/usr/share/qgis/python/plugins')
    sys.path.insert(0, os.path.join(REPO, 'qgis'))
    import qgis.utils
    from qgis.gui import (QgsBrowserGuiModel, QgsCollapsibleGroupBoxBasic, QgsMapCanvas,
                          QgsMessageBar)
    from qgis.PyQt.QtWidgets import QMainWindow
    # The dialog asks QGIS's main window (iface) for its canvas, browser and
    # message bar: a stand-in that holds real ones (python3-mock, which
    # qgis.testing.mocked wants, is not installed).
    window, canvas, bar, browser = QMainWindow(), QgsMapCanvas(), QgsMessageBar(), \
        QgsBrowserGuiModel()
    qgis.utils.iface = mock.Mock(mainWindow=lambda: window, mapCanvas=lambda: canvas,
                                 messageBar=lambda: bar, browserModel=lambda: browser,
                                 activeLayer=lambda: None)
    from processing.core.Processing import Processing
    Processing.initialize()
    assert qgis.utils.loadPlugin('gdal_tps') and qgis.utils.startProcessingPlugin('gdal_tps')
    import processing

    layer = QgsVectorLayer(points, 'meuse', 'ogr')
    assert layer.isValid(), points
    QgsProject.instance().addMapLayer(layer)
    dialog = processing.createAlgorithmDialog(
        'gdaltps:thinplatespline',
        {'INPUT': layer.id(), 'FIELD': 'zinc', 'PIXEL_SIZE': 10, 'SMOOTHING': 'GCV'})
    dialog.show()
    report = {}

    def unfold():
        # after show(): the dialog restores its saved size when shown
        dialog.resize(920, 900)
        # show the advanced parameters too (a QgsCollapsibleGroupBoxBasic that
        # Python sees as a QGroupBox)
        for box in dialog.findChildren(QGroupBox):
            if box.title() == 'Advanced Parameters':
                sip.cast(box, QgsCollapsibleGroupBoxBasic).setCollapsed(False)

    def grab():
        report['title'] = dialog.windowTitle()
        report['labels'] = [w.text() for w in dialog.findChildren(QLabel) if w.isVisible()]
        report['saved'] = bool(dialog.grab().save(png, 'PNG'))
        dialog.close()
        app.quit()

    QTimer.singleShot(500, unfold)
    QTimer.singleShot(2000, grab)  # let the layout settle and the widgets paint
    app.exec_()
    with open(out_json, 'w') as f:
        json.dump(report, f, indent=1)
    QgsProject.instance().removeAllMapLayers()
    return 0


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
