#!/usr/bin/env bash
# CI: the Debian package, installed for real (issue 15), as root:
#   make package; dpkg -i;
#   GDAL lists and opens TPS with no GDAL_DRIVER_PATH;
#   QGIS (qgis_process.bin, no QGIS_PLUGINPATH) lists gdaltps:thinplatespline
#   from the installed plugin and runs it, and its raster is the bytes
#   gdal_translate writes from the .tps it kept;
#   dpkg -r leaves none of the package's files or folders behind.
# The machine keeps what a run installs: the package is removed on exit,
# whatever failed (trap). A gdal-tps package found installed at the start
# (a run killed before its cleanup) is removed first. Run it after the test
# suites: while the package is installed, every GDAL on the machine loads
# its plugin.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PKG=gdal-tps

installed() { dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep 'ok installed' >/dev/null; }

[ "$(id -u)" -eq 0 ] || { echo "package_check: run as root (dpkg -i)" >&2; exit 1; }
command -v qgis_process.bin >/dev/null || { echo "package_check: qgis_process.bin missing (scripts/install-deps.sh installs qgis)" >&2; exit 1; }

if installed; then
  echo "package_check: removing a $PKG left installed by an earlier run"
  dpkg -r "$PKG" >/dev/null
fi

make package BUILD="$BUILD"
version=$(sed -n 's/^project(gdal_tps VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
deb="$BUILD/${PKG}_${version}_$(dpkg --print-architecture).deb"
[ -f "$deb" ] || { echo "package_check: $deb was not made" >&2; exit 1; }

tmp=$(mktemp -d)
cleanup() {
  rc=$?
  if installed; then dpkg -r "$PKG" >/dev/null || rc=1; fi
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT INT TERM

# Only what the package installs may be found.
unset GDAL_DRIVER_PATH QGIS_PLUGINPATH
export QT_QPA_PLATFORM=offscreen HOME="$tmp/home" XDG_RUNTIME_DIR="$tmp/run"
mkdir -m 700 -p "$HOME" "$XDG_RUNTIME_DIR"

echo "package_check: $(dpkg-deb -f "$deb" Package Version Depends Recommends | tr '\n' ' ')"
# The QGIS plugin runs gdal_translate (qgis/gdal_tps/gdal_run.py).
dpkg-deb -f "$deb" Recommends | grep -w gdal-bin >/dev/null || { echo "package_check: gdal-bin is not recommended" >&2; exit 1; }
# No CUDA library may be needed at run time (the runtime is linked statically).
if dpkg-deb -f "$deb" Depends | grep -i cuda >/dev/null; then
  echo "package_check: the package depends on CUDA" >&2; exit 1
fi
dpkg -i "$deb"
dpkg -L "$PKG" > "$tmp/files"
plugin=$(grep '/gdalplugins/gdal_TPS.so$' "$tmp/files")
if readelf -d "$plugin" | grep NEEDED | grep -i cud >/dev/null; then
  echo "package_check: $plugin needs a CUDA library at run time" >&2; exit 1
fi

# GDAL: the driver is listed and opens the example the package ships.
gdalinfo --formats | grep '^  TPS -raster- ' >/dev/null || { echo "package_check: gdalinfo --formats has no TPS" >&2; exit 1; }
cp /usr/share/doc/gdal-tps/data/meuse.csv /usr/share/doc/gdal-tps/data/meuse_zinc.tps "$tmp/"
gdalinfo "$tmp/meuse_zinc.tps" | grep 'Driver: TPS/' >/dev/null

# QGIS: the installed plugin (enabled in a scratch profile, as QGIS 3.22 has
# no `plugins enable`) provides the algorithm; a run of it equals
# gdal_translate of the .tps it keeps.
profile="$tmp/profile"
mkdir -p "$profile/profiles/default/QGIS"
printf '[PythonPlugins]\ngdal_tps=true\n' > "$profile/profiles/default/QGIS/QGIS3.ini"
export QGIS_CUSTOM_CONFIG_PATH="$profile"
qgis_process.bin plugins 2>/dev/null | grep '^\* gdal_tps' >/dev/null || { echo "package_check: QGIS did not load gdal_tps" >&2; exit 1; }
qgis_process.bin list 2>/dev/null | grep 'gdaltps:thinplatespline' >/dev/null || { echo "package_check: QGIS does not list gdaltps:thinplatespline" >&2; exit 1; }
ogr2ogr -q -f GPKG "$tmp/meuse.gpkg" "$tmp/meuse.csv" -nln meuse -a_srs EPSG:28992 \
    -oo X_POSSIBLE_NAMES=x -oo Y_POSSIBLE_NAMES=y -oo AUTODETECT_TYPE=YES
qgis_process.bin run gdaltps:thinplatespline --INPUT="$tmp/meuse.gpkg|layername=meuse" \
    --FIELD=zinc --PIXEL_SIZE=20 --OUTPUT="$tmp/alg.tif" --OUTPUT_TPS="$tmp/alg.tps" > "$tmp/run.log" 2>&1 \
  || { cat "$tmp/run.log" >&2; echo "package_check: the algorithm failed" >&2; exit 1; }
gdal_translate -q "$tmp/alg.tps" "$tmp/ref.tif"
cmp "$tmp/alg.tif" "$tmp/ref.tif"

# Removal: no file of the package remains, and no folder but those other
# packages own too (/usr/share/doc, the gdalplugins folder, ...).
dpkg -r "$PKG"
left=0
while IFS= read -r path; do
  [ "$path" = "/." ] && continue
  if [ -d "$path" ]; then
    dpkg -S "$path" >/dev/null 2>&1 || { echo "package_check: left behind: $path/" >&2; left=1; }
  elif [ -e "$path" ] || [ -L "$path" ]; then
    echo "package_check: left behind: $path" >&2; left=1
  fi
done < "$tmp/files"
[ "$left" -eq 0 ]
if gdalinfo --formats | grep '^  TPS -raster- ' >/dev/null; then
  echo "package_check: GDAL still has TPS after dpkg -r" >&2; exit 1
fi
echo "package_check: OK ($deb)"
