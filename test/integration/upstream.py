#!/usr/bin/env python3
"""Test and demo upstream for sluice: a stand-in for the identity API.

A strict HTTP/1.1 keep-alive server written on asyncio streams, so that the
tests control every byte: persistent connections, pipelining, chunked request
bodies, Expect: 100-continue, streamed responses of any size, interim and
body-less statuses, and a WebSocket echo. It is deliberately strict about what
it receives (CRLF only, no obs-fold, one framing per message): whatever sluice
forwards that a careful origin would refuse is counted in /stats "errors".

Endpoints (any method unless stated; HEAD works everywhere, without a body):

  GET  /stats                 JSON counters (not counted themselves; a connection
                              whose first request is /stats is counted in
                              stats_connections too, so polling is accounted for;
                              heads_buffered: request heads that arrived on open
                              connections and wait, unread, behind the one being
                              answered, the event pipelining tests wait for)
  POST /stats/reset           zero the counters
  POST /echo[?chunked=1]      streams the request body back; Content-Length when
                              the request had one (or after buffering), chunked
                              with ?chunked=1
  POST /sha256                {"sha256": hex, "length": n} of the request body
  GET  /bytes?n=N[&chunked=1] N bytes of pattern_bytes() (byte i is i % 251)
  GET  /stream?n=N&ms=M       N chunked JSON lines, M ms apart
  GET  /slow?ms=N             waits N ms, then answers like the default
  GET  /status/N              answers status N with a small JSON body
  GET  /close                 reads the request, closes without answering
  GET  /204, GET /304         body-less answers
  GET  /hop                   {"ok": true} with fields of the origin's own hop
                              (RFC 9110 §7.6.1): x-internal before the Connection
                              field naming it, x-other after a second one, and
                              x-public, which is end-to-end
  GET  /ws                    WebSocket echo (RFC 6455)
  anything else               {"ok": true, "path", "method", "headers", ...}

Every answer carries x-upstream-conn (connection number) and
x-upstream-request (request number on that connection). Any request may add
?close=1 to get "Connection: close" and a closed connection.

Usage: upstream.py [--host 127.0.0.1] [--port 0] [--idle-close-ms MS] [--drop-stale-ms MS]
                   [--close-reused METHOD,...] [--graceful-ms MS]
Prints "READY <port>" on stdout once listening; SIGTERM/SIGINT stop it: at
once, or with --graceful-ms as an app server's graceful shutdown does (Go's
http.Server.Shutdown): stop listening, close idle keep-alive connections,
finish the requests in flight (answered with "connection: close"), exit when
none is left or after MS.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import signal
import sys
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

PATTERN_PERIOD = 251
_BLOCK = bytes(i % PATTERN_PERIOD for i in range(PATTERN_PERIOD * 256))  # 64256 B
HEAD_LIMIT = 64 * 1024
CHUNK_LINE_LIMIT = 4096
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TOKEN_CHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789"
                        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def pattern_bytes(offset, n):
    """Bytes [offset, offset+n) of the /bytes pattern (byte i is i % 251)."""
    start = offset % PATTERN_PERIOD
    out = bytearray()
    while len(out) < n:
        take = min(n - len(out), len(_BLOCK) - start)
        out += _BLOCK[start:start + take]
        start = 0
    return bytes(out)


class BadRequest(Exception):
    def __init__(self, status, why):
        super().__init__(why)
        self.status = status
        self.why = why


class Stats:
    def __init__(self):
        self.reset()
        self.open = 0

    def reset(self):
        self.paths = {}
        self.methods = {}
        self.total = 0
        self.connections = 0
        self.errors = 0
        self.error_reasons = []
        self.ws_messages = 0
        self.stale_drops = 0
        self.reused_closes = 0
        self.stats_connections = 0
        self.inflight = 0
        self.max_inflight = 0

    def as_json(self):
        return {
            "total": self.total,
            "paths": self.paths,
            "methods": self.methods,
            "connections": self.connections,
            "open_connections": self.open,
            "inflight": self.inflight,
            "max_inflight": self.max_inflight,
            "errors": self.errors,
            "error_reasons": self.error_reasons[-20:],
            "ws_messages": self.ws_messages,
            "stale_drops": self.stale_drops,
            "reused_closes": self.reused_closes,
            "stats_connections": self.stats_connections,
            "heads_buffered": sum(c.heads_buffered() for c in OPEN_CONNS),
        }


STATS = Stats()
OPEN_CONNS = set()
STOPPING = []  # non-empty once a graceful stop began: answer with connection: close


class Request:
    def __init__(self, method, target, version, headers, reader, writer):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # [(lower-case name, value)] in order
        parts = urlsplit(target)
        self.path = parts.path
        self.query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.reader = reader
        self.writer = writer
        self.continue_sent = False
        self.body_done = False
        self.body_length = 0
        self.trailers = []
        self._framing()

    def header(self, name, default=None):
        vals = [v for n, v in self.headers if n == name]
        return ", ".join(vals) if vals else default

    def header_dict(self):
        d = {}
        for n, v in self.headers:
            d[n] = d[n] + ", " + v if n in d else v
        return d

    def _framing(self):
        cls = [v for n, v in self.headers if n == "content-length"]
        tes = [v for n, v in self.headers if n == "transfer-encoding"]
        hosts = [v for n, v in self.headers if n == "host"]
        if len(hosts) > 1 or (self.version == "HTTP/1.1" and not hosts):
            raise BadRequest(400, "missing or duplicate Host")
        self.chunked = False
        self.length = 0
        if tes:
            if cls:
                raise BadRequest(400, "both Content-Length and Transfer-Encoding")
            codings = [c.strip().lower() for c in ",".join(tes).split(",")]
            if codings != ["chunked"]:
                raise BadRequest(400, "unsupported transfer-coding %r" % (codings,))
            self.chunked = True
        elif cls:
            if len(set(cls)) != 1 or not cls[0].isdigit():
                raise BadRequest(400, "bad Content-Length %r" % (cls,))
            self.length = int(cls[0])

    def keep_alive(self):
        conn = [t.strip().lower() for t in (self.header("connection") or "").split(",")]
        if "close" in conn or self.query.get("close") == "1":
            return False
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return True

    async def send_continue(self):
        if self.continue_sent:
            return
        self.continue_sent = True
        if (self.header("expect") or "").lower() == "100-continue" and not self.body_done:
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await self.writer.drain()

    async def body_chunks(self, size=65536):
        """Yields the request body as it arrives (de-chunked)."""
        if self.body_done:
            return
        if not self.chunked and self.length == 0:
            self.body_done = True
            return
        await self.send_continue()
        r = self.reader
        if not self.chunked:
            left = self.length
            while left > 0:
                data = await r.read(min(size, left))
                if not data:
                    raise BadRequest(400, "body truncated")
                left -= len(data)
                self.body_length += len(data)
                yield data
            self.body_done = True
            return
        while True:
            line = await r.readline()
            if not line.endswith(b"\r\n") or len(line) > CHUNK_LINE_LIMIT:
                raise BadRequest(400, "bad chunk-size line %r" % line[:40])
            sz = line[:-2].split(b";", 1)[0].strip()
            if not sz or any(c not in b"0123456789abcdefABCDEF" for c in sz):
                raise BadRequest(400, "bad chunk size %r" % sz)
            n = int(sz, 16)
            if n == 0:
                break
            left = n
            while left > 0:
                data = await r.read(min(size, left))
                if not data:
                    raise BadRequest(400, "chunk truncated")
                left -= len(data)
                self.body_length += len(data)
                yield data
            if await r.readexactly(2) != b"\r\n":
                raise BadRequest(400, "chunk not followed by CRLF")
        while True:  # trailer section
            line = await r.readline()
            if line == b"\r\n":
                break
            if not line.endswith(b"\r\n"):
                raise BadRequest(400, "bad trailer line")
            name, _, value = line[:-2].decode("latin-1").partition(":")
            self.trailers.append((name.strip().lower(), value.strip()))
        self.body_done = True

    async def read_body(self):
        buf = bytearray()
        async for c in self.body_chunks():
            buf += c
        return bytes(buf)

    async def drain_body(self):
        async for _ in self.body_chunks():
            pass


async def read_head(reader, idle_timeout):
    """Reads a request head. Returns (method, target, version, headers) or
    None on a clean EOF (or idle close) before any byte."""
    size = 0
    lines = []
    first = True
    while True:
        if first and idle_timeout:
            try:
                line = await asyncio.wait_for(reader.readline(), idle_timeout)
            except asyncio.TimeoutError:
                return None
        else:
            line = await reader.readline()
        if not line:
            if first:
                return None
            raise BadRequest(400, "EOF inside the request head")
        size += len(line)
        if size > HEAD_LIMIT:
            raise BadRequest(431, "request head larger than %d bytes" % HEAD_LIMIT)
        if first and line == b"\r\n":  # RFC 9112 §2.2: ignore a leading empty line
            continue
        first = False
        if not line.endswith(b"\r\n") or b"\r" in line[:-2] or b"\n" in line[:-2]:
            raise BadRequest(400, "line not terminated by CRLF: %r" % line[:60])
        if line == b"\r\n":
            break
        lines.append(line[:-2])
    try:
        method, target, version = lines[0].decode("ascii").split(" ")
    except ValueError:
        raise BadRequest(400, "bad request line %r" % lines[0][:80])
    if version not in ("HTTP/1.1", "HTTP/1.0") or not method or not target:
        raise BadRequest(400, "bad request line %r" % lines[0][:80])
    headers = []
    for raw in lines[1:]:
        if raw[:1] in (b" ", b"\t"):
            raise BadRequest(400, "obs-fold")
        name, sep, value = raw.partition(b":")
        if not sep or not name or any(c not in TOKEN_CHARS for c in name):
            raise BadRequest(400, "bad header line %r" % raw[:60])
        if b"\0" in value:
            raise BadRequest(400, "NUL in header value")
        headers.append((name.decode("ascii").lower(), value.decode("latin-1").strip(" \t")))
    return method, target, version, headers


def status_line(status):
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Status"
    return ("HTTP/1.1 %d %s\r\n" % (status, reason)).encode("ascii")


def bodyless(req, status):
    return req.method == "HEAD" or status in (204, 304) or 100 <= status < 200


class Conn:
    counter = 0

    def __init__(self, reader, writer, args):
        Conn.counter += 1
        self.id = Conn.counter
        self.reader = reader
        self.writer = writer
        self.args = args
        self.nreq = 0
        self.busy = False  # between a request head and the end of its answer

    def heads_buffered(self):
        """Complete request heads received and not yet read (pipelined
        bodyless requests waiting behind the current one)."""
        buf = getattr(self.reader, "_buffer", b"")
        return bytes(buf).count(b"\r\n\r\n")

    def head(self, req, status, headers, keep):
        out = [status_line(status)]
        for k, v in headers:
            out.append(("%s: %s\r\n" % (k, v)).encode("latin-1"))
        out.append(("x-upstream-conn: %d\r\nx-upstream-request: %d\r\n"
                    % (self.id, self.nreq)).encode("ascii"))
        if not keep or STOPPING:
            out.append(b"connection: close\r\n")
        out.append(b"\r\n")
        return b"".join(out)

    async def send(self, req, status, body=b"", ctype="application/json", extra=(), keep=True):
        headers = list(extra)
        if status not in (204, 304) and not 100 <= status < 200:
            headers.append(("content-type", ctype))
            headers.append(("content-length", str(len(body))))
        self.writer.write(self.head(req, status, headers, keep))
        if not bodyless(req, status):
            self.writer.write(body)
        await self.writer.drain()

    async def send_json(self, req, status, obj, keep=True, extra=()):
        body = (json.dumps(obj, sort_keys=True) + "\n").encode()
        await self.send(req, status, body, keep=keep, extra=extra)

    async def send_stream(self, req, status, chunks, length=None, ctype="application/octet-stream",
                          keep=True):
        """Streams an async iterable of bytes: with Content-Length when
        |length| is known, chunked otherwise."""
        headers = [("content-type", ctype)]
        if length is not None:
            headers.append(("content-length", str(length)))
        else:
            headers.append(("transfer-encoding", "chunked"))
        w = self.writer
        w.write(self.head(req, status, headers, keep))
        head_only = req.method == "HEAD"
        async for c in chunks:
            if head_only or not c:
                continue
            if length is None:
                w.write(b"%x\r\n" % len(c))
                w.write(c)
                w.write(b"\r\n")
            else:
                w.write(c)
            await w.drain()
        if length is None and not head_only:
            w.write(b"0\r\n\r\n")
        await w.drain()

    def echo_obj(self, req, body):
        return {
            "ok": True,
            "path": req.path,
            "target": req.target,
            "method": req.method,
            "version": req.version,
            "headers": req.header_dict(),
            "header_list": [[n, v] for n, v in req.headers],
            "body_length": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "trailers": dict(req.trailers),
            "conn": self.id,
            "request_on_conn": self.nreq,
        }

    async def run(self):
        STATS.connections += 1
        STATS.open += 1
        OPEN_CONNS.add(self)
        loop = asyncio.get_running_loop()
        self.idle_since = loop.time()
        try:
            while True:
                idle = self.args.idle_close_ms / 1000.0 if self.nreq and self.args.idle_close_ms else None
                try:
                    head = await read_head(self.reader, idle)
                except BadRequest as e:
                    self.error(e.why)
                    await self.send_error_and_close(e.status, e.why)
                    return
                if head is None:
                    return
                self.busy = True
                if (self.nreq and self.args.drop_stale_ms
                        and loop.time() - self.idle_since >= self.args.drop_stale_ms / 1000.0):
                    # The race a pool must survive: the request arrives on a
                    # connection the server has just decided to close.
                    STATS.stale_drops += 1
                    return
                self.nreq += 1
                try:
                    req = Request(*head, self.reader, self.writer)
                except BadRequest as e:
                    self.error(e.why)
                    await self.send_error_and_close(e.status, e.why)
                    return
                counted = req.path not in ("/stats", "/stats/reset")
                if not counted and self.nreq == 1:
                    STATS.stats_connections += 1
                if counted:
                    STATS.total += 1
                    STATS.paths[req.path] = STATS.paths.get(req.path, 0) + 1
                    STATS.methods[req.method] = STATS.methods.get(req.method, 0) + 1
                    STATS.inflight += 1
                    STATS.max_inflight = max(STATS.max_inflight, STATS.inflight)
                if self.nreq > 1 and req.method in self.args.close_reused:
                    # An origin that fails after processing the request: it
                    # is read in full and counted, and never answered.
                    await req.drain_body()
                    STATS.reused_closes += 1
                    if counted:
                        STATS.inflight -= 1
                    return
                try:
                    keep = await self.dispatch(req)
                except BadRequest as e:
                    self.error(e.why)
                    await self.send_error_and_close(e.status, e.why)
                    return
                finally:
                    if counted:
                        STATS.inflight -= 1
                self.busy = False
                if not keep or STOPPING:
                    return
                self.idle_since = loop.time()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            STATS.open -= 1
            OPEN_CONNS.discard(self)
            try:
                self.writer.close()
            except Exception:
                pass

    def error(self, why):
        STATS.errors += 1
        STATS.error_reasons.append(why)
        print("upstream: conn %d: %s" % (self.id, why), file=sys.stderr, flush=True)

    async def send_error_and_close(self, status, why):
        body = (json.dumps({"error": why}) + "\n").encode()
        try:
            self.writer.write(status_line(status) + b"content-type: application/json\r\n"
                              b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            await self.writer.drain()
        except ConnectionError:
            pass

    async def dispatch(self, req):
        """Answers one request. Returns whether the connection stays open."""
        keep = req.keep_alive()
        p = req.path
        q = req.query
        if req.chunked or req.length:
            await req.send_continue()  # before any answer, so never after a final head
        if req.header("upgrade", "").lower() == "websocket" and p == "/ws":
            await self.websocket(req)
            return False
        if p == "/stats":
            await req.drain_body()
            await self.send_json(req, 200, STATS.as_json(), keep)
        elif p == "/stats/reset":
            await req.drain_body()
            STATS.reset()
            await self.send_json(req, 200, {"ok": True}, keep)
        elif p == "/echo":
            await self.echo(req, keep)
        elif p == "/sha256":
            h = hashlib.sha256()
            async for c in req.body_chunks():
                h.update(c)
            await self.send_json(req, 200, {"sha256": h.hexdigest(), "length": req.body_length}, keep)
        elif p == "/bytes":
            await req.drain_body()
            n = int(q.get("n", "0"))

            async def gen():
                off = 0
                while off < n:
                    take = min(len(_BLOCK), n - off)
                    yield pattern_bytes(off, take)
                    off += take
            await self.send_stream(req, 200, gen(), None if q.get("chunked") == "1" else n, keep=keep)
        elif p == "/stream":
            await req.drain_body()
            n, ms = int(q.get("n", "5")), int(q.get("ms", "100"))

            async def lines():
                for i in range(n):
                    if i:
                        await asyncio.sleep(ms / 1000.0)
                    yield (json.dumps({"i": i}) + "\n").encode()
            await self.send_stream(req, 200, lines(), None, ctype="application/x-ndjson", keep=keep)
        elif p == "/slow":
            body = await req.read_body()
            await asyncio.sleep(int(q.get("ms", "1000")) / 1000.0)
            await self.send_json(req, 200, self.echo_obj(req, body), keep)
        elif p.startswith("/status/"):
            await req.drain_body()
            status = int(p[len("/status/"):])
            await self.send_json(req, status, {"status": status, "from": "upstream"}, keep)
        elif p == "/close":
            await req.drain_body()
            return False
        elif p == "/hop":
            await req.drain_body()
            await self.send_json(req, 200, {"ok": True}, keep, extra=[
                ("x-internal", "secret"), ("connection", "x-internal"),
                ("Connection", "X-Other, keep-alive"), ("x-other", "1"),
                ("x-public", "visible")])
        elif p == "/204":
            await req.drain_body()
            await self.send(req, 204, keep=keep)
        elif p == "/304":
            await req.drain_body()
            await self.send(req, 304, extra=[("etag", '"v1"')], keep=keep)
        else:
            body = await req.read_body()
            await self.send_json(req, 200, self.echo_obj(req, body), keep)
        if not req.body_done:
            await req.drain_body()
        return keep

    async def echo(self, req, keep):
        if req.query.get("chunked") == "1":
            await self.send_stream(req, 200, req.body_chunks(), None, keep=keep)
        elif not req.chunked:
            await self.send_stream(req, 200, req.body_chunks(), req.length, keep=keep)
        else:
            body = await req.read_body()
            await self.send(req, 200, body, ctype="application/octet-stream", keep=keep)

    async def websocket(self, req):
        key = req.header("sec-websocket-key")
        conn_tokens = [t.strip().lower() for t in req.header("connection", "").split(",")]
        if not key or "upgrade" not in conn_tokens or req.method != "GET":
            raise BadRequest(400, "bad websocket handshake")
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        extra = [("upgrade", "websocket"), ("connection", "Upgrade"),
                 ("sec-websocket-accept", accept)]
        proto = req.header("sec-websocket-protocol")
        if proto:
            extra.append(("sec-websocket-protocol", proto.split(",")[0].strip()))
        w = self.writer
        w.write(status_line(101) + b"".join(("%s: %s\r\n" % kv).encode() for kv in extra)
                + ("x-upstream-conn: %d\r\n\r\n" % self.id).encode())
        await w.drain()
        r = self.reader
        while True:
            try:
                b0, b1 = await r.readexactly(2)
            except asyncio.IncompleteReadError:
                return
            fin_op = b0
            op = b0 & 0x0F
            masked = b1 & 0x80
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await r.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await r.readexactly(8), "big")
            if not masked:
                self.error("unmasked client websocket frame")
                w.write(bytes([0x88, 2]) + (1002).to_bytes(2, "big"))
                await w.drain()
                return
            mask = await r.readexactly(4)
            data = bytearray(await r.readexactly(n))
            for i in range(n):
                data[i] ^= mask[i & 3]
            if op == 0x8:  # close: answer with the same code, then close
                w.write(ws_frame(0x88, bytes(data[:2])))
                await w.drain()
                return
            if op == 0x9:
                w.write(ws_frame(0x8A, bytes(data)))
            elif op == 0xA:
                continue
            else:
                STATS.ws_messages += 1
                w.write(ws_frame(fin_op, bytes(data)))
            await w.drain()


def ws_frame(b0, payload):
    n = len(payload)
    if n < 126:
        hdr = bytes([b0, n])
    elif n < 65536:
        hdr = bytes([b0, 126]) + n.to_bytes(2, "big")
    else:
        hdr = bytes([b0, 127]) + n.to_bytes(8, "big")
    return hdr + payload


async def main_async(args):
    async def on_conn(reader, writer):
        await Conn(reader, writer, args).run()

    server = await asyncio.start_server(on_conn, args.host, args.port, limit=HEAD_LIMIT * 2,
                                        reuse_address=True, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print("READY %d" % port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
        if args.graceful_ms:
            await graceful_stop(server, args.graceful_ms / 1000.0)


async def graceful_stop(server, limit):
    """Stops listening, closes the idle connections (none with bytes
    waiting) and waits, at most |limit| s, for the busy ones to finish."""
    server.close()
    STOPPING.append(1)
    for c in list(OPEN_CONNS):
        if not c.busy and not getattr(c.reader, "_buffer", b""):
            c.writer.close()
    deadline = asyncio.get_running_loop().time() + limit
    while OPEN_CONNS and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--idle-close-ms", type=int, default=0,
                    help="close a keep-alive connection idle for this long after a response")
    ap.add_argument("--drop-stale-ms", type=int, default=0,
                    help="close, unanswered, a request arriving on a keep-alive connection "
                         "that was idle at least this long (counted in stats stale_drops)")
    ap.add_argument("--close-reused", default="",
                    help="comma-separated methods: such a request arriving on a reused "
                         "keep-alive connection is read, counted, and the connection closed "
                         "unanswered (counted in stats reused_closes)")
    ap.add_argument("--graceful-ms", type=int, default=0,
                    help="on SIGTERM, stop listening, close idle connections and finish the "
                         "requests in flight, for at most this long, then exit")
    args = ap.parse_args()
    args.close_reused = frozenset(m for m in args.close_reused.split(",") if m)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
