/*
 * sluice — TRANSITIONAL: the old umbrella header of proxy/, now only a
 * list of the per-module headers. Files of proxy/ owned by the frontend
 * and upstream work (conn.c, stream.c, h1.c, h2.c, tls.c, upstream.c)
 * still include it; the lead replaces each include by the headers that
 * file uses at merge, then deletes this file.
 */
#ifndef SLUICE_PROXY_H
#define SLUICE_PROXY_H

#include "sluice/admission.h"
#include "sluice/arena.h"
#include "sluice/config-t.h"
#include "sluice/identify-t.h"
#include "sluice/metrics.h"
#include "core/clock.h"
#include "core/conn.h"
#include "core/container.h"
#include "core/gen.h"
#include "core/listener.h"
#include "core/stream.h"
#include "core/worker.h"
#include "front/front.h"
#include "front/tls.h"
#include "upstream/upstream.h"
#include "http.h"
#include "pipe.h"
#include "ws.h"

#endif
