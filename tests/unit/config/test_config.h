/* tests/unit/config/test_config.h: the groups of the config/ unit test executable, one per file. */
#ifndef MOAT_TEST_CONFIG_H
#define MOAT_TEST_CONFIG_H

int run_addr_tests(void);
int run_cli_tests(void);
int run_limits_tests(void);
int run_resolver_tests(void);
int run_yaml_tests(void);

#endif
