#!/usr/bin/env bash
# Run a command while CPU_HOGS busy loops (default 2: both cores) saturate the CPU.
# The loops are started here and stopped by their own pids when the command ends, however it ends.
# Usage: scripts/cpu_hogs.sh make test
set -u
count=${CPU_HOGS:-2}
pids=()
stop_hogs() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
}
trap stop_hogs EXIT
trap 'exit 130' INT TERM
for _ in $(seq "$count"); do
    (while :; do :; done) &
    pids+=("$!")
done
echo "cpu_hogs: $count busy loops running (pids ${pids[*]})" >&2
"$@"
status=$?
echo "cpu_hogs: stopping pids ${pids[*]}" >&2
exit "$status"
