/* tests/unit/http/test_http.h: the groups of the http/ unit test executable, one per file. */
#ifndef MOAT_TEST_HTTP_H
#define MOAT_TEST_HTTP_H

int run_parser_tests(void);
int run_rewrite_tests(void);
int run_respond_tests(void);

#endif
