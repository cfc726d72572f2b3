#!/usr/bin/env bash
# Stop or start the slurmd of ONE dev-cluster node, to simulate a node failure
# and its recovery. slurmctld marks a stopped node DOWN ("Not responding") about
# 35 s later (SlurmdTimeout=20 plus ping rounds) and requeues its jobs; with
# ReturnToService=2 it returns to service by itself when its slurmd registers.
#
# Usage: hpc/devcluster/node.sh stop|kill|start|status node1|node2
#   stop    stop only slurmd; the node's running job processes keep running
#           (slurmstepd outlives slurmd), as with a network partition
#   kill    stop slurmd and SIGKILL the node's job processes, as a power loss
#   start   start the node's slurmd again
#   status  slurmd pid and the node's state in sinfo
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

dc_require_root

usage() { sed -n '2,12p' "$0" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
action=$1 node=$2
[[ " ${DC_NODES[*]} " == *" $node "* ]] || { dc_log "unknown node: $node"; usage; }

case $action in
    stop)
        dc_stop_slurmd "$node"
        ;;
    kill)
        dc_stop_slurmd "$node"
        dc_kill_steps "$node"
        ;;
    start)
        dc_start_slurmd "$node"
        ;;
    status)
        if pid=$(dc_slurmd_pid "$node"); then
            echo "slurmd $node: running (pid $pid)"
        else
            echo "slurmd $node: stopped"
        fi
        timeout 10 sinfo -h -N -n "$node" -o '%N %T %E' | sort -u
        ;;
    *) usage ;;
esac
