#!/usr/bin/env python3
"""A minimal drover worker in Python 3, written from docs/PROTOCOL.md alone (protocol version 1).

Standard library only. It does the hello/welcome handshake, reports STARTED, echoes every user
message back as {"echo": <data>, "worker": <its welcome metadata>}, answers `stop` with STOPPED and
`quit` with SHUTTED_DOWN, then exits 0. If the master goes away (EOF) it exits 0 too.

Requests (PROTOCOL.md §5.5): it declares one handler, `add` (the sum of a list of numbers), and
answers the requests the master routes to it. A message {"ask": {"to", "name", "args"}} makes it
call another handler (of the master or of another worker) and report {"answer": result} or
{"answer_error": error}.

Warm-up (PROTOCOL.md §5.11): when the welcome carries `warmup`, its app (a tiny HTTP handler that
answers "ok", standing for a real server's) first answers the warm-up GETs on a private loopback
listener, then it reports STARTED; it sends what it did as {"warmup": {"seen": [x-drover-warmup
values in order], "done": n, "error": null or why it ended early}} just before STARTED.

Run it under a drover master, e.g. MasterConfig::program("python3").arg("examples/python/worker.py").
"""

import http.client
import http.server
import json
import os
import socket
import sys
import threading
import time

PROTOCOL_VERSION = 1

# Statuses (PROTOCOL.md, "Statuses").
STARTED = 3
STOPPED = 5
SHUTTED_DOWN = 7
FAILED = 8
NAMES = {STARTED: "STARTED", STOPPED: "STOPPED", SHUTTED_DOWN: "SHUTTED_DOWN", FAILED: "FAILED"}


class ProtocolError(Exception):
    pass


