/*
 * sluice — nghttp2's allocator: per-thread size-class freelists.
 *
 * nghttp2 allocates per stream and per frame. With hundreds of streams in
 * flight on a worker, glibc's per-thread cache (7 chunks per size) spills
 * and every allocation takes malloc's slow path. A session lives and dies
 * on one worker thread, so its blocks can be recycled thread-locally.
 */
#ifndef SLUICE_PROXY_H2MEM_H
#define SLUICE_PROXY_H2MEM_H

#include <ev.h>
#include <nghttp2/nghttp2.h>

/* Free blocks each thread keeps per size class; beyond, free() gives
 * them back to malloc. */
#define SL_H2MEM_CACHE_PER_CLASS 2048

/* The allocator to pass to nghttp2_session_server_new3(). */
nghttp2_mem *sl_h2mem(void);
/* How many free blocks of the size class serving |size| the calling
 * thread caches (0 for sizes malloc serves directly). */
unsigned sl_h2mem_cached(size_t size);
/* Deletes |session| (allocated with sl_h2mem()) and gives its blocks back
 * to malloc rather than to the caches, then has the heap trimmed within
 * SL_H2MEM_TRIM_MS on |loop| (malloc_trim: freed pages in the middle of
 * the heap stay resident until then), at most once per SL_H2MEM_TRIM_MS
 * per thread: an idle session put to sleep should cost no resident page. */
#define SL_H2MEM_TRIM_MS 1000
void sl_h2mem_session_release(nghttp2_session *session, struct ev_loop *loop);
/* The allocator for one session, which keeps in |*big| the address of
 * the session's first big block (over 8 KiB: nghttp2's outbound frame
 * buffer, allocated at session creation and kept for its life), or NULL
 * once it is freed. nghttp2 copies the struct into the session. */
nghttp2_mem sl_h2mem_for(void **big);
/* Gives the pages of the big block |p| back to the kernel
 * (MADV_DONTNEED): its bytes read as zeros afterwards. For a frame
 * buffer holding no frame (the last nghttp2_session_mem_send returned 0). */
void sl_h2mem_release_pages(void *p);
/* Frees the calling thread's cached blocks (worker exit, tests). */
void sl_h2mem_drain(void);

#endif
