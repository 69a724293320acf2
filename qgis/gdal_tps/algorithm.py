"""gdaltps:thinplatespline, "Thin plate spline (gdal-tps)".

The parameter names are a contract (scripts and qgis_process use them):
INPUT, FIELD, WEIGHT_FIELD, EXTENT, PIXEL_SIZE, CRS, SMOOTHING, MODE,
DEVICE, QUANTITY, MAX_DISTANCE, CONVEX_HULL, OUTPUT, OUTPUT_TPS.

It writes a .tps (OUTPUT_TPS, or a temporary one) that points at the
layer's source (point_source.py), and the raster is the `gdal_translate`
command run on that .tps (gdal_run.py, a child process that Cancel stops):
`gdal_translate x.tps out.tif` writes the same bytes, by construction.
"""
import math
import os

from qgis.core import (QgsCoordinateReferenceSystem, QgsProcessing, QgsProcessingAlgorithm,
                       QgsProcessingException, QgsProcessingParameterBoolean,
                       QgsProcessingParameterCrs, QgsProcessingParameterDefinition,
                       QgsProcessingParameterEnum, QgsProcessingParameterExtent,
                       QgsProcessingParameterField, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterString, QgsProcessingParameterVectorLayer,
                       QgsProcessingUtils, QgsRasterFileWriter)

from . import gdal_run
from .point_source import point_source
from .style import StyleResult, field_stops, raster_stops
from .tps_file import tps_document, write_tps

MODES = ('AUTO', 'GLOBAL', 'LOCAL')
DEVICES = ('AUTO', 'CPU', 'GPU')
NO_DRIVER = ('the GDAL driver TPS is not loaded in this QGIS: install the gdal-tps package '
             '(gdal_TPS.so in GDAL\'s plugin folder), or start QGIS with GDAL_DRIVER_PATH set '
             'to the folder that holds gdal_TPS.so')


def crs_text(crs):
    """A CRS string the driver takes whole (docs/format.md, "CRS strings"):
    the authority code when QGIS has one, else WKT."""
    if not crs.isValid():
        return None
    authid = crs.authid()
    if authid and authid.split(':')[0].upper() in ('EPSG', 'ESRI', 'IGNF', 'OGC'):
        return authid
    return crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED_GDAL)


def parse_smoothing(text):
    """'GCV' (any case) or a number >= 0, as the .tps wants it; None if neither."""
    text = (text or '').strip()
    if text.upper() == 'GCV':
        return 'GCV'
    try:
        value = float(text)
    except ValueError:
        return None
    if not (math.isfinite(value) and value >= 0):
        return None
    text = repr(value)  # the shortest text that reads back as the same double
    return text[:-2] if text.endswith('.0') else text


