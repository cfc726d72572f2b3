#!/usr/bin/env bash
# Stop the dev SLURM cluster started by start.sh: both slurmd, slurmctld,
# slurmdbd, MariaDB and munged. Idempotent. Keeps /etc/slurm (start.sh rewrites
# it anyway) and, unless --purge is given, all state: job records, accounting DB.
#
# Usage: hpc/devcluster/stop.sh [--purge]
#   --purge   also delete /var/lib/magpie-devcluster (jobs, accounting DB, logs),
#             so the next start.sh starts from scratch (job ids restart at 1).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

dc_require_root

PURGE=0
for arg in "$@"; do
    case $arg in
        --purge) PURGE=1 ;;
        -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
        *) dc_log "unknown argument: $arg"; exit 2 ;;
    esac
done

# slurmctld never notices that a job's processes died with a stopped node on the
# same boot (it only purges missing jobs after a reboot), so a job running at
# stop time would show as RUNNING forever after the next start. Cancel the whole
# queue while the controller still answers; accounting keeps the records.
cancel_all_jobs() {
    timeout 5 scontrol ping 2>/dev/null | grep -q UP || return 0
    local ids
    # %A = the array's own id, so one scancel covers all of an array's tasks.
    ids=$(timeout 10 squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ') || return 0
    [[ -n ${ids// /} ]] || return 0
    dc_log "cancelling jobs: $ids"
    # shellcheck disable=SC2086
    timeout 10 scancel $ids 2>/dev/null || true
    # Give steps KillWait (5 s) plus slack to exit so nothing is left behind.
    local i
    for ((i = 0; i < 30; i++)); do
        [[ -z $(timeout 5 squeue -h -t R,CG,S -o %i 2>/dev/null) ]] && break
        sleep 0.5
    done
}

cancel_all_jobs
# Reverse of the start order: compute nodes, controller, accounting, DB, auth.
# (Both slurmd in parallel: each takes a second or two to exit.)
for node in "${DC_NODES[@]}"; do
    dc_stop_slurmd "$node" &
done
wait
# Steps that survived the scancel (e.g. slurmctld was already down) would keep
# running user commands with no cluster around them.
dc_kill_steps
dc_stop_pidfile "$DC_RUN/slurmctld.pid" slurmctld slurmctld 30
dc_stop_pidfile "$DC_RUN/slurmdbd.pid" slurmdbd slurmdbd 30
dc_stop_pidfile "$DC_MYSQL_PID" mariadbd mariadbd 60
dc_stop_pidfile "$DC_MUNGE_PID" munged munged 10

if ((PURGE)); then
    dc_log "purging $DC_STATE"
    rm -rf "$DC_STATE"
fi
echo "devcluster: stopped"
