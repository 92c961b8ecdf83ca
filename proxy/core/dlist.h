/*
 * sluice — intrusive doubly linked lists: the element carries its links,
 * the list is two pointers kept wherever it lives (a worker's lingering
 * or idle connections, its open tunnels, an upstream pool's waiters).
 * |head| and |tail| are lvalues (the list's two ends); |prev| and |next|
 * are the names of the element's link fields.
 */
#ifndef SLUICE_CORE_DLIST_H
#define SLUICE_CORE_DLIST_H

/* Takes |x| off its list; its links are cleared. */
#define SL_DLIST_UNLINK(x, head, tail, prev, next) \
  do {                                             \
    if ((x)->prev)                                 \
      (x)->prev->next = (x)->next;                 \
    else                                           \
      (head) = (x)->next;                          \
    if ((x)->next)                                 \
      (x)->next->prev = (x)->prev;                 \
    else                                           \
      (tail) = (x)->prev;                          \
    (x)->next = (x)->prev = NULL;                  \
  } while (0)

/* Appends |x| at the tail. */
#define SL_DLIST_APPEND(x, head, tail, prev, next) \
  do {                                             \
    (x)->next = NULL;                              \
    (x)->prev = (tail);                            \
    if (tail)                                      \
      (tail)->next = (x);                          \
    else                                           \
      (head) = (x);                                \
    (tail) = (x);                                  \
  } while (0)

/* Puts |x| first. */
#define SL_DLIST_PREPEND(x, head, tail, prev, next) \
  do {                                              \
    (x)->prev = NULL;                               \
    (x)->next = (head);                             \
    if (head)                                       \
      (head)->prev = (x);                           \
    else                                            \
      (tail) = (x);                                 \
    (head) = (x);                                   \
  } while (0)

#endif
