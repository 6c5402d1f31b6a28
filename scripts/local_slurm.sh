#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, without systemd: to try conf/hydra/launcher/slurm.yaml
# against a real scheduler (`make test-slurm` uses it; docs/cluster.md).
#
#   scripts/local_slurm.sh install   # apt-get install Debian's slurmctld slurmd slurm-client munge (~15-30 s)
#   scripts/local_slurm.sh up        # (installs if missing) munged + slurmctld + slurmd, waits for an idle node
#   eval "$(scripts/local_slurm.sh env)"   # or paste the `export SLURM_CONF=...` line `up` prints
#   scripts/local_slurm.sh status    # daemons, sinfo, squeue
#   scripts/local_slurm.sh down      # cancels every job, stops the three daemons by their pid files
#
# Needs root (apt-get, munged runs as the munge user, slurmd launches jobs). Everything lives under
# $ODENETS_SLURM_DIR (default /tmp/odenets-slurm): slurm.conf, the munge key and socket, controller
# state, slurmd spool, pid files and logs (slurmctld.log, slurmd.log, munge/munged.log). `up` twice is
# fine (running daemons are kept); `down` twice too. The controller starts with a clean state (-c).
#
# Decisions:
# - slurm.conf is $ODENETS_SLURM_DIR/slurm.conf, not /etc/slurm/slurm.conf: nothing on the system is
#   changed but the packages, and a real SLURM configuration there is never overwritten. Daemons get it
#   with -f; clients (sbatch, squeue, scontrol, submitit) need `export SLURM_CONF=...` (printed by `up`
#   and `env`); jobs inherit it from sbatch's environment and slurmd.
# - munged uses its own key and socket under $ODENETS_SLURM_DIR/munge (slurm.conf's AuthInfo points
#   there), so a system munged, if any, is left alone.
# - No accounting storage (slurmdbd + MariaDB would be a database server for a test):
#   AccountingStorageType=accounting_storage/none, so `sacct` fails ("Slurm accounting storage is
#   disabled"). jobcomp/filetxt records finished jobs in jobcomp.txt, which only `sacct --completion`
#   reads, and submitit does not ask for it: submitit polls `sacct -j`, warns on every poll, and would
#   wait forever for a job that ended without a result (cancelled, killed). Our launcher
#   (odenets.run.launchers, conf/hydra/launcher/slurm.yaml) therefore reads job states from
#   `squeue --states=all` when sacct fails, and says so once. MinJobAge=600 keeps finished jobs in
#   squeue for 10 minutes.
# - KillWait=30 (SLURM's default): scancel/requeue send SIGTERM, then SIGKILL 30 s later. A requeued
#   job is held 120 s (Reason=BeginTime) before it may start again, as on any SLURM cluster.
set -euo pipefail

DIR=${ODENETS_SLURM_DIR:-/tmp/odenets-slurm}
CONF=$DIR/slurm.conf
MUNGE=$DIR/munge
SOCKET=$MUNGE/munge.socket.2
HOST=$(hostname -s)
export SLURM_CONF=$CONF

say() { echo "local_slurm: $*" >&2; }
die() { say "$*"; exit 1; }

installed() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sinfo >/dev/null \
              && command -v munged >/dev/null; }

install() {
  installed && { say "SLURM already installed ($(slurmctld -V))"; return; }
  [ "$(id -u)" = 0 ] || die "installing needs root: sudo apt-get install -y slurmctld slurmd slurm-client munge"
  say "installing slurmctld slurmd slurm-client munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null; }
  installed || die "apt-get did not install the SLURM daemons"
}

# alive PIDFILE NAME: the pid file names a live process called NAME
alive() { local pid; pid=$(cat "$1" 2>/dev/null) || return 1
          [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$2" ]; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq $((seconds * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "timed out after ${seconds}s waiting for $what (logs in $DIR)"
}

write_conf() {
  # the node as slurmd sees it (CPUs, sockets, cores, threads, RealMemory in MB)
  local node
  node=$(slurmd -C | head -1)
  cat >"$CONF.tmp" <<EOF
# written by scripts/local_slurm.sh: a one-node test cluster
ClusterName=odenets
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=30
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
}

node_state() { sinfo --noheader --nodes="$HOST" --format=%T 2>/dev/null | head -1; }
node_idle() { case "$(node_state)" in idle|mixed|allocated) return 0;; *) return 1;; esac; }

