#!/usr/bin/env bash
# A single-node SLURM cluster on loopback, for testing the workflow's SLURM profile.
#
#   tools/slurm_cluster.sh start [--gpus N] [--gpu-type NAME]   # munged + slurmctld + slurmd
#   tools/slurm_cluster.sh status                               # sinfo / squeue, exit 1 if down
#   tools/slurm_cluster.sh stop                                 # stop the daemons by PID
#   tools/slurm_cluster.sh install                              # apt-get install slurm-wlm munge
#
# Needs root and Debian's `slurm-wlm` and `munge` packages; `install` is the only command
# that installs anything (.ci/run calls it; tests/test_slurm.py never does). Everything
# the daemons use and write (state, spool, logs, PID files, munge's key, socket and seed,
# the fake GPU devices) goes under $ZERNIKE3D_SLURM_DIR (default /var/tmp/zernike3d-slurm;
# the test gives its own temporary folder), and `stop` removes the keys and devices
# again. The one file outside it is /etc/slurm/slurm.conf (and gres.conf): the `srun`
# that a batch job runs inside itself does not pass SLURM_CONF on. `stop` removes those
# again (only if this script wrote them), so that `scontrol`/`sinfo` calls made by
# snakemake's SLURM plugin at start-up fail fast instead of waiting for a dead controller.
#
# Choices that matter for snakemake-executor-plugin-slurm:
#   * no slurmdbd, so `sacct` cannot work: the profile must use `slurm-status-command: squeue`,
#     and MinJobAge (300 s here) must stay >= 3 x slurm-init-seconds-before-status-checks
#     so that finished jobs remain visible to squeue;
#   * fake GPUs (GRES gpu, type --gpu-type, default "testgpu") are character devices made
#     with mknod inside $ZERNIKE3D_SLURM_DIR/dev (major 195, as the NVIDIA driver's; mode
#     0600, root's only), /dev/null when mknod is not allowed there, so that jobs asking
#     for `--gpus=testgpu:1` get scheduled. Nothing can compute on them.
set -euo pipefail

STATE="${ZERNIKE3D_SLURM_DIR:-/var/tmp/zernike3d-slurm}"
CONF=/etc/slurm/slurm.conf
GRES_CONF=/etc/slurm/gres.conf
MARKER="# written by zernike3d tools/slurm_cluster.sh"
CTLD_PORT="${ZERNIKE3D_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${ZERNIKE3D_SLURMD_PORT:-6818}"
MUNGE_DIR="$STATE/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket"

die() { echo "slurm_cluster: $*" >&2; exit 1; }
log() { echo "slurm_cluster: $*" >&2; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (the daemons and /etc/slurm need it)"; }

have_slurm() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; }

cmd_install() {
    need_root
    if have_slurm; then log "slurm-wlm and munge already installed"; return 0; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q slurm-wlm munge >/dev/null
    have_slurm || die "installation of slurm-wlm/munge failed"
}

