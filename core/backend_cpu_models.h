/* backend_cpu_models — the CPU backend's ops for the VAE and umT5 (the optional members of
 * core/backend.h): the float32 references the CUDA backend is tested against. Internal to
 * core/backend_cpu.c, which installs them into every CPU backend it creates. */
#ifndef WS_BACKEND_CPU_MODELS_H
#define WS_BACKEND_CPU_MODELS_H

#include "core/backend.h"

void cpu_models_install(ws_backend *be);

#endif
