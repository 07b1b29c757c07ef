#!/usr/bin/env bash
# A loopback SLURM cluster with accounting on this one machine, for CI and for trying `cosmos_nb.slurm` on a laptop.
#
#   sudo bash slurm/ci/up.sh            # prints the `export SLURM_CONF=...` line the clients need
#   sudo bash slurm/ci/down.sh          # stops what up.sh started
#
# Debian/Ubuntu, run as root (exit 77 if not; exit 78 if the packages are missing and apt-get cannot install them).
# Idempotent: a second call finds the cluster up and only prints the export line (to apply changed settings: down.sh, then up.sh).
# Installs the Debian packages when missing (slurmctld slurmd slurm-client slurmdbd munge mariadb-server, ~20 s).
# Why each piece:
#   - slurmdbd + MariaDB: submitit reads job state through `sacct`; without accounting job.state never leaves PENDING.
#   - proctrack/linuxproc, task/none, jobacct_gather/none: no cgroups needed (containers, gVisor).
#   - fake GPUs: GRES backed by existing character devices (/dev/null, /dev/zero, ...) so `--gpus-per-node` is
#     scheduled and CUDA_VISIBLE_DEVICES is set; torch still sees no CUDA.
#   - two nodes (`SLURM_CI_NODES=2`, the default): two slurmd on this host, `cosmos-ci-n1` and `cosmos-ci-n2`, so
#     multi-node jobs run too. Their names must resolve (torch.distributed's MASTER_ADDR is the first node's name),
#     so one line `127.0.0.1 cosmos-ci-n1 cosmos-ci-n2 # cosmos-nb slurm/ci` is added to /etc/hosts (down.sh removes
#     it); if /etc/hosts cannot be written the cluster falls back to one node named after this host.
# Settings (environment):
#   SLURM_CI_DIR        state/config/log folder            (default /tmp/cosmos-nb-slurm)
#   SLURM_CI_NODES      1 or 2 slurmd "nodes"               (default 2)
#   SLURM_CI_FAKE_GPUS  fake GPUs per node, 0..3            (default 2)
#   SLURM_CI_CPUS       CPUs declared per node              (default: this machine's CPU count, at least 2)
set -euo pipefail
D=${SLURM_CI_DIR:-/tmp/cosmos-nb-slurm}
NODES=${SLURM_CI_NODES:-2}
GPUS=${SLURM_CI_FAKE_GPUS:-2}
export SLURM_CONF=$D/etc/slurm.conf
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
say() { echo "slurm/ci/up.sh: $*" >&2; }

if [ "$(id -u)" != 0 ]; then say "must run as root (sudo bash slurm/ci/up.sh): it starts munge, MariaDB and the SLURM daemons"; exit 77; fi
case "$NODES" in 1|2) ;; *) say "SLURM_CI_NODES must be 1 or 2, not $NODES"; exit 2;; esac
case "$GPUS" in 0|1|2|3) ;; *) say "SLURM_CI_FAKE_GPUS must be 0..3, not $GPUS"; exit 2;; esac

