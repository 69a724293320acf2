#!/usr/bin/env python3
"""Writes the fuzzer's model-file seeds, fuzz/corpus/model_*.tps: a .tps
document, a NUL byte, open options, a NUL byte and the bytes of a model file
the driver wrote for that document over the harness's points (the same CSV
as fuzz_open.cpp's Setup, in /vsimem/). The harness replaces the model's hash
with the one it expects and reseals its checksum, so these stay valid seeds
across GDAL, PROJ and engine versions while the format is the same.

    GDAL_DRIVER_PATH=build /usr/bin/python3 fuzz/make_model_seeds.py
"""
import os
import sys

from osgeo import gdal

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = (b'<TPSDataset><Points><Source>pts.csv</Source><XField>x</XField><YField>y</YField>'
       b'</Points><Band><Field>z</Field></Band></TPSDataset>')
DOC2 = DOC.replace(b'</TPSDataset>', b'<Band><Field>w</Field><Smoothing>2</Smoothing></Band>'
                   b'</TPSDataset>')


def harness_csv():
    rows = ['x,y,z,w,t']
    for i in range(24):
        rows.append('%d,%d,%g,%g,%s' % (1000 + (i * 37) % 200, 2000 + (i * 53) % 170,
                                        (i * 7) % 11 * 1.5, i * 0.25, '3.5' if i % 5 else ''))
    return ('\n'.join(rows) + '\n').encode()


def model_bytes(doc, options):
    gdal.FileFromMemBuffer('/vsimem/fuzz/pts.csv', harness_csv())
    gdal.FileFromMemBuffer('/vsimem/fuzz/input.tps', doc)
    gdal.Unlink('/vsimem/fuzz/input.tps.model')
    ds = gdal.OpenEx('/vsimem/fuzz/input.tps', gdal.OF_RASTER, allowed_drivers=['TPS'],
                     open_options=options)
    assert ds is not None, gdal.GetLastErrorMsg()
    ds = None
    f = gdal.VSIFOpenL('/vsimem/fuzz/input.tps.model', 'rb')
    assert f is not None, 'no model file written'
    gdal.VSIFSeekL(f, 0, 2)
    n = gdal.VSIFTellL(f)
    gdal.VSIFSeekL(f, 0, 0)
    data = gdal.VSIFReadL(1, n, f)
    gdal.VSIFCloseL(f)
    return data


def main():
    if gdal.GetDriverByName('TPS') is None:
        sys.exit('the TPS driver is not loaded: set GDAL_DRIVER_PATH to the build folder')
    local = ['MODE=LOCAL', 'PATCH_POINTS=20']
    glob = model_bytes(DOC, [])
    seeds = {
        'model_global.tps': DOC + b'\0\0' + glob,
        'model_local.tps': DOC + b'\0' + '\n'.join(local).encode() + b'\0' +
                           model_bytes(DOC, local),
        # a model of one band next to a .tps of two
        'model_bands.tps': DOC2 + b'\0\0' + glob,
        'model_truncated.tps': DOC + b'\0\0' + glob[:200],
    }
    for name, data in seeds.items():
        with open(os.path.join(HERE, 'corpus', name), 'wb') as f:
            f.write(data)
        print(name, len(data), 'bytes')


if __name__ == '__main__':
    main()
