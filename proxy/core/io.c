/*
 * sluice — socket reads and writes in the transport convention. See io.h.
 */
#include <errno.h>
#include <sys/socket.h>
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

/* A write's result in the convention (EINTR is the caller's loop). */
static ssize_t write_result(ssize_t n) {
  if (n >= 0) return n;
  if (errno == EAGAIN || errno == EWOULDBLOCK) return SL_IO_AGAIN;
  return SL_IO_ERROR;
}

ssize_t sl_io_writev(int fd, const struct iovec *iov, int iovcnt) {
  ssize_t n;
  do n = writev(fd, iov, iovcnt);
  while (n < 0 && errno == EINTR);
  return write_result(n);
}

ssize_t sl_io_sendv(int fd, const struct iovec *iov, int iovcnt) {
  struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
  ssize_t n;
  do n = sendmsg(fd, &mh, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return write_result(n);
}