# 1. packages ------------------------------------------------------------------------------------------------------
need=()
for exe in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client slurmdbd:slurmdbd munged:munge mariadbd:mariadb-server; do
  command -v "${exe%%:*}" >/dev/null || [ -x "/usr/sbin/${exe%%:*}" ] || need+=("${exe##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { say "missing ${need[*]} and no apt-get: install SLURM, munge and MariaDB by hand"; exit 78; }
  say "installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client slurmdbd munge mariadb-server >/dev/null; } \
    || { say "apt-get could not install ${need[*]} (no package mirror?)"; exit 78; }
fi
export PATH=$PATH:/usr/sbin

# 2. already up? ---------------------------------------------------------------------------------------------------
if alive $D/run/slurmctld.pid && alive $D/run/slurmdbd.pid && sinfo -h >/dev/null 2>&1; then
  say "already up ($D)"; sinfo -o "%P %N %T %c %m %G" >&2; echo "export SLURM_CONF=$SLURM_CONF"; exit 0
fi
mkdir -p $D/{etc,state,spool,log,run}

# 3. munge (authentication) and MariaDB (accounting storage): reuse running ones, else start our own -------------------
if ! munge -n >/dev/null 2>&1; then
  [ -f /etc/munge/munge.key ] || { mungekey -c -k /etc/munge/munge.key 2>/dev/null || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; }
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  install -d -o munge -g munge -m 755 /run/munge
  runuser -u munge -- /usr/sbin/munged          # pid in /run/munge/munged.pid
  echo /run/munge/munged.pid > $D/run/munged.ours # down.sh stops only what we started
  for i in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
fi
if ! mariadb -e 'select 1' >/dev/null 2>&1; then
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
  install -d -o mysql -g root /run/mysqld
  (mariadbd --user=mysql --skip-networking --pid-file=/run/mysqld/mysqld.pid >$D/log/mariadb.log 2>&1 &)
  echo /run/mysqld/mysqld.pid > $D/run/mariadb.ours
  for i in $(seq 200); do mariadb -e 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done
fi
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmci';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"

# 4. configuration ---------------------------------------------------------------------------------------------------
HOST=$(hostname -s)
CPUS=${SLURM_CI_CPUS:-$(nproc)}; [ "$CPUS" -ge 2 ] || CPUS=2
if [ "$NODES" = 2 ] && ! getent hosts cosmos-ci-n2 >/dev/null; then
  echo "127.0.0.1 cosmos-ci-n1 cosmos-ci-n2 # cosmos-nb slurm/ci" >> /etc/hosts 2>/dev/null \
    || { say "cannot write /etc/hosts: falling back to one node"; NODES=1; }
fi
if [ "$NODES" = 1 ]; then NAMES=($HOST); else NAMES=(cosmos-ci-n1 cosmos-ci-n2); fi
MEM=$(awk '/MemTotal/{print int($2/1024*0.8/'"$NODES"')}' /proc/meminfo)
DEVS=(/dev/null /dev/zero /dev/full)
: > $D/etc/gres.conf; NODE_LINES=""; PORT=17001
for n in "${NAMES[@]}"; do
  GRES=""
  if [ "$GPUS" -gt 0 ]; then GRES="Gres=gpu:$GPUS"
    for k in $(seq 0 $((GPUS-1))); do echo "NodeName=$n Name=gpu File=${DEVS[$k]}" >> $D/etc/gres.conf; done; fi
  NODE_LINES+="NodeName=$n NodeAddr=127.0.0.1 Port=$PORT CPUs=$CPUS RealMemory=$MEM $GRES State=UNKNOWN"$'\n'
  PORT=$((PORT+1))
done
cat > $D/etc/slurm.conf <<CONF
# written by slurm/ci/up.sh: a loopback test cluster, not for production
ClusterName=ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
$( [ "$GPUS" -gt 0 ] && echo GresTypes=gpu )
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
KillWait=2
MailProg=/bin/true
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/%n
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd-%n.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd-%n.log
$NODE_LINES
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
cat > $D/etc/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmci
StorageLoc=slurm_acct_db
LogFile=$D/log/slurmdbd.log
PidFile=$D/run/slurmdbd.pid
CONF
chmod 600 $D/etc/slurmdbd.conf
echo "export SLURM_CONF=$SLURM_CONF" > $D/env

# 5. daemons (each only if not running yet) ----------------------------------------------------------------------------
alive $D/run/slurmdbd.pid || /usr/sbin/slurmdbd
for i in $(seq 100); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 0.1; done
alive $D/run/slurmctld.pid || /usr/sbin/slurmctld -i
for n in "${NAMES[@]}"; do mkdir -p $D/spool/$n; alive $D/run/slurmd-$n.pid || /usr/sbin/slurmd -N $n; done
for i in $(seq 150); do [ "$(sinfo -h -o %T 2>/dev/null | sort -u)" = idle ] && break; sleep 0.2; done
if [ "$(sinfo -h -o %T 2>/dev/null | sort -u)" != idle ]; then
  say "nodes did not become idle; logs in $D/log"; sinfo -N -o "%N %T %E" >&2 || true; tail -n 20 $D/log/*.log >&2; exit 1
fi
sinfo -o "%P %N %T %c %m %G" >&2
echo "export SLURM_CONF=$SLURM_CONF"
