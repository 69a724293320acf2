"""Run gdaltps:thinplatespline with PyQGIS's processing.run, headless (run
as a subprocess by autotest/test_qgis_processing.py).

    QT_QPA_PLATFORM=offscreen GDAL_DRIVER_PATH=build \\
        /usr/bin/python3 autotest/clients/qgis_processing.py JOBS.json OUT.json

The plugin is loaded as QGIS loads it (qgis.utils: import the package from
the repository's qgis/ folder, classFactory, initProcessing).

JOBS.json: {"jobs": [{"id": ..., "layer": LAYER, "params": {...}, ...}]}
with, per job:
  layer      {"uri": ..., "provider": ..., "subset": ...}, or
             {"memory_from": URI, "provider": ..., "crs": ...}: a memory
             layer holding that layer's points and attributes;
  cancel_at  the feedback cancels once the progress reaches this value;
  cancel_on_text  ... or once a progress text starts with this;
  load       run with processing.runAndLoadResults, report the loaded
             layer's style;
  render     draw the loaded layer with that style into this PNG (its size
             in pixels, the points on top);
  config     GDAL configuration options set for that job only.
OUT.json gets, per job: ok, error, results, the progress values and texts,
the messages and commands the algorithm pushed, TPS_ALLOWED_SOURCES as the
process sees it after the run, and the processes still running then whose
command line names the job's OUTPUT (from /proc: the algorithm's child
process, if it outlived the run).
"""
import json
import os
import sys

os.environ.setdefault('QT_QPA_PLATFORM', 'offscreen')

from osgeo import gdal  # noqa: E402
from qgis.core import (QgsApplication, QgsFeature, QgsMapRendererSequentialJob,  # noqa: E402
                       QgsMapSettings, QgsMarkerSymbol, QgsProcessingFeedback, QgsProject,
                       QgsSingleSymbolRenderer, QgsVectorLayer)
from qgis.PyQt.QtCore import QSize  # noqa: E402
from qgis.PyQt.QtGui import QColor  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Recorder(QgsProcessingFeedback):
    def __init__(self, cancel_at=None, cancel_on_text=None):
        super().__init__()
        self.log = {'progress': [], 'texts': [], 'info': [], 'warnings': [], 'debug': [],
                    'errors': [], 'commands': []}
        self.cancel_at = cancel_at
        self.cancel_on_text = cancel_on_text
        self.progressChanged.connect(self._progress)

    def _progress(self, value):
        self.log['progress'].append(value)
        if self.cancel_at is not None and value >= self.cancel_at and not self.isCanceled():
            self.cancel()

    def setProgressText(self, text):  # noqa: N802
        self.log['texts'].append(text)
        super().setProgressText(text)
        if self.cancel_on_text and text.startswith(self.cancel_on_text) and \
                not self.isCanceled():
            self.cancel()

    def pushCommandInfo(self, text):  # noqa: N802
        self.log['commands'].append(text)

    def pushInfo(self, text):  # noqa: N802
        self.log['info'].append(text)

    def pushWarning(self, text):  # noqa: N802
        self.log['warnings'].append(text)

    def pushDebugInfo(self, text):  # noqa: N802
        self.log['debug'].append(text)

    def reportError(self, text, fatal=False):  # noqa: N802
        self.log['errors'].append(text)


def make_layer(spec):
    if 'memory_from' in spec:
        src = owned(QgsVectorLayer(spec['memory_from'], 'src', spec['provider']))
        assert src.isValid(), spec
        mem = QgsVectorLayer('Point?crs=%s' % spec['crs'], spec.get('name', 'memory points'),
                             'memory')
        mem.dataProvider().addAttributes(src.fields().toList())
        mem.updateFields()
        features = []
        for f in src.getFeatures():
            g = QgsFeature(mem.fields())
            g.setGeometry(f.geometry())
            g.setAttributes(f.attributes())
            features.append(g)
        mem.dataProvider().addFeatures(features)
        mem.updateExtents()
        return owned(mem)
    layer = QgsVectorLayer(spec['uri'], spec.get('name', 'points'), spec['provider'])
    assert layer.isValid(), spec
    if spec.get('subset'):
        assert layer.setSubsetString(spec['subset']), spec
    return owned(layer)


