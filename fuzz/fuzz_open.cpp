/*
 * fuzz_open.cpp: libFuzzer target over the whole open path of the TPS
 * driver: the input is a .tps document; it is parsed, its points loaded
 * (from a small CSV in /vsimem/ that the seeds reference, or from whatever
 * the input names), the spline solved, and a window read. Any crash,
 * sanitizer report, leak or hang is a bug. Seeds: fuzz/corpus/.
 *
 * Input: the .tps document, then optionally a NUL byte and open options,
 * one KEY=VALUE per line (DEVICE=GPU, PRECISION=MIXED, SIZE=..., any of
 * docs/format.md's). The options are how the fuzzer reaches the GPU path:
 * DEVICE=GPU, or AUTO (the default) on a raster big enough for the GPU to
 * win. Without a usable GPU, DEVICE=GPU must fail at open, cleanly; on a
 * GPU host (a CUDA build, bench/gpu_host.sh) the GPU solves and evaluates.
 * On the CPU an 8 x 8 window is read (cheap); when the dataset evaluates on
 * the GPU, a 67 x 43 one (several thread blocks, partial ones at the edge).
 *
 * Hostile model files: after a second NUL byte the input carries the bytes
 * of a <name>.tps.model placed next to the .tps in /vsimem/. Anyone can
 * forge one (its hash covers only inputs anyone can compute), and so does
 * this harness: it opens the .tps once to learn the hash the driver
 * expects, writes it into the forged header (bytes 40-71) and reseals the
 * checksum (FNV-1a 64 of all but the last 8 bytes), so that mutations
 * reach the loader's checks of counts and values, not only the first
 * comparison. Seeds: fuzz/corpus/model_*.tps (fuzz/make_model_seeds.py).
 *   build: make fuzz (clang, ASan + UBSan + libFuzzer, build-fuzz/)
 *   run:   build-fuzz/fuzz/fuzz_tps -max_total_time=60 -dict=fuzz/tps.dict fuzz/corpus
 */
#include "gdal_priv.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

extern "C" void GDALRegister_TPS();

