/*
 * sluice — recovering the owner of an embedded member (libev watchers,
 * parsers), after h2o's H2O_STRUCT_FROM_MEMBER.
 */
#ifndef SLUICE_CORE_CONTAINER_H
#define SLUICE_CORE_CONTAINER_H

#include <stddef.h>

#define SL_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
