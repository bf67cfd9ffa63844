#!/usr/bin/env bash
# The GPU runs recorded in this folder, one lent machine each (see README.md):
#
#   benchmarks/preflight/device_runs.sh h100x1 OUTDIR   # kind nvidia-h100-x1
#   benchmarks/preflight/device_runs.sh h100x1-failures OUTDIR   # kind nvidia-h100-x1: NCCL that cannot start
#   benchmarks/preflight/device_runs.sh h200x2 OUTDIR   # kind nvidia-h200-x2
#
# Writes OUTDIR/machine.txt, one JSON document per run, and OUTDIR/<set>-logs.tar.gz (each run's stderr, exit
# code and per-rank NCCL INFO logs). Every run sources h200-nvlink.env, the environment the operator renders for
# examples/r1-671b-h200-fp8.yaml (render_env.py), through run_device.sh, which keeps NVLink multicast off.
set -uo pipefail
set_name=$1 out=$2
work=/tmp/preflight-$set_name
mkdir -p "$out" "$work"
# shellcheck disable=SC1091
source benchmarks/preflight/device_setup.sh
env_file=benchmarks/preflight/h200-nvlink.env
run=benchmarks/preflight/run_device.sh

{
  date -u +%Y-%m-%dT%H:%M:%SZ
  nvidia-smi -L
  nvidia-smi --query-gpu=index,name,memory.total,driver_version,pci.bus_id --format=csv
  echo "--- nvidia-smi topo -m"; nvidia-smi topo -m
  echo "--- nvidia-smi nvlink -s"; nvidia-smi nvlink -s 2>&1 | head -40
  echo "--- interfaces: $(ls /sys/class/net | tr '\n' ' ')"
  echo "--- /sys/class/infiniband: $(ls /sys/class/infiniband 2>&1 | tr '\n' ' ')"
  python3 -c 'import sys, torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "nccl", torch.cuda.nccl.version())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(i, torch.cuda.get_device_name(i), p.total_memory, "bytes")'
} >"$out/machine.txt" 2>&1
cat "$out/machine.txt"

case $set_name in
  h100x1)
    "$run" "$env_file" 1 h100x1-world1 "$work" --expect-gpu H100-80GB --expect-transport nvlink
    "$run" "$env_file" 0 h100x1-mislabel "$work" --expect-gpu H200-141GB --sizes 1MiB-64MiB:x4
    GLOO_SOCKET_IFNAME=lo "$run" "$env_file" 2 h100x1-gloo2 "$work" --backend gloo
    ;;
  h100x1-failures)
    # NCCL cannot start: the rendered interface name is wrong on this node.
    PREFLIGHT_ENV="NCCL_SOCKET_IFNAME=nosuchif0" PREFLIGHT_TIMEOUT=120 "$run" "$env_file" 1 h100x1-noiface "$work" \
      --expect-gpu H100-80GB --timeout-s 60
    # One process per pod, world size 2, and the other pod never comes: rank 0 must time out and report.
    RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29631 PREFLIGHT_TIMEOUT=120 "$run" "$env_file" 0 \
      h100x1-missing-rank "$work" --expect-gpu H100-80GB --timeout-s 30
    ;;
  h200x2)
    "$run" "$env_file" 2 h200x2-healthy "$work" --expect-gpu H200-141GB --expect-transport nvlink \
      --sizes 1MiB-4GiB
    NCCL_P2P_DISABLE=1 "$run" "$env_file" 2 h200x2-shm "$work" --expect-gpu H200-141GB \
      --expect-transport nvlink --sizes 1MiB-1GiB
    NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 "$run" "$env_file" 2 h200x2-degraded "$work" --expect-gpu H200-141GB \
      --expect-transport nvlink --sizes 1MiB-1GiB
    ;;
  *) echo "unknown set $set_name" >&2; exit 2 ;;
esac

cp "$work"/*.json "$out"/
tar -C "$work" -czf "$out/$set_name-logs.tar.gz" .
for f in "$work"/*.json; do
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(sys.argv[1].rsplit("/", 1)[-1], d["exitCode"], d["message"])' "$f" \
    || echo "$f: not JSON"
done
