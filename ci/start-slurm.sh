#!/usr/bin/env bash
# A real single-node Slurm for conch's cluster tests (tests/test_slurm.py), on Debian 12 as root, no systemd.
# Installs slurm-wlm, munge, slurmdbd and mariadb-server when missing, writes slurm.conf with a fake `gpu`
# GRES, starts munged, mariadbd, slurmdbd, slurmctld and slurmd, creates the test account and waits until
# the node is idle. Idempotent: a second run changes nothing.
#   ci/start-slurm.sh status         names the daemons running (one a line)
#   ci/start-slurm.sh stop [NAME..]  stops those daemons (default: all five); the tests stop only what they started
#
# Knobs (environment):
#   SLURM_ACCOUNTING=slurmdbd  sacct works (default); `none` skips the database: snakemake then needs
#                              `--slurm-status-command squeue` and `slurm-no-account: true`.
#   SLURM_FAKE_GPUS=1          GPUs the node advertises (0: no GRES). They are device files, not GPUs:
#                              Slurm schedules and sets CUDA_VISIBLE_DEVICES, CUDA sees nothing.
#   SLURM_TEST_ACCOUNT=testacct
set -euo pipefail

ACCOUNTING=${SLURM_ACCOUNTING:-slurmdbd}
GPUS=${SLURM_FAKE_GPUS:-1}
ACCOUNT=${SLURM_TEST_ACCOUNT:-testacct}
CLUSTER=conchci
DBPASS=slurmdbpass
CONF=/etc/slurm/slurm.conf

log() { echo "[start-slurm] $*" >&2; }

# A daemon counts as running only if its pid file names a live process of that name (pids get reused).
alive() {
  local pidfile=$1 name=$2 pid
  [[ -s $pidfile ]] || return 1
  pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]
}
stop_daemon() {
  local pidfile=$1 name=$2 pid
  if alive "$pidfile" "$name"; then
    pid=$(cat "$pidfile")
    log "stopping $name (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$pidfile"
}
# name:pid file, in stopping order (the Slurm daemons before the database and munge they use).
DAEMONS=(slurmd:/run/slurmd.pid slurmctld:/run/slurmctld.pid slurmdbd:/run/slurmdbd.pid
  mariadbd:/run/mysqld/mysqld.pid munged:/run/munge/munged.pid)