# Is $CONF this state folder's (and not another test cluster's, started with another
# ZERNIKE3D_SLURM_DIR)?
conf_is_ours() { grep -qxF "StateSaveLocation=$STATE/state" "$CONF"; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stop the daemon whose PID is in file $1 (TERM, wait up to 10 s, then KILL).
stop_pid() {
    local file="$1" name="$2" pid i
    [ -f "$file" ] || return 0
    pid="$(cat "$file")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) did not stop, killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$file"
}

make_fake_gpus() {
    # Prints one device path per line.
    local n="$1" i dev
    for i in $(seq 0 $((n - 1))); do
        dev="$STATE/dev/fakegpu$i"
        mkdir -p -m 0700 "$STATE/dev"
        if [ -c "$dev" ] || mknod -m 600 "$dev" c 195 $((200 + i)) 2>/dev/null; then
            echo "$dev"
        elif [ "$n" = 1 ]; then
            echo /dev/null           # mknod not permitted (e.g. some sandboxes)
        else
            die "cannot mknod $dev for fake GPU $i (only --gpus 1 can fall back to /dev/null)"
        fi
    done
}

write_config() {
    local gpus="$1" gpu_type="$2" host cpus mem_mb devs
    host="$(hostname -s)"
    cpus="$(nproc)"
    # leave 1 GiB to the system
    mem_mb=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
    if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; not touching a real SLURM installation"
    fi
    if [ -f "$CONF" ] && ! conf_is_ours && pgrep -x slurmctld >/dev/null; then
        die "another test cluster is running ($(grep -m1 '^StateSaveLocation=' "$CONF")); not starting a second one on its ports"
    fi
    mkdir -p /etc/slurm "$STATE"/{state,spool,log}
    local gres_line="" gres_types=""
    if [ "$gpus" -gt 0 ]; then
        gres_types="GresTypes=gpu"
        gres_line="Gres=gpu:$gpu_type:$gpus"
        {
            echo "$MARKER"
            devs="$(make_fake_gpus "$gpus")"
            local i=0
            for dev in $devs; do
                echo "NodeName=localhost Name=gpu Type=$gpu_type File=$dev"
                i=$((i + 1))
            done
        } > "$GRES_CONF"
    else
        rm -f "$GRES_CONF"
    fi
    cat > "$CONF" <<EOF
$MARKER
# Single-node test cluster on loopback; see tools/slurm_cluster.sh.
ClusterName=zernike3d-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CryptoType=crypto/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# finished jobs stay visible to squeue for 5 min (the executor polls with squeue)
MinJobAge=300
KillWait=5
InactiveLimit=0
Waittime=0
$gres_types
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb $gres_line State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    # a munged of our own: key, socket, seed, log and PID file under $MUNGE_DIR
    if [ -S "$MUNGE_SOCKET" ] && munge -S "$MUNGE_SOCKET" -n </dev/null 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; then
        log "munged already running"
        return 0
    fi
    mkdir -p -m 0700 "$MUNGE_DIR"
    if [ ! -s "$MUNGE_DIR/munge.key" ]; then
        dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1 count=1024 2>/dev/null
    fi
    chmod 0400 "$MUNGE_DIR/munge.key"
    munged --force --key-file="$MUNGE_DIR/munge.key" --socket="$MUNGE_SOCKET" --pid-file="$STATE/munged.pid" \
        --log-file="$STATE/log/munged.log" --seed-file="$MUNGE_DIR/munged.seed" \
        || die "munged failed to start (see $STATE/log/munged.log)"
    munge -S "$MUNGE_SOCKET" -n </dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null || die "munge does not work"
}

wait_idle() {
    local i state
    for i in $(seq 1 60); do
        state="$(sinfo -h -n localhost -o %t 2>/dev/null || true)"
        case "$state" in
            idle*|mix*|alloc*) return 0 ;;
            drain*|down*) scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    log "node never became idle (state: ${state:-none}); last slurmctld/slurmd log lines:"
    tail -n 15 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
    return 1
}

cmd_start() {
    local gpus=1 gpu_type=testgpu
    while [ $# -gt 0 ]; do
        case "$1" in
            --gpus) gpus="$2"; shift 2 ;;
            --gpu-type) gpu_type="$2"; shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    need_root
    have_slurm || die "slurm-wlm/munge not installed (run: $0 install)"
    if pid_alive "$STATE/slurmctld.pid" && pid_alive "$STATE/slurmd.pid"; then
        log "already running"; wait_idle; return
    fi
    cmd_stop >/dev/null 2>&1 || true
    write_config "$gpus" "$gpu_type"
    start_munge
    # -c: start clean (no jobs or node state from an earlier cluster)
    slurmctld -c || { cmd_stop; die "slurmctld failed to start; see $STATE/log/slurmctld.log"; }
    for _ in $(seq 1 40); do scontrol ping >/dev/null 2>&1 && break; sleep 0.25; done
    slurmd -N localhost || { tail -n 5 "$STATE/log/slurmd.log" >&2; cmd_stop; die "slurmd failed to start; see $STATE/log/slurmd.log"; }
    wait_idle || { cmd_stop; die "cluster did not come up"; }
    log "up: partition debug, node localhost ($(nproc) CPUs, gpus: $gpus x $gpu_type); state in $STATE"
}

cmd_stop() {
    need_root
    # slurmd and slurmctld write their PID files where slurm.conf says ($STATE)
    stop_pid "$STATE/slurmd.pid" slurmd
    stop_pid "$STATE/slurmctld.pid" slurmctld
    stop_pid "$STATE/munged.pid" munged
    # only our own configuration: another test cluster's stays (its jobs' srun read it)
    if [ -f "$CONF" ] && grep -qF "$MARKER" "$CONF" && conf_is_ours; then
        rm -f "$CONF"
        if [ -f "$GRES_CONF" ] && grep -qF "$MARKER" "$GRES_CONF"; then rm -f "$GRES_CONF"; fi
    fi
    rm -rf "$MUNGE_DIR" "$STATE/dev"   # the key and the fake GPU devices go with the cluster
    log "stopped"
}

cmd_status() {
    pid_alive "$STATE/slurmctld.pid" && pid_alive "$STATE/slurmd.pid" || { echo "down"; return 1; }
    sinfo
    squeue --states=all
}

case "${1:-}" in
    start) shift; cmd_start "$@" ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    install) cmd_install ;;
    *) echo "usage: $0 {start [--gpus N] [--gpu-type NAME]|stop|status|install}" >&2; exit 2 ;;
esac
