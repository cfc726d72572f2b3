# Shared paths and helpers for the dev SLURM cluster scripts (sourced, not run).
#
# Everything lives at fixed absolute paths on purpose: the SLURM client tools
# (sbatch, squeue, sacct, ...) must work in any new shell with no environment
# variables, so the config has to sit at the compiled-in default
# /etc/slurm/slurm.conf, and the daemons chdir when they daemonise, so any
# relative path would break.

DC_NAME=devcluster                       # SLURM ClusterName
DC_STATE=/var/lib/magpie-devcluster      # all mutable state (wiped by stop.sh --purge)
DC_RUN=$DC_STATE/run                     # pid files of the slurm daemons
DC_LOG=$DC_STATE/log                     # every daemon log
DC_MYSQL_DATA=$DC_STATE/mysql
# The MariaDB socket must be in a folder the mysql user owns (it cannot bind one
# in a root-owned temp dir); /run/mysqld is that folder on Debian and is also the
# client library's default, so slurmdbd finds it with StorageHost=localhost.
DC_MYSQL_RUN=/run/mysqld
DC_MYSQL_SOCK=$DC_MYSQL_RUN/mysqld.sock
DC_MYSQL_PID=$DC_MYSQL_RUN/magpie-devcluster.pid
# munged's defaults, so the munge clients inside slurm find it without config.
DC_MUNGE_PID=/run/munge/munged.pid

DC_SLURM_CONF=/etc/slurm/slurm.conf
DC_NODES=(node1 node2)

export SLURM_CONF=$DC_SLURM_CONF
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

dc_log() { echo "devcluster: $*" >&2; }

dc_require_root() {
    if [[ $(id -u) -ne 0 ]]; then
        dc_log "must run as root (it starts system daemons and writes /etc/slurm)"
        exit 1
    fi
}

# Pid read from FILE if that process is alive and its command line mentions
# PATTERN (guards against a stale pid file whose pid was reused).
dc_pid() {
    local file=$1 pattern=$2 pid
    [[ -r $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$pattern" || return 1
    echo "$pid"
}

dc_slurmd_pidfile() { echo "$DC_RUN/slurmd-$1.pid"; }

dc_slurmd_pid() { dc_pid "$(dc_slurmd_pidfile "$1")" "slurmd.*-N $1"; }

# Send SIGTERM to the process in FILE, wait up to TIMEOUT seconds, then SIGKILL.
dc_stop_pidfile() {
    local file=$1 pattern=$2 what=$3 timeout=${4:-20} pid i
    if ! pid=$(dc_pid "$file" "$pattern"); then
        rm -f "$file"
        return 0
    fi
    dc_log "stopping $what (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 5; i++)); do
        [[ -d /proc/$pid ]] || { rm -f "$file"; return 0; }
        sleep 0.2
    done
    dc_log "$what did not exit after ${timeout}s, killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
    rm -f "$file"
}

dc_stop_slurmd() {
    dc_stop_pidfile "$(dc_slurmd_pidfile "$1")" "slurmd.*-N $1" "slurmd $1" 20
}

dc_start_slurmd() {
    local node=$1
    if dc_slurmd_pid "$node" >/dev/null; then
        return 0
    fi
    mkdir -p "$DC_STATE/spool/$node"
    dc_log "starting slurmd $node"
    /usr/sbin/slurmd -f "$DC_SLURM_CONF" -N "$node"
}

dc_descendants() {
    local child
    for child in $(pgrep -P "$1" || true); do
        dc_descendants "$child"
        echo "$child"
    done
}

# SIGKILL the job steps (slurmstepd and everything under it) of NODE, or of all
# dev-cluster nodes when NODE is empty. slurmstepd outlives its slurmd, so this
# is what turns "slurmd stopped" into "node lost its jobs". A slurmstepd keeps
# its node's log (SlurmdLogFile=.../slurmd-%n.log) open; that tells which node
# it belongs to (its environ is overwritten by its process title).
dc_kill_steps() {
    local want=${1:-} pid exe log victims=()
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
        [[ ${exe##*/} == slurmstepd* ]] || continue   # Debian: slurmstepd-wlm
        log=$(find "/proc/$pid/fd" -maxdepth 1 -lname "$DC_LOG/slurmd-${want:-*}.log" -print -quit 2>/dev/null)
        [[ -n $log ]] || continue
        victims+=($(dc_descendants "$pid") "$pid")
    done
    ((${#victims[@]})) || return 0
    dc_log "killing job step processes${want:+ of $want}: ${victims[*]}"
    # Freeze first so a job script cannot run its next line between the kills.
    kill -STOP "${victims[@]}" 2>/dev/null || true
    kill -KILL "${victims[@]}" 2>/dev/null || true
}
