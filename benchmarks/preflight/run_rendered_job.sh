#!/usr/bin/env bash
# Run, on a lent GPU machine, the preflight Job's command as the operator renders it (render_job.py) under the
# NCCL environment it renders (render_env.py), as the Job's pod would run it:
#
#   benchmarks/preflight/run_rendered_job.sh JOB_TXT ENV_FILE GPUS OUTDIR
#
# What the kubelet and the machine change, and nothing else: $(JOB_COMPLETION_INDEX) -> 0 (one node),
# --nproc-per-node -> GPUS (the GPUs this machine has), /dev/termination-log -> OUTDIR/termination-log (read as
# the pod's termination message), NVLink multicast off (the lent machines require it), and NCCL_SOCKET_IFNAME=lo
# where the rendered interface does not exist. Writes OUTDIR/job.json (rank 0's stdout), job.stderr, job.rc and
# termination-log.
set -uo pipefail
job=$1 env_file=$2 gpus=$3 out=$4
mkdir -p "$out"
# shellcheck disable=SC1091
source benchmarks/preflight/device_setup.sh
export PYTHONPATH=$PWD/operator:${PYTHONPATH:-}
# shellcheck disable=SC1090
source "$env_file"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if [[ -n ${NCCL_SOCKET_IFNAME:-} ]] && ! compgen -G "/sys/class/net/${NCCL_SOCKET_IFNAME}*" >/dev/null; then
  echo "run_rendered_job.sh: no interface ${NCCL_SOCKET_IFNAME} here; NCCL_SOCKET_IFNAME=lo" >&2
  export NCCL_SOCKET_IFNAME=lo
fi
mapfile -t cmd < "$job"
cmd=("${cmd[@]//\$(JOB_COMPLETION_INDEX)/0}")
cmd=("${cmd[@]/#--nproc-per-node=*/--nproc-per-node=$gpus}")
cmd=("${cmd[@]//\/dev\/termination-log/$out/termination-log}")
command -v "${cmd[0]}" >/dev/null || cmd=(python3 -m torch.distributed.run "${cmd[@]:1}")
echo "running: ${cmd[*]}" >&2
"${cmd[@]}" >"$out/job.json" 2>"$out/job.stderr"
echo $? >"$out/job.rc"
