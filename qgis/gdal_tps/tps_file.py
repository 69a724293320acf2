"""The .tps document the algorithm writes (docs/format.md): the points'
<Points>, the grid as <Extent> + <Resolution> (or <Resolution> alone: the
points' bounding box, as the driver computes it), and one <Band>."""
import os
import xml.etree.ElementTree as ET


def _number(value):
    """The shortest text that reads back as the same double (40, not 40.0)."""
    text = repr(float(value))
    return text[:-2] if text.endswith('.0') else text


def _source_text(source, tps_path):
    """A file in the .tps file's folder (or below) is named relative to it, so
    that the folder can move; any other source as it is."""
    if source.startswith('PG:') or not os.path.isabs(source):
        return source
    folder = os.path.dirname(os.path.abspath(tps_path))
    rel = os.path.relpath(source, folder)
    return source if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel


def tps_document(tps_path, points, field, points_srs=None, weight_field=None, output_srs=None,
                 extent=None, pixel_size=None, smoothing='0', mode='AUTO', quantity='value',
                 max_distance=None, convex_hull=False):
    """The text of the .tps; `extent` is (minx, miny, maxx, maxy) in the
    output CRS or None, `points` a point_source.PointSource."""
    root = ET.Element('TPSDataset')
    root.append(ET.Comment(' written by the QGIS Processing algorithm gdaltps:thinplatespline '))
    pts = ET.SubElement(root, 'Points')
    ET.SubElement(pts, 'Source').text = _source_text(points.source, tps_path)
    if points.layer:
        ET.SubElement(pts, 'Layer').text = points.layer
    if points.xfield:
        ET.SubElement(pts, 'XField').text = points.xfield
        ET.SubElement(pts, 'YField').text = points.yfield
    if points_srs:
        ET.SubElement(pts, 'SRS').text = points_srs
    if points.where:
        ET.SubElement(pts, 'Where').text = points.where
    if weight_field:
        ET.SubElement(pts, 'WeightField').text = weight_field
    if output_srs:
        ET.SubElement(root, 'SRS').text = output_srs
    if extent is not None:
        ET.SubElement(root, 'Extent').text = ' '.join(_number(v) for v in extent)
    ET.SubElement(root, 'Resolution').text = '%s %s' % (_number(pixel_size), _number(pixel_size))
    ET.SubElement(root, 'Smoothing').text = smoothing
    if mode != 'AUTO':
        ET.SubElement(root, 'Mode').text = mode
    if max_distance is not None:
        ET.SubElement(root, 'MaxDistance').text = _number(max_distance)
    if convex_hull:
        ET.SubElement(root, 'ConvexHull').text = 'true'
    band = ET.SubElement(root, 'Band')
    ET.SubElement(band, 'Field').text = field
    if quantity != 'value':
        ET.SubElement(band, 'Quantity').text = quantity
    ET.indent(root)
    return ET.tostring(root, encoding='unicode') + '\n'


def write_tps(tps_path, text, private=False):
    """`private`: readable by its owner only (0600), also when it existed
    (a .tps that holds a database password)."""
    if not private:
        with open(tps_path, 'w', encoding='utf-8') as f:
            f.write(text)
        return
    fd = os.open(tps_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
        if hasattr(os, 'fchmod'):  # POSIX
            os.fchmod(fd, 0o600)
        f.write(text)
