#!/usr/bin/env bash
# Stop the loopback cluster that slurm/ci/up.sh started: SLURM daemons always; munged and MariaDB only if up.sh
# started them (it leaves a `*.ours` marker). Processes are stopped by their pid files, never by name.
# Idempotent; run as root. Keeps $SLURM_CI_DIR (logs, job state) unless SLURM_CI_CLEAN=1.
set -uo pipefail
D=${SLURM_CI_DIR:-/tmp/cosmos-nb-slurm}
[ "$(id -u)" = 0 ] || { echo "slurm/ci/down.sh: must run as root" >&2; exit 77; }
pids=()
stop() { [ -f "$1" ] || return 0; local p; p=$(cat "$1"); kill -0 "$p" 2>/dev/null && kill "$p" && pids+=("$p"); rm -f "$1"; }
for f in $D/run/slurmd-*.pid $D/run/slurmctld.pid; do stop "$f"; done
stop $D/run/slurmdbd.pid
for m in $D/run/mariadb.ours $D/run/munged.ours; do [ -f "$m" ] && { stop "$(cat "$m")"; rm -f "$m"; }; done
for i in $(seq 100); do alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done; [ $alive = 0 ] && break; sleep 0.1; done
[ -w /etc/hosts ] && grep -q '# cosmos-nb slurm/ci$' /etc/hosts && sed -i '/# cosmos-nb slurm\/ci$/d' /etc/hosts
[ "${SLURM_CI_CLEAN:-0}" = 1 ] && rm -rf "$D"
echo "slurm/ci/down.sh: stopped ${#pids[@]} daemon(s)" >&2