up() {
  [ "$(id -u)" = 0 ] || die "needs root (munged runs as the munge user; slurmd launches jobs)"
  installed || install
  local t0=$SECONDS
  mkdir -p "$DIR/state" "$DIR/spool" "$MUNGE"
  chown munge:munge "$MUNGE"; chmod 0755 "$MUNGE"  # users reach the socket; the key is 0400
  if [ ! -s "$MUNGE/munge.key" ]; then
    say "creating a munge key in $MUNGE"
    dd if=/dev/urandom of="$MUNGE/munge.key" bs=1024 count=1 status=none
    chown munge:munge "$MUNGE/munge.key"; chmod 0400 "$MUNGE/munge.key"
  fi
  if alive "$MUNGE/munged.pid" munged; then
    say "munged already running (pid $(cat "$MUNGE/munged.pid"))"
  else
    runuser -u munge -- munged --socket="$SOCKET" --key-file="$MUNGE/munge.key" --pid-file="$MUNGE/munged.pid" \
      --log-file="$MUNGE/munged.log" --seed-file="$MUNGE/munged.seed"
    wait_for 10 munged sh -c "munge -n --socket='$SOCKET' | unmunge --socket='$SOCKET'"
  fi
  write_conf
  if alive "$DIR/slurmctld.pid" slurmctld; then
    say "slurmctld already running (pid $(cat "$DIR/slurmctld.pid"))"
  else
    slurmctld -f "$CONF" -c
    wait_for 30 slurmctld scontrol ping
  fi
  if alive "$DIR/slurmd.pid" slurmd; then
    say "slurmd already running (pid $(cat "$DIR/slurmd.pid"))"
  else
    slurmd -f "$CONF"
  fi
  wait_for 60 "node $HOST to be idle" node_idle
  say "up in $((SECONDS - t0)) s: node $HOST $(node_state), partition debug; logs in $DIR"
  echo "export SLURM_CONF=$CONF"
}

stop() {  # stop PIDFILE NAME
  if alive "$1" "$2"; then
    local pid; pid=$(cat "$1")
    kill -TERM "$pid"
    for _ in $(seq 50); do [ -d /proc/"$pid" ] || break; sleep 0.2; done
    if [ -d /proc/"$pid" ]; then say "$2 (pid $pid) ignored SIGTERM for 10 s: SIGKILL"; kill -KILL "$pid"; fi
    say "stopped $2 (pid $pid)"
  fi
  rm -f "$1"
}

down() {
  if alive "$DIR/slurmctld.pid" slurmctld; then
    # no job outlives the cluster: cancel everything, wait for the steps to end (SIGKILL after KillWait)
    scancel --partition=debug 2>/dev/null || true
    for _ in $(seq 200); do
      [ -z "$(squeue --noheader --states=PD,R,CG,S,RQ,RS,RH,CF,SO,SE --format=%i 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  stop "$DIR/slurmd.pid" slurmd
  stop "$DIR/slurmctld.pid" slurmctld
  stop "$MUNGE/munged.pid" munged
  say "down (logs kept in $DIR)"
}

status() {
  local name pidfile rc=0
  for name in munged slurmctld slurmd; do
    pidfile=$DIR/$name.pid; [ "$name" = munged ] && pidfile=$MUNGE/munged.pid
    if alive "$pidfile" "$name"; then echo "$name: running (pid $(cat "$pidfile"))"; else echo "$name: stopped"; rc=3; fi
  done
  if [ $rc = 0 ]; then echo "export SLURM_CONF=$CONF"; sinfo; squeue; fi
  return $rc
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) down ;;
  status) status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 install|up|down|status|env" >&2; exit 2 ;;
esac
