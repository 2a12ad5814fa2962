/* tests/unit/http/main.c: runs every group of http/ unit tests; fails if any test failed. */
#include "test_http.h"

int main(void)
{
    int failed = 0;
    failed += run_parser_tests();
    failed += run_rewrite_tests();
    failed += run_respond_tests();
    return failed != 0;
}
