/* gpu_probe.h for scripts/cuda_emu: the emulated GPU is always there. */
#include <stdio.h>
static inline int gpu_required(void) { printf("EMULATED GPU\n"); return 1; }
