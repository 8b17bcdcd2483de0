# A real one-node Slurm cluster on loopback for the tests, sourced by the Slurm test scripts:
# Debian's munged, slurmctld and slurmd, started as this user with a generated munge key and a
# generated slurm.conf (this machine's CPUs and memory from `slurmd -C`, free ports), every
# state, spool, log and socket under one folder of the build tree. Nothing in /etc is read or
# written: the clients find the cluster through SLURM_CONF.
#
#   slurm_cluster_start DIR   starts the three daemons and waits until the node is idle; exports
#                             SLURM_CONF; registers slurm_cluster_stop on EXIT
#   slurm_cluster_stop        stops them (also every job step left), keeps DIR for a post-mortem
#   slurm_wait_job ID SECONDS waits until job ID has ended (any state); prints its final state
#   slurm_job_state ID        the job's state as slurmctld knows it (PENDING, RUNNING, ...)
#   slurm_post_mortem ID      prints, on stderr, the job as slurmctld shows it and the daemons'
#                             log lines about it, for a failing test's output
#   slurm_test_setup WORKDIR  for the test scripts: skips (77) unless root, checks the tools,
#                             makes and enters WORKDIR, starts the cluster in WORKDIR/cluster
#   slurm_train_config STUDIES STEPS CHECKPOINT_EVERY: chest.h5 with STUDIES small chest
#                             phantoms and train.yaml, a 4-feature network trained on them
#
# Needs root (slurmd starts job steps as the submitting user and must switch to it) and the
# packages slurm-wlm and munge (launch/setup.sh).

slurm_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

slurm_cluster_stop() {
  [[ -n ${SLURM_TEST_DIR:-} ]] || return 0
  local d=$SLURM_TEST_DIR pid
  # Jobs first (their steps are the daemons' children only through slurmstepd), then the daemons.
  scancel --full --quiet --user "$(id -un)" 2>/dev/null || true
  for pid_file in "$d/run/slurmd.pid" "$d/run/slurmctld.pid" "$d/run/munged.pid"; do
    [[ -f $pid_file ]] || continue
    pid=$(cat "$pid_file")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pid_file"
  done
  # Whatever a killed slurmd left: step daemons and their tasks, found by this cluster's config.
  pkill -KILL -f "slurmstepd.*$d" 2>/dev/null || true
  SLURM_TEST_DIR=""
}

slurm_job_state() {
  scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -1
}

slurm_post_mortem() {
  local d=${SLURM_TEST_DIR:-}
  {
    echo "--- scontrol show job $1"
    scontrol show job "$1" 2>&1 || true
    [[ -n $d ]] || return 0
    echo "--- slurmctld and slurmd log lines on job $1"
    grep -h -E "JobId=$1([^0-9]|$)|job $1([^0-9]|$)|StepId=$1\\.|revoked|already killed|[Ll]aunch fail" \
      "$d/log/slurmctld.log" "$d/log/slurmd.log" 2>/dev/null | tail -40 || true
  } >&2
}

slurm_wait_job() {
  local id=$1 seconds=$2 state=""
  for _ in $(seq $((seconds * 5))); do
    state=$(slurm_job_state "$id")
    case $state in
      PENDING | RUNNING | CONFIGURING | COMPLETING | SUSPENDED | REQUEUED | REQUEUE_HOLD | REQUEUE_FED | RESIZING | SIGNALING | STAGE_OUT) ;;
      *) echo "$state"; return 0 ;;
    esac
    sleep 0.2
  done
  echo "TIMEOUT($state)"
  return 1
}

slurm_cluster_start() {
  local d
  d=$(mkdir -p "$1" && cd "$1" && pwd)
  rm -rf "$d"/{etc,state,spool,log,run,munge}
  mkdir -p "$d"/{etc,state,spool,log,run,munge}
  chmod 700 "$d/munge"
  SLURM_TEST_DIR=$d
  trap slurm_cluster_stop EXIT

  # munge: a fresh key, its own socket; slurm reaches it through AuthInfo/CredType below.
  dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$d/munge/munge.key"
  munged --force --key-file="$d/munge/munge.key" --socket="$d/munge/munge.socket" \
    --pid-file="$d/run/munged.pid" --log-file="$d/log/munged.log" --seed-file="$d/munge/munged.seed" ||
    { echo "slurm_cluster: munged did not start (log: $d/log/munged.log)" >&2; return 1; }

  local node cpus memory ctld_port slurmd_port user
  node=$(hostname -s)
  cpus=$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p')
  memory=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  ctld_port=$(slurm_free_port)
  slurmd_port=$(slurm_free_port)
  user=$(id -un)
  cat > "$d/etc/slurm.conf" <<EOF
# Generated for one test run; everything under $d.
ClusterName=vitruvian-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$user
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/munge/munge.socket
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/run/slurmctld.pid
SlurmdPidFile=$d/run/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=15
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
Waittime=0
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE OverSubscribe=NO State=UP
EOF
  export SLURM_CONF="$d/etc/slurm.conf"
  slurmctld -i -f "$SLURM_CONF" ||
    { echo "slurm_cluster: slurmctld did not start (log: $d/log/slurmctld.log)" >&2; return 1; }
  slurmd -N "$node" -f "$SLURM_CONF" ||
    { echo "slurm_cluster: slurmd did not start (log: $d/log/slurmd.log)" >&2; return 1; }
  local state=""
  for _ in $(seq 150); do
    state=$(sinfo -h -N -o '%t' 2>/dev/null | head -1)
    [[ $state == idle ]] && return 0
    sleep 0.2
  done
  echo "slurm_cluster: node '$node' is '$state', not idle, after 30 s (logs: $d/log)" >&2
  tail -5 "$d/log/slurmctld.log" "$d/log/slurmd.log" >&2
  return 1
}

slurm_test_setup() {
  if [[ $(id -u) -ne 0 ]]; then echo "SKIP: slurmd must run as root to start job steps"; exit 77; fi
  local tool
  for tool in munged slurmctld slurmd sbatch srun; do
    command -v "$tool" > /dev/null || fail "$tool not found (launch/setup.sh installs slurm-wlm and munge)"
  done
  prepare_workdir "$1"
  slurm_cluster_start "$1/cluster"
}

slurm_train_config() {
  expect_exit 0 phantom.err "$vit" phantom --kind chest-cardiac --studies "$1" --shape 24,32,32 --out chest.h5 --threads 2
  cat > train.yaml <<YAML
data:
  dataset: chest.h5
  channels: [cta]
  classes: [lung_left, lung_right, $heart_class]
  validation_studies: 1
  patch: [16, 16, 16]
  batch_size: 2
  workers: 1
model: {stages: 3, base_features: 4}
optimizer: {name: adamw, lr: 0.01}
train: {steps: $2, validate_every: 0, checkpoint_every: $3}
YAML
}
