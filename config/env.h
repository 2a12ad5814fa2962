/* config/env.h: ${VAR} in configuration values, replaced from the environment. */
#ifndef MOAT_CONFIG_ENV_H
#define MOAT_CONFIG_ENV_H
#include <stddef.h>

/* Copies text with every ${NAME} replaced by the environment variable NAME (letters, digits and
 * '_', not starting with a digit), and every ${NAME:-default} by NAME or, when NAME is unset or
 * empty, by the literal default (up to the first '}'; not expanded again), as shells do; "$${"
 * stands for a literal "${"; any other '$' is kept. Returns 0 with *out owned by the caller
 * (free), or -1 with why set: a variable without a default that is not set (an empty one is
 * fine), an unterminated "${", a bad name, or no memory. */
int moat_cfg_env_expand(const char *text, char **out, char *why, size_t why_len);

#endif
