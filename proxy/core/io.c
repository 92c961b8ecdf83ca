/*
 * sluice — socket reads and writes in the transport convention. See io.h.
 */
#include <errno.h>
#include <unistd.h>

#include "core/io.h"

ssize_t sl_io_read(int fd, void *buf, size_t len) {
  for (;;) {
    ssize_t n = read(fd, buf, len);
    if (n > 0 || (n == 0 && len == 0)) return n;
    if (n == 0) return SL_IO_EOF;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return SL_IO_AGAIN;
    return SL_IO_ERROR;
  }
}

ssize_t sl_io_writev(int fd, const struct iovec *iov, int iovcnt) {
  for (;;) {
    ssize_t n = writev(fd, iov, iovcnt);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return SL_IO_AGAIN;
    return SL_IO_ERROR;
  }
}
