#!/usr/bin/env bash
# Installs the Debian 12 packages gdal-tps needs to build, test and run its
# demo. Does nothing when they are all present already. The clients line is
# the real clients autotest/test_clients.py runs (QGIS headless, rasterio,
# rioxarray + Dask distributed): about 80 s of apt on a fresh Debian 12.
# The QGIS line is what autotest/test_qgis_processing.py and
# scripts/package_check.sh run: qgis (qgis_process), xvfb (the dialog's
# screenshot), PostGIS (a private server for the PostGIS layer test), and
# dpkg-dev (dpkg-shlibdeps, which derives the .deb's Depends).
# r-cran-fields is R's fields::Tps, the reference autotest/test_gcv_fields.py
# runs (Rscript) for GCV, smoothing and per-point weights.
set -euo pipefail
packages=(
  cmake make g++ pkg-config
  libgdal-dev gdal-bin python3-gdal
  liblapacke-dev libopenblas-dev
  python3-numpy python3-scipy python3-pytest python3-matplotlib
  clang libclang-rt-14-dev valgrind
  python3-qgis python3-rasterio python3-rioxarray python3-distributed
  qgis xvfb postgresql-15-postgis-3 dpkg-dev
  r-cran-fields
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
