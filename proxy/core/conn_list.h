/*
 * sluice — the intrusive doubly linked lists a worker keeps of its client
 * connections (lingering, idle, drain spread): head and tail live in the
 * worker, the link fields in the connection. Private to core/.
 */
#ifndef SLUICE_CORE_CONN_LIST_H
#define SLUICE_CORE_CONN_LIST_H

#include "core/conn-t.h"
#include "core/worker-t.h"

/* Takes |c| off one of its worker's lists (|head| and |tail| the members
 * of the worker, |prev| and |next| the link fields of the connection). */
#define CONN_LIST_UNLINK(c, head, tail, prev, next) \
  do {                                              \
    if ((c)->prev)                                  \
      (c)->prev->next = (c)->next;                  \
    else                                            \
      (c)->w->head = (c)->next;                     \
    if ((c)->next)                                  \
      (c)->next->prev = (c)->prev;                  \
    else                                            \
      (c)->w->tail = (c)->prev;                     \
    (c)->next = (c)->prev = NULL;                   \
  } while (0)

/* Appends |c| to the tail of one of those lists. */
#define CONN_LIST_APPEND(c, head, tail, prev, next) \
  do {                                              \
    (c)->next = NULL;                               \
    (c)->prev = (c)->w->tail;                       \
    if ((c)->w->tail)                               \
      (c)->w->tail->next = (c);                     \
    else                                            \
      (c)->w->head = (c);                           \
    (c)->w->tail = (c);                             \
  } while (0)

#endif
