#!/usr/bin/env bash
# Remakes the guide's two QGIS pictures with the real QGIS (Debian 12's
# 3.22), from data/meuse.csv:
#   docs/img/qgis_tps_dialog.png  the algorithm's dialog, under Xvfb
#                                 (autotest/clients/qgis_dialog.py);
#   docs/img/qgis_tps_result.png  its result as Processing loads it (zinc,
#                                 10 m, GCV, convex hull) with the default
#                                 style, the points on top
#                                 (autotest/clients/qgis_processing.py).
# Needs a build (GDAL_DRIVER_PATH, default build/) and the packages of
# scripts/install-deps.sh (qgis, xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export GDAL_DRIVER_PATH=${GDAL_DRIVER_PATH:-$repo/build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export HOME="$tmp/home" XDG_RUNTIME_DIR="$tmp/run"
mkdir -m 700 -p "$HOME" "$XDG_RUNTIME_DIR"

ogr2ogr -q -f GPKG "$tmp/meuse.gpkg" data/meuse.csv -nln meuse -a_srs EPSG:28992 \
    -oo X_POSSIBLE_NAMES=x -oo Y_POSSIBLE_NAMES=y -oo AUTODETECT_TYPE=YES

xvfb-run -a -s '-screen 0 1280x1024x24' /usr/bin/python3 autotest/clients/qgis_dialog.py \
    "$tmp/meuse.gpkg" docs/img/qgis_tps_dialog.png "$tmp/dialog.json"

cat > "$tmp/jobs.json" <<EOF
{"jobs": [{"id": "result",
  "layer": {"uri": "$tmp/meuse.gpkg|layername=meuse", "provider": "ogr", "name": "meuse"},
  "params": {"FIELD": "zinc", "PIXEL_SIZE": 10, "SMOOTHING": "GCV", "CONVEX_HULL": true,
             "OUTPUT": "$tmp/zinc.tif"},
  "load": true, "render": "$repo/docs/img/qgis_tps_result.png"}]}
EOF
QT_QPA_PLATFORM=offscreen /usr/bin/python3 autotest/clients/qgis_processing.py \
    "$tmp/jobs.json" "$tmp/out.json"
/usr/bin/python3 -c "import json, sys; j = json.load(open(sys.argv[1]))['jobs']['result']; \
assert j['ok'] and j['render']['saved'] and not j['render']['errors'], j" "$tmp/out.json"
echo "wrote docs/img/qgis_tps_dialog.png docs/img/qgis_tps_result.png"
