/* config/model.h: what config/'s loaders share: a model with every default set, and array
 * growth. Not for other modules. */
#ifndef MOAT_CONFIG_MODEL_H
#define MOAT_CONFIG_MODEL_H
#include <stddef.h>

#include "config/config.h"

#define MOAT_CFG_MAX_WORKERS 256

/* A configuration holding every default; default_workers is clamped to 1..MAX_WORKERS. */
struct moat_cfg *moat_cfg_new(unsigned default_workers);

/* Makes room for element n of an array holding n elements (4, 8, 16, ... slots). Returns the
 * array to use (possibly moved), or NULL when memory ran out (the old array is still valid). */
void *moat_cfg_grow(void *array, size_t n, size_t elem_size);

#endif
