#!/usr/bin/env bash
# The README's demo: renders data/meuse_zinc.tps with gdal_translate to a
# GeoTIFF (the whole spline surface) and a PNG preview of the Meuse flood
# plain (the cells of data/meuse_grid.csv; outside them the spline only
# extrapolates), then prints gdalinfo -stats and the TPS metadata.
#   usage: scripts/demo.sh OUT_DIR      (GDAL_DRIVER_PATH must name the build)
set -euo pipefail
out=${1:?usage: demo.sh OUT_DIR}
mkdir -p "$out"
here=$(cd "$(dirname "$0")/.." && pwd)
data=$here/data

gdal_translate -q "$data/meuse_zinc.tps" "$out/meuse_zinc.tif"

# The flood plain: meuse.grid's 40 m cells (their centres are the CSV rows),
# on the 10 m grid of the map.
extent="178440 329600 181560 333760"
ogr2ogr -overwrite -oo X_POSSIBLE_NAMES=x -oo Y_POSSIBLE_NAMES=y -a_srs EPSG:28992 \
  "$out/meuse_grid.gpkg" "$data/meuse_grid.csv"
gdal_rasterize -q -burn 1 -init 0 -ot Byte -tr 40 40 -te $extent \
  "$out/meuse_grid.gpkg" "$out/floodplain_40m.tif"
gdalwarp -q -overwrite -r near -tr 10 10 -te $extent "$out/floodplain_40m.tif" "$out/floodplain.tif"
gdal_calc.py --quiet --overwrite -A "$out/meuse_zinc.tif" -B "$out/floodplain.tif" \
  --calc="where(B == 1, A, -9999)" --NoDataValue=-9999 --type=Float32 \
  --outfile="$out/meuse_zinc_floodplain.tif"
gdaldem color-relief -q -alpha "$out/meuse_zinc_floodplain.tif" "$data/meuse_zinc_colors.txt" \
  "$out/meuse_zinc.png" -of PNG
rm -f "$out/meuse_grid.gpkg" "$out/floodplain_40m.tif" "$out/floodplain.tif" "$out"/*.aux.xml

gdalinfo -stats "$out/meuse_zinc.tif"
gdalinfo -mdd TPS "$data/meuse_zinc.tps" | sed -n '/^Metadata (TPS)/,/^[A-Z]/p' | sed '$d'
echo "wrote $out/meuse_zinc.tif (the surface) and $out/meuse_zinc.png (the flood plain)"
