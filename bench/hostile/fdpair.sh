#!/bin/sh
# fdpair.sh DROVER_BIN: one worker sends, every 2 s, a message carrying an fd then a plain message
# (with its send time); prints how long after its sending the master logged each plain message.
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$1
export DROVER_SOCKET=${TMPDIR:-/tmp}/sock-f$$
timeout 13 $BIN run -n 1 --name atk --socket "$DROVER_SOCKET" -- python3 "$HERE/hostile.py" fd-pair 2>&1 \
  | python3 -u -c '
import sys, time, json, re
for line in sys.stdin:
    m = re.search(r"message: (\{.*\})", line)
    if m:
        d = json.loads(m.group(1))
        if "after_fd" in d:
            print("after_fd %d logged %.3f s after it was sent" % (d["after_fd"], time.time() - d["t"]))
'
