/*
 * sluice — small HTTP facts shared by the frontends and the admin listener.
 */
#ifndef SLUICE_PROXY_HTTP_H
#define SLUICE_PROXY_HTTP_H

/* RFC 9110 §15 reason phrase for |status| (a class name for unlisted
 * codes). */
const char *sl_http_reason(int status);

#endif
