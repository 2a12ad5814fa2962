/* http/fields.h: helpers shared by the files of http/ (not part of its contract): field names,
 * comma-separated list values, request targets and authorities. */
#ifndef MOAT_HTTP_FIELDS_H
#define MOAT_HTTP_FIELDS_H
#include <stddef.h>

#include "http/http.h"

/* 1 if the @len bytes at @s equal the NUL-terminated @name, ignoring ASCII case (field names and
 * tokens are case-insensitive, RFC 9110 §5.1 and §5.6.2). */
int moat_http_token_is(const char *s, size_t len, const char *name);

/* 1 if field @f is named @name (ignoring case). */
int moat_http_field_is(const struct moat_http_field *f, const char *name);

/* Steps through a comma-separated list value (RFC 9110 §5.6.1): set *pos = 0 before the first
 * call. Each call returns 1 with the next element, OWS trimmed, in *elem and *elem_len, or 0 at
 * the end. Empty elements are skipped, as recipients must (§5.6.1.2). Quoted strings are not
 * understood: use it only for token lists (Connection, Transfer-Encoding, Upgrade). */
int moat_http_list_next(const char *value, size_t len, size_t *pos, const char **elem,
                        size_t *elem_len);

/* 1 if a field named @name_len bytes at @name appears as a token of any Connection field of @h. */
int moat_http_is_named_by_connection(const struct moat_http_head *h, const char *name,
                                     size_t name_len);

/* Splits an absolute-form request target "http://authority/path?query" (scheme http or https,
 * any case; RFC 9112 §3.2.2). Returns 1 with the authority and what follows it (the path and
 * query, possibly empty) pointing into @target, or 0 if @target is not of that form. */
int moat_http_target_split(const char *target, size_t len, const char **authority,
                           size_t *authority_len, const char **rest, size_t *rest_len);

/* 1 if @s is a plausible uri-host [ ":" port ] (RFC 9110 §7.2): only characters of reg-name,
 * IP-literal and port; no userinfo, path, query, spaces or controls. Empty is valid (a Host
 * field may be empty, RFC 9112 §3.2); callers that need an authority check the length. */
int moat_http_authority_is_valid(const char *s, size_t len);

#endif
