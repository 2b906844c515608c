#!/usr/bin/env bash
# `cxrlearn benchmark --emit-slurm` through a real Slurm: installs Debian's
# slurm-wlm and munge if missing (needs root), starts a single-node cluster
# on this machine (munged, slurmctld, slurmd; state under a temporary
# folder), builds the release binary, emits the job array of a tiny grid
# (1 phantom store x {random-init, 1-epoch MoCo-CXR recipe} x {linear,
# finetune}: 4 array tasks, two at a time), submits it with sbatch, waits,
# and checks that `benchmark report` holds every cell. The daemons it
# started are stopped on exit.
#
# Usage: scripts/slurm-test.sh [WORKDIR]   (default: a new /tmp/cxrlearn-slurm.*)
# CXRLEARN_BIN=path/to/cxrlearn skips the release build and uses that binary.
# Not part of scripts/test.sh: it installs system packages and starts
# daemons. It takes about two minutes once the release binary is built.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
started=$(date +%s)
say() { echo "slurm-test [$(($(date +%s) - started)) s]: $*" >&2; }
die() {
    echo "slurm-test: error: $*" >&2
    exit 1
}

# 1. Slurm and munge.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
    ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    [ "$(id -u)" = 0 ] || die "slurm-wlm and munge are not installed and this is not root"
    say "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null 2>&1 || {
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
    }
fi
say "$(slurmctld -V)"

work=${1:-$(mktemp -d /tmp/cxrlearn-slurm.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
conf="$work/etc/slurm.conf"
mkdir -p "$work/etc" "$work/state" "$work/spool" "$work/munge"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# 2. munged, with its own key and socket under $work (a host's own munge
# setup, if any, is left alone).
key="$work/munge/munge.key"
[ -f "$key" ] || dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
chmod 0400 "$key"
socket="$work/munge/munge.socket"
munged --force --foreground --key-file="$key" --socket="$socket" \
    --pid-file="$work/munge/munged.pid" --seed-file="$work/munge/munge.seed" \
    --log-file="$work/munge/munged.log" >>"$work/munge/munged.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S "$socket" ] && break; sleep 0.1; done
[ -S "$socket" ] || die "munged did not start (see $work/munge/munged.log)"

# 3. A one-node cluster: this host, 2 CPUs, one partition.
host=$(hostname -s)
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
cat >"$conf" <<EOF
ClusterName=cxrlearn-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=2 RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$conf"
slurmctld -D -i -f "$conf" >>"$work/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$conf" >>"$work/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 60); do
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.5
done
[ "$state" = idle ] || die "the node is '$state', not idle (see $work/slurmctld.log, $work/slurmd.log)"
say "cluster up: node $host idle"

# 4. The release binary (or CXRLEARN_BIN, an already built one) and a tiny grid.
if [ -n "${CXRLEARN_BIN:-}" ]; then
    bin=$(cd "$(dirname "$CXRLEARN_BIN")" && pwd)/$(basename "$CXRLEARN_BIN")
else
    # shellcheck source=env.sh
    . "$repo/scripts/env.sh"
    cargo build --quiet --release --manifest-path "$repo/Cargo.toml" -p cxrlearn
    bin="${CARGO_TARGET_DIR:-$repo/target}/release/cxrlearn"
    say "built $bin"
fi
if [ ! -d "$work/store" ]; then
    "$bin" --quiet phantom --out "$work/raw" --patients 60 --prevalence balanced --size 64 --sites 1
    "$bin" --quiet convert --preset phantom --root "$work/raw" --size 64 --out "$work/store"
fi
cat >"$work/grid.toml" <<EOF
baseline = "random"
strategies = ["linear", "finetune"]
seeds = [0]

[[dataset]]
name = "phantom"
store = "store"

[[model]]
name = "random"
model = "scratch:resnet18-w16"

[[model]]
name = "moco"
pretrain = { method = "moco-cxr", data = "phantom", backbone = "resnet18-w16", epochs = 1, batch_size = 16, queue = 64 }

[finetune]
epochs = 1
batch_size = 16
device = "cpu"

[features]
device = "cpu"

[probe]
device = "cpu"

[report]
n_bootstrap = 200

[slurm]
partition = "debug"
cpus_per_task = 1
mem = "1G"
time = "00:15:00"
EOF
out="$work/bench"
rm -rf "$out"

# 5. Emit, submit, wait.
"$bin" benchmark --config "$work/grid.toml" --out "$out" --emit-slurm "$work/grid.sbatch"
job=$(sbatch --parsable "$work/grid.sbatch")
job=${job%%;*}
say "submitted array job $job"
while [ -n "$(squeue -h -j "$job" 2>/dev/null)" ]; do
    sleep 2
done
say "array job $job finished"
for log in "$out"/slurm/*.out; do
    echo "--- $log" >&2
    tail -n 3 "$log" >&2
done

# 6. The report holds every cell.
"$bin" benchmark report --out "$out"
python3 - "$out/report.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
cells = report["cells"]
bad = [c for c in cells if c["status"] != "ok"]
assert len(cells) == 4, f"expected 4 cells, got {len(cells)}"
assert not bad, f"cells not ok: {bad}"
for s in report["datasets"][0]["strategies"]:
    best = s["best_ssl"]
    print(f"{s['strategy']}: baseline {s['baseline']['model']} macro AUC "
          f"{s['baseline']['macro']['auc']:.3f}, best SSL {best['model']} {best['macro']['auc']:.3f}")
print(f"all {len(cells)} cells ok")
EOF
say "passed (work directory $work)"
