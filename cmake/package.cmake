# `make package`: one Debian package (CPack's DEB generator) with
#   - gdal_TPS.so in the folder the system GDAL loads plugins from
#     (GDAL_PLUGIN_DIR, driver/CMakeLists.txt);
#   - the QGIS plugin qgis/gdal_tps in the system QGIS's plugin folder;
#   - the README, docs/ and data/ (the examples the docs use) in
#     /usr/share/doc/gdal-tps, in the layout their links expect.
# Depends are derived from the binaries by dpkg-shlibdeps (package dpkg-dev):
# libgdal32, liblapacke, libopenblas0, ... The CUDA runtime is linked
# statically (CMAKE_CUDA_RUNTIME_LIBRARY Static): no CUDA package is needed,
# and the plugin finds the NVIDIA driver at run time when there is one.
# scripts/package_check.sh installs the package, checks it and removes it.

# Debian's QGIS (prefix /usr) reads Python plugins from here; like the GDAL
# plugin, it is the system's folder whatever CMAKE_INSTALL_PREFIX is.
set(QGIS_PLUGIN_DIR "/usr/share/qgis/python/plugins" CACHE PATH
    "Folder QGIS loads system-wide Python plugins from")
install(DIRECTORY "${PROJECT_SOURCE_DIR}/qgis/gdal_tps" DESTINATION "${QGIS_PLUGIN_DIR}"
        PATTERN "__pycache__" EXCLUDE PATTERN "*.pyc" EXCLUDE)

set(TPS_DOC_DIR "${CMAKE_INSTALL_DATADIR}/doc/gdal-tps")
install(FILES "${PROJECT_SOURCE_DIR}/README.md" DESTINATION "${TPS_DOC_DIR}")
# Only the tracked kinds of file: not the model files (.tps.model.*), locks
# or .aux.xml that opening data/*.tps in the source tree leaves there.
install(DIRECTORY "${PROJECT_SOURCE_DIR}/docs" DESTINATION "${TPS_DOC_DIR}"
        FILES_MATCHING PATTERN "*.md" PATTERN "*.png")
install(DIRECTORY "${PROJECT_SOURCE_DIR}/data" DESTINATION "${TPS_DOC_DIR}"
        FILES_MATCHING PATTERN "*.md" PATTERN "*.csv" PATTERN "*.tps" PATTERN "*.txt")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME gdal-tps)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# The Maintainer field (a cache variable: packagers set their own).
set(TPS_PACKAGE_MAINTAINER "gdal-tps maintainers <maintainers@users.noreply.b-seed-b2c6c011.example>"
    CACHE STRING "Maintainer of the Debian package")
set(CPACK_PACKAGE_CONTACT "${TPS_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "GDAL raster driver: thin plate spline surfaces from points (and its QGIS plugin)")
set(CPACK_PACKAGE_DESCRIPTION
    "A GDAL plugin driver (TPS) that opens a small .tps XML file naming a point source
and a grid as a raster whose pixels are a thin plate spline through the points,
solved once and evaluated on demand on the CPU or an NVIDIA GPU; and a QGIS
Processing provider (gdaltps:thinplatespline) that writes such a file for a point
layer. Enable the QGIS plugin in Plugins > Manage and Install Plugins.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The QGIS plugin runs inside QGIS, whose Python has GDAL's bindings and numpy,
# and runs the gdal_translate command (gdal-bin; Debian's python3-qgis-common
# depends on it, so it is there wherever QGIS Processing is). Recommends, not
# Depends: the GDAL driver itself needs none of them.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "python3-qgis, python3-gdal, python3-numpy, gdal-bin")
# Python writes __pycache__ into the plugin folder when root runs QGIS:
# prerm removes it, so that dpkg -r leaves nothing behind.
configure_file("${CMAKE_CURRENT_LIST_DIR}/prerm.in" "${CMAKE_BINARY_DIR}/debian/prerm" @ONLY)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA "${CMAKE_BINARY_DIR}/debian/prerm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
