/*
 * sluice — the one result convention of transport calls (socket and TLS
 * reads and writes, client side and upstream side alike), after nghttp2's
 * split of error codes into the non-fatal and the fatal
 * (nghttp2_is_fatal):
 *
 *   >= 0            bytes moved (a read of 0 bytes only if 0 were asked)
 *   SL_IO_AGAIN     would block: wait for readiness, then call again
 *   SL_IO_EOF       the peer ended its side cleanly (reads only)
 *   <= SL_IO_FATAL  the transport is unusable: close it (sl_io_is_fatal)
 *
 * EINTR is retried inside; no caller sees it.
 */
#ifndef SLUICE_IO_H
#define SLUICE_IO_H

#include <stdbool.h>
#include <sys/types.h>
#include <sys/uio.h>

enum {
  SL_IO_AGAIN = -1,
  SL_IO_EOF = -2,
  SL_IO_FATAL = -100, /* every code at or below is fatal */
  SL_IO_ERROR = -101, /* the system or TLS library failed (see errno / ERR_*) */
};

static inline bool sl_io_is_fatal(ssize_t rv) { return rv <= SL_IO_FATAL; }

/* read(2) and writev(2) on a non-blocking socket, in that convention. */
ssize_t sl_io_read(int fd, void *buf, size_t len);
ssize_t sl_io_writev(int fd, const struct iovec *iov, int iovcnt);
/* sl_io_writev as sendmsg(2) with MSG_NOSIGNAL: a socket whose peer left
 * gives SL_IO_ERROR (EPIPE) even where the process does not ignore
 * SIGPIPE (the admin listener also runs inside unit tests). */
ssize_t sl_io_sendv(int fd, const struct iovec *iov, int iovcnt);

#endif