case ${1:-} in
  status)
    for d in "${DAEMONS[@]}"; do alive "${d#*:}" "${d%%:*}" && echo "${d%%:*}"; done
    exit 0
    ;;
  stop)
    shift
    for d in "${DAEMONS[@]}"; do
      if (($# == 0)) || [[ " $* " == *" ${d%%:*} "* ]]; then stop_daemon "${d#*:}" "${d%%:*}"; fi
    done
    exit 0
    ;;
esac
[[ $(id -u) == 0 ]] || { log "needs root (apt-get, daemons)"; exit 1; }

# ---- 1. packages (apt starts no daemon here: there is no systemd)
pkgs=(slurm-wlm munge)
[[ $ACCOUNTING == slurmdbd ]] && pkgs+=(slurmdbd mariadb-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]} (log: /tmp/start-slurm-apt.log)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
    >/tmp/start-slurm-apt.log 2>&1
fi

# ---- 2. configuration; CHANGED=1 restarts the daemons that read it
CHANGED=0
write_if_changed() { # FILE MODE <content
  local file=$1 mode=$2 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if ! cmp -s "$tmp" "$file" 2>/dev/null; then install -D -m "$mode" "$tmp" "$file"; CHANGED=1; log "wrote $file"; fi
  rm -f "$tmp"
}

HOST=$(hostname -s)
NODE_LINE=$(slurmd -C | head -n1) # NodeName=... CPUs=... RealMemory=... as slurmd sees this machine
GRES_NODE=""
GRES_TYPES=""
if ((GPUS > 0)); then
  GRES_NODE=" Gres=gpu:$GPUS"
  GRES_TYPES="GresTypes=gpu"
  # Each GPU needs its own File=, else the node goes INVALID; /dev/null clones stand in for /dev/nvidia*.
  if ((GPUS == 1)); then
    FILES="File=/dev/null"
  else
    last=$((GPUS - 1))
    FILES="File=/dev/fakegpu[0-$last]"
    for i in $(seq 0 "$last"); do
      [[ -e /dev/fakegpu$i ]] || mknod -m 666 "/dev/fakegpu$i" c 1 3 2>/dev/null || { FILES=""; break; }
    done
    if [[ -z $FILES ]]; then # mknod denied (container): plain files work as well
      install -d /var/lib/slurm/fakegpu
      for i in $(seq 0 "$last"); do touch "/var/lib/slurm/fakegpu/gpu$i"; done
      FILES="File=/var/lib/slurm/fakegpu/gpu[0-$last]"
    fi
  fi
  write_if_changed /etc/slurm/gres.conf 0644 <<CONF
AutoDetect=off
NodeName=$HOST Name=gpu $FILES
CONF
else
  [[ -e /etc/slurm/gres.conf ]] && { rm -f /etc/slurm/gres.conf; CHANGED=1; }
fi

if [[ $ACCOUNTING == slurmdbd ]]; then
  ACCOUNTING_CONF="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux"
else
  ACCOUNTING_CONF="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

# job_comment (above): sacct keeps the comment the slurm plugin gives each job (rule_<name>_wildcards_...),
# so the tests can tell which rule a job ran. KillWait=5: a job past its time limit gets SIGTERM, then SIGKILL 5 s later (default 30 s), so the
# time-limit test does not wait. MinJobAge=300 keeps finished jobs visible to squeue for the plugin.
write_if_changed $CONF 0644 <<CONF
# written by conch ci/start-slurm.sh
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
ReturnToService=2
MinJobAge=300
KillWait=5
$GRES_TYPES
$ACCOUNTING_CONF
JobCompType=jobcomp/none
$NODE_LINE NodeAddr=127.0.0.1$GRES_NODE State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

if [[ $ACCOUNTING == slurmdbd ]]; then
  write_if_changed /etc/slurm/slurmdbd.conf 0600 <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
CONF
fi
install -d -m 0755 /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm

# ---- 3. munge (authentication between the daemons and the client commands)
[[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 1 50); do munge_ok && break; sleep 0.2; done
fi
munge -n | unmunge >/dev/null

# ---- 4. accounting: MariaDB + slurmdbd (sacct, and the account the slurm plugin validates)
if [[ $ACCOUNTING == slurmdbd ]]; then
  install -d -o mysql -g root -m 0755 /run/mysqld
  [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null
  if ! mariadb-admin ping >/dev/null 2>&1; then
    log "starting mariadbd"
    setsid /usr/sbin/mariadbd --user=mysql >>/var/log/mariadbd.log 2>&1 </dev/null &
    for _ in $(seq 1 150); do mariadb-admin ping >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  mariadb-admin ping >/dev/null
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
              CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  if alive /run/slurmdbd.pid slurmdbd && ((CHANGED)); then stop_daemon /run/slurmdbd.pid slurmdbd; fi
  if ! alive /run/slurmdbd.pid slurmdbd; then log "starting slurmdbd"; /usr/sbin/slurmdbd; fi
  for _ in $(seq 1 150); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 0.2; done
  sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
  sacctmgr -n -P show account format=account | grep -qx "$ACCOUNT" ||
    sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description=conch-ci Organization=conch >/dev/null
  sacctmgr -n -P show assoc user=root account="$ACCOUNT" format=user | grep -qx root ||
    sacctmgr -i add user root Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null
else
  stop_daemon /run/slurmdbd.pid slurmdbd
fi

# ---- 5. slurmctld + slurmd, then wait for the node
if ((CHANGED)); then stop_daemon /run/slurmd.pid slurmd; stop_daemon /run/slurmctld.pid slurmctld; fi
if ! alive /run/slurmctld.pid slurmctld; then log "starting slurmctld"; /usr/sbin/slurmctld; fi
if ! alive /run/slurmd.pid slurmd; then log "starting slurmd"; /usr/sbin/slurmd; fi

state=""
for i in $(seq 1 300); do
  state=$(sinfo -h -n "$HOST" -o %t 2>/dev/null || true)
  case $state in
    idle | mix | alloc) break ;;
    down* | drain* | drng*) ((i % 25 == 0)) && { scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true; } ;;
  esac
  sleep 0.2
done
if [[ ! $state =~ ^(idle|mix|alloc)$ ]]; then
  log "node $HOST not ready (state '$state'); daemon logs:"
  tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2
  exit 1
fi
sinfo -N -o '%N %P %t %c %m %G'
log "ready: cluster $CLUSTER, partition debug, account $ACCOUNT, accounting $ACCOUNTING, fake gpus $GPUS"
