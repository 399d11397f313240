#!/bin/sh
# measure.sh DROVER_BIN MODE WORKERS SECONDS: runs `drover run` with hostile workers, prints the
# master's RSS (VmRSS) and open fds every second, then SIGKILLs it (workers die with it).
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$1; MODE=$2; N=$3; SECS=$4
export DROVER_SOCKET=${TMPDIR:-/tmp}/sock-$$
$BIN run -n "$N" --name atk --socket "$DROVER_SOCKET" -- python3 "$HERE/hostile.py" $MODE >/dev/null 2>&1 &
PID=$!
sleep 2
echo "start: rss $(awk '/VmRSS/{print $2}' /proc/$PID/status) kB fds $(ls /proc/$PID/fd | wc -l)"
peak=0
i=0
while [ $i -lt "$SECS" ]; do
  sleep 1; i=$((i+1))
  rss=$(awk '/VmRSS/{print $2}' /proc/$PID/status 2>/dev/null)
  [ -z "$rss" ] && { echo "master gone"; break; }
  [ "$rss" -gt "$peak" ] && peak=$rss
  echo "${i}s: rss ${rss} kB fds $(ls /proc/$PID/fd | wc -l)"
done
echo "peak rss ${peak} kB"
kill -9 $PID 2>/dev/null
wait $PID 2>/dev/null
rm -f "$DROVER_SOCKET"