namespace
{

/* TPS_FUZZ_VERBOSE=1: the errors, the driver's debug lines and what each
 * input reached (to check by hand which paths a seed takes). */
bool Verbose()
{
    static const bool verbose = CPLTestBool(CPLGetConfigOption("TPS_FUZZ_VERBOSE", "NO"));
    return verbose;
}

void Setup()
{
    CPLSetConfigOption("GDAL_DRIVER_PATH", "/nonexistent"); /* no plugins: ours is linked in */
    CPLSetConfigOption("CPL_DEBUG", Verbose() ? "TPS" : "OFF");
    /* Bounded solves: a fuzzed file may name a big point source. */
    CPLSetConfigOption("TPS_MAX_MEMORY", "64MB");
    GDALAllRegister();
    GDALRegister_TPS();
    if (!Verbose())
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

constexpr size_t MODEL_HASH_OFFSET = 40;
constexpr size_t MODEL_HEADER_BYTES = 128;

uint64_t Fnv1a64(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; ++i) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* The forged model file: the driver's own hash for this .tps and options
 * (from the model file a first open writes), the checksum resealed. */
void PlaceModel(const char *tps, const char *model, const char *const *drivers,
                const CPLStringList &aosOptions, const uint8_t *bytes, size_t size)
{
    VSIUnlink(model);
    GDALDatasetH ds = GDALOpenEx(tps, GDAL_OF_RASTER | GDAL_OF_READONLY, drivers,
                                 aosOptions.List(), nullptr);
    if (ds)
        GDALClose(ds);
    std::vector<uint8_t> forged(bytes, bytes + size);
    VSILFILE *fp = VSIFOpenL(model, "rb");
    if (fp) {
        uint8_t header[MODEL_HEADER_BYTES];
        if (VSIFReadL(header, 1, sizeof header, fp) == sizeof header &&
            forged.size() >= MODEL_HASH_OFFSET + 32)
            memcpy(forged.data() + MODEL_HASH_OFFSET, header + MODEL_HASH_OFFSET, 32);
        VSIFCloseL(fp);
    }
    if (forged.size() >= MODEL_HEADER_BYTES + 8) {
        const uint64_t sum = Fnv1a64(forged.data(), forged.size() - 8);
        memcpy(forged.data() + forged.size() - 8, &sum, 8);
    }
    fp = VSIFOpenL(model, "wb");
    if (fp) {
        VSIFWriteL(forged.data(), 1, forged.size(), fp);
        VSIFCloseL(fp);
    }
}

/* The open options after the document's NUL byte: one KEY=VALUE a line,
 * at most 32 lines of at most 256 bytes (what a user could type). */
CPLStringList ParseOptions(const uint8_t *data, size_t size)
{
    CPLStringList aosOptions;
    const char *p = reinterpret_cast<const char *>(data), *end = p + size;
    while (p < end && aosOptions.size() < 32) {
        const char *eol = static_cast<const char *>(memchr(p, '\n', end - p));
        const char *stop = eol ? eol : end;
        std::string osLine(p, std::min<size_t>(stop - p, 256));
        osLine.erase(std::find(osLine.begin(), osLine.end(), '\0'), osLine.end());
        if (osLine.find('=') != std::string::npos)
            aosOptions.AddString(osLine.c_str());
        p = stop + 1;
    }
    return aosOptions;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const bool ready = (Setup(), true);
    (void)ready;
    const char *path = "/vsimem/fuzz/input.tps";
    const char *model = "/vsimem/fuzz/input.tps.model";
    const uint8_t *nul = static_cast<const uint8_t *>(memchr(data, 0, size));
    const size_t docSize = nul ? static_cast<size_t>(nul - data) : size;
    // doc [NUL options [NUL model bytes]]
    const uint8_t *rest = nul ? nul + 1 : data + size;
    const uint8_t *nul2 =
        nul ? static_cast<const uint8_t *>(memchr(rest, 0, data + size - rest)) : nullptr;
    const uint8_t *optionsEnd = nul2 ? nul2 : data + size;
    const CPLStringList aosOptions =
        nul ? ParseOptions(rest, static_cast<size_t>(optionsEnd - rest)) : CPLStringList();
    VSILFILE *f = VSIFileFromMemBuffer(path, const_cast<GByte *>(data), docSize, FALSE);
    VSIFCloseL(f);
    const char *const drivers[] = {"TPS", nullptr};
    if (nul2)
        PlaceModel(path, model, drivers, aosOptions, nul2 + 1,
                   static_cast<size_t>(data + size - nul2 - 1));
    GDALDatasetH ds = GDALOpenEx(path, GDAL_OF_RASTER | GDAL_OF_READONLY, drivers,
                                 aosOptions.List(), nullptr);
    if (ds) {
        GDALDataset *poDS = GDALDataset::FromHandle(ds);
        const char *pszDevice = poDS->GetMetadataItem("DEVICE", "TPS");
        const bool bGPU = pszDevice && EQUAL(pszDevice, "GPU");
        const int w = std::min(bGPU ? 67 : 8, poDS->GetRasterXSize());
        const int h = std::min(bGPU ? 43 : 8, poDS->GetRasterYSize());
        std::vector<double> buf(static_cast<size_t>(std::max(w, 0)) * std::max(h, 0) + 1);
        if (poDS->GetRasterCount() > 0)
            CPL_IGNORE_RET_VAL(poDS->GetRasterBand(1)->RasterIO(GF_Read, 0, 0, w, h, buf.data(), w, h,
                                                                 GDT_Float64, 0, 0, nullptr));
        if (Verbose())
            fprintf(stderr, "fuzz_tps: opened, %d bands, %d x %d, DEVICE=%s; read %d x %d: %s\n",
                    poDS->GetRasterCount(), poDS->GetRasterXSize(), poDS->GetRasterYSize(),
                    pszDevice ? pszDevice : "?", w, h, CPLGetLastErrorMsg());
        poDS->GetMetadata("TPS");
        GDALClose(ds);
    } else if (Verbose()) {
        fprintf(stderr, "fuzz_tps: not opened: %s\n", CPLGetLastErrorMsg());
    }
    VSIUnlink(path);
    VSIUnlink(model);
    return 0;
}