def owned(layer):
    """The project owns the layer (not Python): it is deleted by
    removeAllMapLayers before exitQgis, not at interpreter exit, when QGIS's
    OGR connection pool is gone (a crash)."""
    QgsProject.instance().addMapLayer(layer, False)
    return layer


def running_with(text):
    """Pids of the processes whose command line holds `text`."""
    pids = []
    for pid in os.listdir('/proc'):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                cmdline = f.read().decode('utf-8', 'replace')
        except (OSError, ValueError):
            continue
        if pid.isdigit() and int(pid) != os.getpid() and text in cmdline:
            pids.append(int(pid))
    return pids


def loaded(results):
    return QgsProject.instance().mapLayer(results['OUTPUT']) or next(
        (lyr for lyr in QgsProject.instance().mapLayers().values()
         if lyr.source() == results['OUTPUT']), None)


def style_of(layer):
    if layer is None:
        return None
    r = layer.renderer()
    info = {'name': layer.name(), 'type': r.type()}
    if r.type() == 'singlebandpseudocolor':
        fn = r.shader().rasterShaderFunction()
        info.update(min=r.classificationMin(), max=r.classificationMax(), clip=fn.clip(),
                    stops=[item.value for item in fn.colorRampItemList()])
    return info


def render(layer, points, png):
    """The loaded result with its own style, and the input points."""
    marker = QgsMarkerSymbol.createSimple({'name': 'circle', 'size': '1.2',
                                           'color': '0,0,0,0', 'outline_color': 'black',
                                           'outline_width': '0.3'})
    points.setRenderer(QgsSingleSymbolRenderer(marker))
    settings = QgsMapSettings()
    settings.setLayers([points, layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(layer.width(), layer.height()))
    settings.setOutputDpi(96)
    settings.setBackgroundColor(QColor(255, 255, 255, 0))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    return {'errors': [e.message for e in job.errors()],
            'saved': bool(job.renderedImage().save(png, 'PNG'))}


def main(jobs_json, out_json):
    app = QgsApplication([], False)
    app.initQgis()
    sys.path.insert(0, '/usr/share/qgis/python/plugins')
    sys.path.insert(0, os.path.join(REPO, 'qgis'))
    import qgis.utils
    import processing
    from processing.core.Processing import Processing
    Processing.initialize()
    assert qgis.utils.loadPlugin('gdal_tps') and qgis.utils.startProcessingPlugin('gdal_tps')
    alg = QgsApplication.processingRegistry().algorithmById('gdaltps:thinplatespline')
    report = {'algorithm': None, 'jobs': {}}
    if alg is not None:
        report['algorithm'] = {
            'display_name': alg.displayName(),
            'provider': alg.provider().id(),
            'parameters': [p.name() for p in alg.parameterDefinitions()],
            'quantities': alg.parameterDefinition('QUANTITY').options(),
            'can_execute': list(alg.canExecute()),
        }
    with open(jobs_json) as f:
        jobs = json.load(f)['jobs']
    for job in jobs:
        feedback = Recorder(job.get('cancel_at'), job.get('cancel_on_text'))
        params = dict(job['params'])
        params['INPUT'] = make_layer(job['layer'])
        entry = {'ok': False, 'error': None, 'results': None}
        for key, value in job.get('config', {}).items():
            gdal.SetConfigOption(key, value)
        try:
            run = processing.runAndLoadResults if job.get('load') else processing.run
            results = run('gdaltps:thinplatespline', params, feedback=feedback)
            entry.update(ok=True, results={k: v for k, v in results.items()
                                           if isinstance(v, (str, type(None)))})
            if job.get('load'):
                entry['style'] = style_of(loaded(results))
            if job.get('render'):
                entry['render'] = render(loaded(results), params['INPUT'], job['render'])
        except Exception as e:  # QgsProcessingException: what the user sees
            entry['error'] = '%s: %s' % (type(e).__name__, e)
        for key in job.get('config', {}):
            gdal.SetConfigOption(key, None)
        entry['allowed_sources_after'] = gdal.GetConfigOption('TPS_ALLOWED_SOURCES')
        entry['canceled'] = feedback.isCanceled()
        entry['running_after'] = running_with(job['params']['OUTPUT'])
        entry.update(feedback.log)
        report['jobs'][job['id']] = entry
        del params
    QgsProject.instance().removeAllMapLayers()
    with open(out_json, 'w') as f:
        json.dump(report, f, indent=1)
    app.exitQgis()
    return 0


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
