/*
 * fuzz_open.cpp: libFuzzer target over the whole open path of the TPS
 * driver: the input is a .tps document; it is parsed, its points loaded
 * (from a small CSV in /vsimem/ that the seeds reference, or from whatever
 * the input names), the spline solved, and an 8 x 8 window read. Any crash,
 * sanitizer report, leak or hang is a bug. Seeds: fuzz/corpus/.
 *   build: make fuzz (clang, ASan + UBSan + libFuzzer, build-fuzz/)
 *   run:   build-fuzz/fuzz/fuzz_tps -max_total_time=60 fuzz/corpus
 */
#include "gdal_priv.h"

#include <cstdint>
#include <cstdio>
#include <string>

extern "C" void GDALRegister_TPS();

namespace
{

void Setup()
{
    CPLSetConfigOption("GDAL_DRIVER_PATH", "/nonexistent"); /* no plugins: ours is linked in */
    CPLSetConfigOption("CPL_DEBUG", "OFF");
    /* Bounded solves: a fuzzed file may name a big point source. */
    CPLSetConfigOption("TPS_MAX_MEMORY", "64MB");
    GDALAllRegister();
    GDALRegister_TPS();
    CPLPushErrorHandler(CPLQuietErrorHandler);
    std::string csv = "x,y,z,w,t\n";
    for (int i = 0; i < 24; ++i) {
        char line[128];
        snprintf(line, sizeof line, "%d,%d,%g,%g,%s\n", 1000 + (i * 37) % 200,
                 2000 + (i * 53) % 170, (i * 7) % 11 * 1.5, i * 0.25, i % 5 ? "3.5" : "");
        csv += line;
    }
    VSILFILE *f = VSIFileFromMemBuffer("/vsimem/fuzz/pts.csv",
                                       reinterpret_cast<GByte *>(CPLStrdup(csv.c_str())),
                                       csv.size(), TRUE);
    VSIFCloseL(f);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const bool ready = (Setup(), true);
    (void)ready;
    const char *path = "/vsimem/fuzz/input.tps";
    VSILFILE *f = VSIFileFromMemBuffer(path, const_cast<GByte *>(data), size, FALSE);
    VSIFCloseL(f);
    const char *const drivers[] = {"TPS", nullptr};
    GDALDatasetH ds = GDALOpenEx(path, GDAL_OF_RASTER | GDAL_OF_READONLY, drivers, nullptr, nullptr);
    if (ds) {
        GDALDataset *poDS = GDALDataset::FromHandle(ds);
        const int w = std::min(8, poDS->GetRasterXSize()), h = std::min(8, poDS->GetRasterYSize());
        double buf[64];
        if (poDS->GetRasterCount() > 0)
            CPL_IGNORE_RET_VAL(poDS->GetRasterBand(1)->RasterIO(GF_Read, 0, 0, w, h, buf, w, h,
                                                                 GDT_Float64, 0, 0, nullptr));
        poDS->GetMetadata("TPS");
        GDALClose(ds);
    }
    VSIUnlink(path);
    return 0;
}
