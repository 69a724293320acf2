"""Read a raster with rioxarray, lazily in Dask chunks, and compute it on a
dask.distributed.LocalCluster of worker PROCESSES (run as a subprocess by
autotest/test_clients.py; the workers inherit GDAL_DRIVER_PATH).

    GDAL_DRIVER_PATH=build /usr/bin/python3 autotest/clients/dask_read.py RASTER OUT.npy OUT.json CHUNK

OUT.npy: the computed array (bands, rows, cols). OUT.json: the cluster's
worker count and process ids, the chunking, the CRS and the transform
rioxarray saw, and which worker processes ran read tasks.
"""
import json
import os
import sys

import numpy as np


def tps_tag(path, key):
    import rasterio
    with rasterio.open(path) as src:
        return src.tags(ns='TPS').get(key)


def main(path, out_npy, out_json, chunk):
    import rioxarray
    from dask.distributed import Client, LocalCluster, get_task_stream

    chunk = int(chunk)
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        da = rioxarray.open_rasterio(path, chunks={'band': 1, 'y': chunk, 'x': chunk}, lock=False)
        pids = client.run(os.getpid)
        nchunks = int(np.prod(da.data.numblocks))
        with get_task_stream(client) as stream:
            arr = da.data.compute()  # the Client is the default scheduler now
        used = sorted({pids[t['worker']] for t in stream.data if t.get('worker') in pids})
        info = {'workers': len(pids), 'worker_pids': sorted(pids.values()),
                'client_pid': os.getpid(), 'chunks': nchunks, 'worker_pids_used': used,
                'dtype': str(arr.dtype), 'shape': list(arr.shape),
                'crs': da.rio.crs.to_string() if da.rio.crs else None,
                'transform': list(da.rio.transform())[:6],
                'nodata': None if da.rio.nodata is None else float(da.rio.nodata),
                'driver_path_on_workers': sorted(set(client.run(
                    lambda: os.environ.get('GDAL_DRIVER_PATH')).values())),
                # the workers' model: read from the .tps.model file or solved there?
                'worker_model_source': sorted(set(client.run(tps_tag, path, 'MODEL_SOURCE').values())),
                'worker_solves': sorted(set(client.run(tps_tag, path, 'SOLVES').values()))}
    np.save(out_npy, arr)
    with open(out_json, 'w') as f:
        json.dump(info, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
