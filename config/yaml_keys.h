/* config/yaml_keys.h: the configuration file's schema: which key sets which field of the model.
 * config/-internal. */
#ifndef MOAT_CONFIG_YAML_KEYS_H
#define MOAT_CONFIG_YAML_KEYS_H

#include "config/config.h"
#include "config/diag.h"
#include "config/yaml_tree.h"

/* Fills cfg (fresh from moat_cfg_new(), so every default is set) from a document's root (NULL:
 * an empty document), recording every error found in d; cfg is usable only if none was. The
 * scalars of root have their ${VAR}s replaced in place. Sets listeners and the default pool
 * when the file leaves them to their defaults. */
void moat_cfg_yaml_apply(struct moat_yaml_node *root, struct moat_cfg *cfg,
                         struct moat_cfg_diag *d);

#endif
