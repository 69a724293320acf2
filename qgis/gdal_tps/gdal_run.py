"""Open a .tps with the GDAL TPS driver and translate it, in the calling
thread, reporting to a QgsProcessingFeedback.

* The solve happens in the open. GDAL's Open takes no progress function:
  the driver reports a long solve in CPLDebug lines ('TPS: name: solving:
  <stage> 42%', docs/format.md, TPS_PROGRESS_INTERVAL) on the opening
  thread, so the run turns debug output on for the driver in this thread
  only (thread-local configuration options, restored afterwards) and reads
  them with an error handler pushed on this thread. The driver cannot be
  interrupted during the solve: Cancel takes effect when it ends.
* The evaluation is GDAL's translate, whose progress function reports and
  returns 0 on Cancel, which stops it.
* The driver's errors (CE_Failure) are collected and raised as one
  QgsProcessingException, with GDAL exceptions on or off.

The raster is GDAL's translate of the .tps with the open options given:
what `gdal_translate [-oo DEVICE=...] x.tps out.tif` writes.
"""
import os
import re

from osgeo import gdal
from qgis.core import QgsProcessingException

# The quantities of docs/format.md, "Derivative bands", for a driver that
# does not list them in its metadata item TPS_QUANTITIES (comma-separated).
STATIC_QUANTITIES = ('value', 'dzdx', 'dzdy', 'slope', 'aspect', 'laplacian')

SOLVING = re.compile(r'solving: (.*?) (\d+)%$')
REPORTED = ('POINT_COUNT', 'INPUT_POINTS', 'SMOOTHING', 'SMOOTHING_METHOD', 'EFFECTIVE_DF',
            'LOO_RMSE', 'MAX_ABS_RESIDUAL', 'MODE', 'PATCHES', 'SOLVE_DEVICE', 'DEVICE',
            'MODEL_SOURCE', 'SOLVE_SECONDS')


def tps_driver():
    return gdal.GetDriverByName('TPS')


def quantities():
    """What a band can show: the driver's list when it publishes one."""
    driver = tps_driver()
    listed = driver.GetMetadataItem('TPS_QUANTITIES') if driver is not None else None
    if listed:
        return tuple(q.strip() for q in listed.split(',') if q.strip())
    return STATIC_QUANTITIES


class _Messages:
    """GDAL's messages in this thread: failures kept, warnings and the
    driver's debug lines passed on to the feedback."""

    def __init__(self, feedback, on_solve_progress):
        self.feedback = feedback
        self.on_solve_progress = on_solve_progress
        self.failures = []

    def __call__(self, err_class, err_no, message):
        message = str(message)
        if err_class in (gdal.CE_Failure, gdal.CE_Fatal):
            self.failures.append(message)
        elif err_class == gdal.CE_Warning:
            self.feedback.pushWarning('GDAL: ' + message)
        elif err_class == gdal.CE_Debug and message.startswith('TPS: '):
            text = message[len('TPS: '):]
            m = SOLVING.search(text)
            if m:
                self.on_solve_progress(m.group(1), int(m.group(2)))
            else:
                self.feedback.pushDebugInfo(text)

    def error(self, what, exception=None):
        """The driver's messages (they name the file), else `what`."""
        lines = list(self.failures)
        if exception is not None and str(exception) not in lines:
            lines.append(str(exception))
        return QgsProcessingException('\n'.join(lines) if lines
                                      else '%s: GDAL gave no reason' % what)


class _ThreadConfig:
    """Thread-local GDAL configuration options, restored on exit."""

    def __init__(self, options):
        self.options = options
        self.saved = {}

    def __enter__(self):
        for key, value in self.options.items():
            self.saved[key] = gdal.GetThreadLocalConfigOption(key, None)
            gdal.SetThreadLocalConfigOption(key, value)
        return self

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            gdal.SetThreadLocalConfigOption(key, value)
        return False


