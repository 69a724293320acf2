"""Where the .tps reads a layer's points from.

The .tps names the layer's own data when the driver can read it as QGIS
does, so that nothing is copied and the solved model is kept against the
real file:

* OGR layers (GeoPackage, Shapefile, GeoJSON, FlatGeobuf, ...) of a local
  file whose GDAL driver the default source policy reads (docs/security.md,
  TPS_ALLOWED_SOURCES=LOCAL); QGIS's subset string becomes <Where> (QGIS
  hands it to OGR as an attribute filter too);
* delimited text layers (CSV) with x and y columns, a comma separator and a
  header, no subset: <XField>/<YField> of the .csv;
* PostGIS layers (a table, not a query): a PG: connection string; the run
  then allows PG: sources (the caller sets TPS_ALLOWED_SOURCES for it).

Anything else (a memory layer, a query layer, a delimited text layer with
other settings or a QGIS-expression subset, a file of a driver outside the
default policy, a layer with open options) is first saved to a GeoPackage,
with only the fields the spline needs, through QGIS, which applies the
layer's subset while it writes.
"""
import os
from urllib.parse import parse_qsl, unquote, urlparse

from osgeo import gdal
from qgis.core import (QgsDataSourceUri, QgsProcessingException, QgsProviderRegistry,
                       QgsVectorFileWriter)

# The drivers TPS_ALLOWED_SOURCES=LOCAL reads (docs/security.md, "The source
# policy"); a file of another driver is copied, so that the .tps opens under
# the default policy.
LOCAL_DRIVERS = frozenset((
    'CSV', 'ESRI Shapefile', 'GPKG', 'GeoJSON', 'GeoJSONSeq', 'ESRIJSON', 'TopoJSON',
    'FlatGeobuf', 'OpenFileGDB', 'KML', 'GPX', 'Parquet', 'Arrow', 'XLSX', 'ODS'))

# Delimited text URI settings that GDAL's CSV driver reads the same way
# (value None: any value); any other setting means a copy.
CSV_SAME = {
    'type': ('csv',), 'delimiter': (',',), 'encoding': ('UTF-8', 'utf-8', 'UTF8'),
    'xField': None, 'yField': None, 'crs': None, 'geomType': ('point',),
    'maxFields': None, 'detectTypes': None, 'spatialIndex': None, 'subsetIndex': None,
    'watchFile': None, 'decimalPoint': ('.',), 'quote': ('"',), 'escape': ('"',),
    'useHeader': ('yes',), 'skipLines': ('0',), 'xyDms': ('no',), 'trimFields': ('no',),
    'skipEmptyFields': ('no',)}


class PointSource:
    """What <Points> holds: source, layer, x/y fields, filter; and whether
    the run must allow PG: sources, and whether the points were copied."""

    def __init__(self, source, layer=None, xfield=None, yfield=None, where=None,
                 needs_prefix=None, copied=False, kind=''):
        self.source = source
        self.layer = layer
        self.xfield = xfield
        self.yfield = yfield
        self.where = where
        self.needs_prefix = needs_prefix
        self.copied = copied
        self.kind = kind


def _ogr_source(layer):
    parts = QgsProviderRegistry.instance().decodeUri('ogr', layer.source())
    path = parts.get('path') or ''
    other = {k: v for k, v in parts.items()
             if k not in ('path', 'layerName', 'layerId', 'subset') and v}
    subset = (parts.get('subset') or layer.subsetString() or '').strip()
    # a local file, or a folder (a File Geodatabase); not /vsi paths, URLs
    if other or not (os.path.isfile(path) or os.path.isdir(path)) or \
            subset.upper().startswith('SELECT'):
        return None
    ds = gdal.OpenEx(path, gdal.OF_VECTOR)
    if ds is None or ds.GetDriver().ShortName not in LOCAL_DRIVERS:
        return None
    name = parts.get('layerName')
    if not name and parts.get('layerId') not in (None, ''):
        ogr_layer = ds.GetLayer(int(parts['layerId']))
        if ogr_layer is None:
            return None
        name = ogr_layer.GetName()
    kind = ds.GetDriver().ShortName
    ds = None
    return PointSource(os.path.abspath(path), layer=name or None, where=subset or None,
                       kind=kind)


def _csv_source(layer):
    url = urlparse(layer.source())
    path = unquote(url.path)
    settings = dict(parse_qsl(url.query, keep_blank_values=True))
    if url.scheme != 'file' or not path.lower().endswith('.csv') or not os.path.isfile(path):
        return None
    if layer.subsetString().strip() or not settings.get('xField') or not settings.get('yField'):
        return None
    for key, value in settings.items():
        if key not in CSV_SAME or (CSV_SAME[key] is not None and value not in CSV_SAME[key]):
            return None
    return PointSource(os.path.abspath(path), xfield=settings['xField'],
                       yfield=settings['yField'], kind='CSV')


def _postgres_source(layer):
    uri = QgsDataSourceUri(layer.source())
    table = uri.table()
    if not table or table.startswith('(') or not uri.database() and not uri.service():
        return None
    name = table if uri.schema() in ('', 'public') else '%s.%s' % (uri.schema(), table)
    # OGR names a table of several geometry columns table(column): give the
    # column QGIS shows whenever there is one.
    if uri.geometryColumn():
        name = '%s(%s)' % (name, uri.geometryColumn())
    where = uri.sql().strip() or None
    return PointSource('PG:' + uri.connectionInfo(True), layer=name, where=where,
                       needs_prefix='PG:', kind='PostGIS')


def _copy_to_gpkg(layer, fields, path, context):
    """Save the layer's points (its subset applied), with only `fields`."""
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = 'GPKG'
    options.layerName = 'points'
    options.fileEncoding = 'UTF-8'
    options.attributes = [layer.fields().indexOf(f) for f in fields]
    options.actionOnExistingFile = QgsVectorFileWriter.CreateOrOverwriteFile
    if os.path.exists(path):
        os.remove(path)
    err, msg, new_path, new_layer = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, path, context.transformContext(), options)
    if err != QgsVectorFileWriter.NoError:
        raise QgsProcessingException('cannot save the points of %s to %s: %s'
                                     % (layer.name(), path, msg))
    return PointSource(new_path or path, layer=new_layer or 'points', copied=True,
                       kind='GeoPackage copy')


def point_source(layer, fields, copy_path, context):
    """The PointSource of a QGIS vector layer; `fields` are the attributes the
    spline reads (copied when the points must be), `copy_path` the
    GeoPackage to write then."""
    provider = layer.providerType()
    found = None
    if provider == 'ogr':
        found = _ogr_source(layer)
    elif provider == 'delimitedtext':
        found = _csv_source(layer)
    elif provider == 'postgres':
        found = _postgres_source(layer)
    return found or _copy_to_gpkg(layer, fields, copy_path, context)
