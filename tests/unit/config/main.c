/* tests/unit/config/main.c: runs every group of config/ unit tests; fails if any test failed. */
#include "test_config.h"

int main(void)
{
    int failed = 0;
    failed += run_addr_tests();
    failed += run_cli_tests();
    failed += run_limits_tests();
    failed += run_resolver_tests();
    failed += run_yaml_tests();
    return failed != 0;
}
