#!/bin/sh
# broadcast.sh DROVER_BIN: 3 workers, worker 1 never reads; 10 broadcasts of 100 KB with
# `drover send atk JSON`, each timed (and cut at 20 s); then the master's RSS and fds.
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$1
export DROVER_SOCKET=${TMPDIR:-/tmp}/sock-b$$
$BIN run -n 3 --name atk --socket "$DROVER_SOCKET" -- python3 "$HERE/hostile.py" deaf-first >${TMPDIR:-/tmp}/bstderr-$$ 2>&1 &
PID=$!
sleep 2
echo "start: rss $(awk '/VmRSS/{print $2}' /proc/$PID/status) kB fds $(ls /proc/$PID/fd | wc -l)"
PAD=$(head -c 100000 /dev/zero | tr '\0' x)
for i in 1 2 3 4 5 6 7 8 9 10; do
  s=$(date +%s.%N)
  timeout 20 $BIN send atk "{\"n\":$i,\"pad\":\"$PAD\"}" >${TMPDIR:-/tmp}/bout-$$ 2>&1; rc=$?; out=$(cut -c1-200 ${TMPDIR:-/tmp}/bout-$$)
  e=$(date +%s.%N)
  echo "broadcast $i: rc $rc in $(echo "$e - $s" | bc | cut -c1-5) s: $out"
done
echo "end: rss $(awk '/VmRSS/{print $2}' /proc/$PID/status) kB fds $(ls /proc/$PID/fd | wc -l)"
grep -o "worker [23] read [0-9]* frames" ${TMPDIR:-/tmp}/bstderr-$$ | tail -2
rm -f ${TMPDIR:-/tmp}/bstderr-$$ ${TMPDIR:-/tmp}/bout-$$
kill -9 $PID; wait $PID 2>/dev/null; rm -f "$DROVER_SOCKET"
