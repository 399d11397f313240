#!/usr/bin/env python3
"""Hostile drover workers, speaking docs/PROTOCOL.md directly. Usage: hostile.py MODE
heartbeat | message : flood that frame type as fast as the channel takes it, for ever
fd-pair            : every 2 s, a message carrying an fd of /dev/null, then a plain message
deaf               : says STARTED, then never reads its channel again
"""
import json, os, socket, sys, time

fd = int(os.environ["DROVER_IPC_FD"])
sock = socket.socket(fileno=fd)
sock.setblocking(True)

def send(obj):
    sock.sendall((json.dumps(obj, separators=(",", ":")) + "\n").encode())

send({"type": "hello", "version": 1, "pid": os.getpid()})
buf = b""
while b"\n" not in buf:
    chunk = sock.recv(65536)
    if not chunk:
        sys.exit(1)
    buf += chunk
send({"type": "status", "status": 3})
mode = sys.argv[1]
if mode in ("heartbeat", "message"):
    frame = {"type": "heartbeat", "rss_bytes": 1} if mode == "heartbeat" else {"type": "message", "data": {"pad": "x" * int(sys.argv[2] if len(sys.argv) > 2 else 4096)}}
    line = (json.dumps(frame, separators=(",", ":")) + "\n").encode()
    batch = line * max(1, 65536 // len(line))
    while True:
        sock.sendall(batch)
elif mode == "fd-pair":
    n = 0
    devnull = os.open("/dev/null", os.O_RDONLY)
    while True:
        socket.send_fds(sock, [(json.dumps({"type": "message", "data": {"with_fd": n}}) + "\n").encode()], [devnull])
        send({"type": "message", "data": {"after_fd": n, "t": time.time()}})
        n += 1
        time.sleep(2)
elif mode == "deaf" or (mode == "deaf-first" and os.environ.get("DROVER_WORKER_ID") == "1"):
    while True:
        time.sleep(3600)
else:
    # A worker that reads and counts what it is sent, and says so on stderr every 10 messages.
    seen = 0
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            sys.exit(0)
        seen += chunk.count(b"\n")
        sys.stderr.write("worker %s read %d frames\n" % (os.environ.get("DROVER_WORKER_ID"), seen))