class Channel:
    """One Unix stream socket; frames are JSON objects, one per `\\n`-terminated UTF-8 line."""

    def __init__(self, fd, max_frame_bytes):
        # The fd is ours alone: our own children must not inherit it (PROTOCOL.md, "Transport").
        os.set_inheritable(fd, False)
        self.sock = socket.socket(fileno=fd)
        self.max = max_frame_bytes
        self.buf = bytearray()

    def send(self, frame):
        line = json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(line) > self.max:
            raise ProtocolError("frame of %d bytes exceeds the limit of %d" % (len(line), self.max))
        self.sock.sendall(line + b"\n")

    def recv(self):
        """The next frame as a dict, or None at EOF. Never buffers more than max+1 bytes of a line."""
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line = bytes(self.buf[:nl])
                del self.buf[: nl + 1]
                if len(line) > self.max:
                    raise ProtocolError("frame exceeds the limit of %d bytes" % self.max)
                try:
                    frame = json.loads(line.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as e:
                    raise ProtocolError("malformed frame: %s" % e)
                if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                    raise ProtocolError("malformed frame: not an object with a type")
                return frame
            if len(self.buf) > self.max:
                raise ProtocolError("frame exceeds the limit of %d bytes" % self.max)
            chunk = self.sock.recv(65536)
            if not chunk:
                return None  # EOF; a partial last line without `\n` is dropped
            self.buf += chunk


def warm_up(warmup):
    """Sends `requests` GETs of `path` to the app on a private loopback listener, one after the
    other, each marked x-drover-warmup: n, within timeout_ms in all; an error or the timeout ends it
    early (the worker goes on). Returns what the app saw, how many were answered and the error."""
    seen = []

    class App(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("x-drover-warmup"))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    deadline = time.monotonic() + warmup["timeout_ms"] / 1000.0
    done, error = 0, None
    try:
        for n in range(1, warmup["requests"] + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("%d of %d requests within %d ms" % (done, warmup["requests"], warmup["timeout_ms"]))
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=left)
            conn.request("GET", warmup["path"], headers={"x-drover-warmup": str(n), "Connection": "close"})
            conn.getresponse().read(1024 * 1024)  # at most 1 MiB, as drover's libraries
            conn.close()
            done += 1
    except (OSError, http.client.HTTPException) as e:
        error = "warm-up ended early: %s" % e
        sys.stderr.write("worker.py: %s; starting anyway\n" % error)
    finally:
        server.shutdown()
        server.server_close()
    return {"seen": seen, "done": done, "error": error}


def main():
    try:
        fd = int(os.environ["DROVER_IPC_FD"])
    except (KeyError, ValueError):
        sys.exit("worker.py: not running under a drover master (DROVER_IPC_FD is not set)")
    master_version = os.environ.get("DROVER_PROTOCOL_VERSION", str(PROTOCOL_VERSION))
    if master_version != str(PROTOCOL_VERSION):
        sys.exit("worker.py: master speaks protocol %s, this worker speaks %d" % (master_version, PROTOCOL_VERSION))
    ch = Channel(fd, int(os.environ.get("DROVER_MAX_FRAME_BYTES", 1024 * 1024)))

    ch.send({"type": "hello", "version": PROTOCOL_VERSION, "pid": os.getpid()})
    welcome = ch.recv()
    if welcome is None:
        sys.exit("worker.py: the master closed the channel before welcome")
    if welcome["type"] == "error":
        sys.exit("worker.py: master refused us: %s: %s" % (welcome.get("code"), welcome.get("message")))
    if welcome["type"] != "welcome" or welcome.get("version") != PROTOCOL_VERSION:
        sys.exit("worker.py: expected welcome for version %d, got %r" % (PROTOCOL_VERSION, welcome))
    me = welcome["worker"]
    ch.max = me.get("max_frame_bytes", ch.max)

    # A real worker would bind its sockets and warm its caches here.
    if me.get("warmup"):
        ch.send({"type": "message", "data": {"warmup": warm_up(me["warmup"])}})
    ch.send({"type": "handlers", "names": ["add"]})
    ch.send({"type": "status", "status": STARTED, "name": NAMES[STARTED]})

    next_request = 0
    while True:
        frame = ch.recv()
        if frame is None:
            return 0  # the master is gone
        kind = frame["type"]
        if kind == "message" and isinstance(frame.get("data"), dict) and "ask" in frame["data"]:
            ask = frame["data"]["ask"]
            next_request += 1
            ch.send({"type": "request", "id": next_request, "to": ask.get("to", "master"),
                     "name": ask.get("name", ""), "args": ask.get("args"), "timeout_ms": 10000})
        elif kind == "message":
            ch.send({"type": "message", "data": {"echo": frame.get("data"), "worker": me}})
        elif kind == "request":
            if frame.get("name") == "add":
                try:
                    answer = {"result": sum(frame.get("args") or [])}
                except TypeError as e:
                    answer = {"error": {"code": "handler_failed", "message": "add: %s" % e}}
            else:
                answer = {"error": {"code": "no_such_handler", "message": "no handler %r" % frame.get("name")}}
            ch.send(dict({"type": "response", "id": frame["id"]}, **answer))
        elif kind == "response":
            if "error" in frame:
                ch.send({"type": "message", "data": {"answer_error": frame["error"]}})
            else:
                ch.send({"type": "message", "data": {"answer": frame.get("result")}})
        elif kind == "stop":
            # Stop taking new work, finish what is in flight (nothing here), then:
            ch.send({"type": "status", "status": STOPPED, "name": NAMES[STOPPED]})
        elif kind == "quit":
            ch.send({"type": "status", "status": SHUTTED_DOWN, "name": NAMES[SHUTTED_DOWN]})
            ch.sock.close()
            return 0
        elif kind == "error":
            sys.stderr.write("worker.py: master error %s: %s\n" % (frame.get("code"), frame.get("message")))
            return 1
        # Any other type is from a newer master: ignore it.


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ProtocolError as e:
        sys.exit("worker.py: protocol error: %s" % e)
