#!/usr/bin/env bash
# CPU seconds (user+system) used so far by each pid file given: collector/scaletest/cpu.sh RUN/gw1.pid RUN/gw2.pid
tck=$(getconf CLK_TCK)
for f in "$@"; do
  pid=$(cat "$f"); read -r -a st < <(sed 's/^.*) //' "/proc/$pid/stat")
  # after "(comm) ": field 3 is state, so utime (14) and stime (15) are at indexes 11 and 12
  echo "$(basename "$f" .pid) $(awk -v u="${st[11]}" -v s="${st[12]}" -v t="$tck" 'BEGIN{printf "%.2f", (u+s)/t}')"
done