def allowed_sources_with(source, prefix):
    """TPS_ALLOWED_SOURCES as it is with `prefix` added, or None when it
    allows `source` already (ALL, or an item that starts it)."""
    current = (gdal.GetConfigOption('TPS_ALLOWED_SOURCES') or 'LOCAL').strip()
    items = [i for i in re.split(r'[\s,]+', current) if i]
    if any(i.upper() == 'ALL' or source.upper().startswith(i.upper()) for i in items):
        return None
    return ','.join(items + [prefix])


def _debug_on():
    value = (gdal.GetConfigOption('CPL_DEBUG') or '').upper()
    return value in ('ON', 'YES', 'TRUE', '1') or 'TPS' in value


def _delete(driver_name, path):
    """Remove a partial output (and what its driver wrote beside it)."""
    driver = gdal.GetDriverByName(driver_name)
    try:
        deleted = driver is not None and driver.Delete(path) == gdal.CE_None
    except RuntimeError:
        deleted = False
    if not deleted and os.path.exists(path):
        os.remove(path)


def translate(tps_path, output, driver_name, open_options, feedback, source=None,
              allow_prefix=None):
    """Open `tps_path` (the solve: first half of the progress bar) and
    translate it to `output` with GDAL driver `driver_name` (the second
    half). Returns the opened data set's TPS metadata."""
    def solve_progress(stage, percent):
        feedback.setProgressText('Solving: %s' % stage)
        feedback.setProgress(percent / 2.0)

    messages = _Messages(feedback, solve_progress)
    config = {}
    if not _debug_on():
        config['CPL_DEBUG'] = 'TPS'
    if gdal.GetConfigOption('TPS_PROGRESS_INTERVAL') is None:
        config['TPS_PROGRESS_INTERVAL'] = '0.5'
    if allow_prefix:
        allowed = allowed_sources_with(source, allow_prefix)
        if allowed:
            config['TPS_ALLOWED_SOURCES'] = allowed
            feedback.pushInfo('This run reads %s sources: TPS_ALLOWED_SOURCES=%s for it (a .tps '
                              'that reads them needs that setting when opened elsewhere)'
                              % (allow_prefix, allowed))
    gdal.PushErrorHandler(messages)
    try:
        with _ThreadConfig(config):
            feedback.setProgressText('Solving the spline')
            try:
                ds = gdal.OpenEx(tps_path, gdal.OF_RASTER | gdal.OF_VERBOSE_ERROR,
                                 allowed_drivers=['TPS'], open_options=open_options)
            except RuntimeError as e:
                raise messages.error('cannot open %s' % tps_path, e)
            if ds is None:
                raise messages.error('cannot open %s' % tps_path)
            metadata = ds.GetMetadata('TPS') or {}
            feedback.pushInfo('Solved: ' + ', '.join('%s=%s' % (k, metadata[k])
                                                     for k in REPORTED if k in metadata))
            if feedback.isCanceled():
                raise QgsProcessingException('Canceled after the solve; no raster was written')
            feedback.setProgressText('Evaluating %d x %d pixels' % (ds.RasterXSize,
                                                                    ds.RasterYSize))
            feedback.setProgress(50)

            def progress(complete, message, data):
                if feedback.isCanceled():
                    return 0
                feedback.setProgress(50 + 50 * complete)
                return 1

            out = error = None
            try:
                out = gdal.Translate(output, ds, format=driver_name, callback=progress)
            except RuntimeError as e:
                error = e
            if out is None:
                # the reason first: deleting what may not exist adds messages
                reason = QgsProcessingException(
                    'Canceled while evaluating; the partial %s was deleted' % output) \
                    if feedback.isCanceled() else messages.error('cannot write %s' % output, error)
                _delete(driver_name, output)
                raise reason
            out = None
            ds = None
            feedback.setProgress(100)
            return metadata
    finally:
        gdal.PopErrorHandler()