class ThinPlateSplineAlgorithm(QgsProcessingAlgorithm):
    def name(self):
        return 'thinplatespline'

    def displayName(self):  # noqa: N802
        return 'Thin plate spline (gdal-tps)'

    def group(self):
        return 'Interpolation'

    def groupId(self):  # noqa: N802
        return 'interpolation'

    def tags(self):
        return ['interpolation', 'spline', 'thin plate spline', 'tps', 'gcv', 'surface',
                'slope', 'aspect', 'gdal']

    def createInstance(self):  # noqa: N802
        return ThinPlateSplineAlgorithm()

    def shortHelpString(self):  # noqa: N802
        return (
            'Interpolates a numeric field of a point layer with a thin plate spline, through '
            'the gdal-tps GDAL driver.\n\n'
            'Smoothing: 0 passes exactly through the points, a number > 0 smooths (it means '
            'what smoothing means in scipy\'s RBFInterpolator), GCV chooses it from the data. '
            'Quantity: the value, or a derivative of the same surface (slope and aspect in '
            'degrees, dzdx, dzdy, laplacian). Max distance and convex hull make pixels far '
            'from the points NoData: a spline only extrapolates there.\n\n'
            'The extent defaults to the points\' bounding box, the CRS to the layer\'s; the '
            'pixel size is in the output CRS\'s units, and the pixel count is rounded up to '
            'cover the extent.\n\n'
            'It writes a .tps file that names the layer\'s data (GeoPackage, Shapefile, CSV, '
            'PostGIS and the other files GDAL reads by default; anything else, a memory layer '
            'for example, is first saved to a GeoPackage beside the .tps) and writes the '
            'raster with the gdal_translate command (Cancel stops it, solving or '
            'evaluating). Keep the .tps (Thin plate spline file) to '
            'open the surface in QGIS or any GDAL program later, at any resolution: '
            'gdal_translate of it writes the same raster.')

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterVectorLayer(
            'INPUT', 'Points', [QgsProcessing.TypeVectorPoint]))
        self.addParameter(QgsProcessingParameterField(
            'FIELD', 'Field to interpolate', parentLayerParameterName='INPUT',
            type=QgsProcessingParameterField.Numeric))
        self.addParameter(QgsProcessingParameterExtent(
            'EXTENT', 'Extent (default: the points\' bounding box)', optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            'PIXEL_SIZE', 'Pixel size (output CRS units)',
            type=QgsProcessingParameterNumber.Double, minValue=0.0))
        self.addParameter(QgsProcessingParameterCrs(
            'CRS', 'Output CRS (default: the layer\'s)', optional=True))
        self.addParameter(QgsProcessingParameterString(
            'SMOOTHING', 'Smoothing (0: exact; a number > 0; or GCV)', defaultValue='0'))
        self.addParameter(QgsProcessingParameterEnum(
            'QUANTITY', 'Quantity', options=list(gdal_run.quantities()),
            defaultValue='value', usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterNumber(
            'MAX_DISTANCE', 'NoData farther than this from every point (output CRS units)',
            type=QgsProcessingParameterNumber.Double, minValue=0.0, optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            'CONVEX_HULL', 'NoData outside the points\' convex hull', defaultValue=False))
        advanced = [
            QgsProcessingParameterField(
                'WEIGHT_FIELD', 'Weight field (per point, > 0; with smoothing)',
                parentLayerParameterName='INPUT', type=QgsProcessingParameterField.Numeric,
                optional=True),
            QgsProcessingParameterEnum(
                'MODE', 'Mode (GLOBAL: one spline; LOCAL: blended patches, for many points)',
                options=list(MODES), defaultValue='AUTO', usesStaticStrings=True),
            QgsProcessingParameterEnum(
                'DEVICE', 'Device', options=list(DEVICES), defaultValue='AUTO',
                usesStaticStrings=True),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(QgsProcessingParameterRasterDestination('OUTPUT', 'Interpolated raster'))
        self.addParameter(QgsProcessingParameterFileDestination(
            'OUTPUT_TPS', 'Thin plate spline file (.tps)', fileFilter='TPS files (*.tps)',
            optional=True, createByDefault=False))

    def canExecute(self):  # noqa: N802
        if gdal_run.tps_driver() is None:
            return False, NO_DRIVER
        if gdal_run.gdal_translate() is None:
            return False, gdal_run.NO_COMMAND
        return True, ''

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        if parse_smoothing(self.parameterAsString(parameters, 'SMOOTHING', context)) is None:
            return False, 'Smoothing must be a number >= 0 or GCV'
        if not self.parameterAsDouble(parameters, 'PIXEL_SIZE', context) > 0:
            return False, 'Pixel size must be > 0'
        if parameters.get('MAX_DISTANCE') is not None and \
                not self.parameterAsDouble(parameters, 'MAX_DISTANCE', context) > 0:
            return False, 'Max distance must be > 0 (or left empty)'
        return True, ''

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        ok, message = self.canExecute()
        if not ok:
            raise QgsProcessingException(message)
        layer = self.parameterAsVectorLayer(parameters, 'INPUT', context)
        if layer is None:
            raise QgsProcessingException('no point layer given (INPUT)')
        field = self.parameterAsString(parameters, 'FIELD', context)
        weight = self.parameterAsString(parameters, 'WEIGHT_FIELD', context) or None
        for f in (field, weight):
            if f and layer.fields().indexOf(f) < 0:
                raise QgsProcessingException('layer %s has no field %s' % (layer.name(), f))
        crs = self.parameterAsCrs(parameters, 'CRS', context)
        out_crs = crs if crs.isValid() else layer.crs()
        extent = None
        if parameters.get('EXTENT') not in (None, ''):
            rect = self.parameterAsExtent(parameters, 'EXTENT', context, out_crs)
            if not rect.isNull() and rect.width() > 0 and rect.height() > 0:
                extent = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
        quantity = self.parameterAsEnumString(parameters, 'QUANTITY', context)
        mode = self.parameterAsEnumString(parameters, 'MODE', context) or 'AUTO'
        device = self.parameterAsEnumString(parameters, 'DEVICE', context) or 'AUTO'
        max_distance = None
        if parameters.get('MAX_DISTANCE') is not None:
            max_distance = self.parameterAsDouble(parameters, 'MAX_DISTANCE', context)

        output = self.parameterAsOutputLayer(parameters, 'OUTPUT', context)
        ext = os.path.splitext(output)[1].lstrip('.')
        driver_name = QgsRasterFileWriter.driverForExtension(ext) or 'GTiff'
        kept_tps = self.parameterAsFileOutput(parameters, 'OUTPUT_TPS', context) or None
        tps_path = kept_tps or QgsProcessingUtils.generateTempFilename('thinplatespline.tps')
        if kept_tps and os.path.splitext(kept_tps)[1].lower() != '.tps':
            raise QgsProcessingException('the thin plate spline file must end in .tps: %s'
                                         % kept_tps)
        copy_path = os.path.splitext(tps_path)[0] + '.points.gpkg'

        points = point_source(layer, [f for f in (field, weight) if f], copy_path, context)
        if points.copied:
            feedback.pushInfo('Saved the points of %s to %s (the driver cannot read this layer '
                              'as QGIS does)' % (layer.name(), points.source))
        else:
            feedback.pushInfo('The .tps reads the %s source of %s directly'
                              % (points.kind, layer.name()))
        # a connection string with a password: the .tps only its owner reads
        private = points.source.startswith('PG:') and 'password=' in points.source
        if kept_tps and private:
            feedback.pushWarning('%s holds the connection string of %s, with its password; '
                                 'a PostgreSQL service file or ~/.pgpass keeps it out'
                                 % (kept_tps, layer.name()))
        text = tps_document(
            tps_path, points, field, points_srs=crs_text(layer.crs()), weight_field=weight,
            output_srs=crs_text(crs) if crs.isValid() else None, extent=extent,
            pixel_size=self.parameterAsDouble(parameters, 'PIXEL_SIZE', context),
            smoothing=parse_smoothing(self.parameterAsString(parameters, 'SMOOTHING', context)),
            mode=mode, quantity=quantity, max_distance=max_distance,
            convex_hull=self.parameterAsBoolean(parameters, 'CONVEX_HULL', context))
        write_tps(tps_path, text, private=private)
        feedback.pushInfo('Wrote %s' % tps_path)

        open_options = [] if device == 'AUTO' else ['DEVICE=' + device]
        gdal_run.translate(tps_path, output, driver_name, open_options, feedback,
                           source=points.source, allow_prefix=points.needs_prefix)

        if context.willLoadLayerOnCompletion(output):
            stops = field_stops(layer, field) if quantity == 'value' else \
                raster_stops(output, quantity)
            details = context.layerToLoadOnCompletionDetails(output)
            if stops:
                details.setPostProcessor(StyleResult.create(stops))
            details.name = '%s (thin plate spline)' % field if quantity == 'value' else \
                '%s %s (thin plate spline)' % (field, quantity)
        return {'OUTPUT': output, 'OUTPUT_TPS': kept_tps}
