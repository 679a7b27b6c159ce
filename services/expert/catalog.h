/* catalog — the per-request LoRA adapters of an expert (`wan-expert --lora-catalog DIR`).
 *
 * Every `*.safetensors` file directly in DIR is one adapter, named by its file name without the
 * extension (`DIR/style_a.safetensors` is "style_a"), prepared at start for unmerged application
 * (models/dit.h dit_adapter: its factors on the expert's backend, so a request naming it costs
 * two thin GEMMs per block linear and no reload). A Denoise request names at most one adapter
 * and a strength; requests with different adapters share a batch. Adapters holding full deltas
 * (.diff/.diff_b) are refused at start (they only merge: --lora). Names are 1..63 bytes of
 * [A-Za-z0-9._-]. Ownership: the catalog owns its adapters; expert_catalog_free releases them
 * (before the model they were made for).
 */
#ifndef WS_EXPERT_CATALOG_H
#define WS_EXPERT_CATALOG_H

#include "models/dit.h"

typedef struct expert_catalog expert_catalog;

int expert_catalog_load(const char *dir, dit_model *m, expert_catalog **out, ws_err *err);
void expert_catalog_free(expert_catalog *c);
/* The adapter called `name`, or NULL. */
const dit_adapter *expert_catalog_find(const expert_catalog *c, const char *name);
int expert_catalog_count(const expert_catalog *c);
/* Names, comma-separated, into buf (for logs and Info). */
const char *expert_catalog_names(const expert_catalog *c, char *buf, size_t n);

#endif
