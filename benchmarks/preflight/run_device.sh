#!/usr/bin/env bash
# Run the preflight on a lent GPU machine under the operator-rendered NCCL environment.
#
#   benchmarks/preflight/run_device.sh ENV_FILE NPROC NAME DIR [preflight options...]
#
# NPROC 0 runs one plain `python3 -m deepseek_operator.preflight` (no torchrun: the lone-process path);
# otherwise `python3 -m torch.distributed.run --standalone --nproc-per-node NPROC -m deepseek_operator.preflight`.
# Writes DIR/NAME.json (rank 0's stdout: the JSON document), DIR/NAME.stderr, DIR/NAME.rc and each rank's NCCL
# log under DIR/NAME-nccl/. The environment is kept (not cleared): ENV_FILE is sourced on top of it, then NVLink
# multicast is forced off again, as the lent machines require (KINDS.md), whatever the render said.
set -uo pipefail
env_file=$1 nproc=$2 name=$3 dir=$4
shift 4
mkdir -p "$dir/$name-nccl"

# shellcheck disable=SC1090
source "$env_file"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

# Settings to test on top of the render (e.g. a wrong interface), exported after it: PREFLIGHT_ENV="K=V K=V".
for kv in ${PREFLIGHT_ENV:-}; do export "${kv?}"; done

# The render names the pod's interface (eth0). A machine without it would fail NCCL's bootstrap before any
# transport is chosen; say so and use loopback there (single-node runs only), recorded in the JSON's environment.
# PREFLIGHT_ENV set: no fallback (the run tests the setting as given).
ifname=${NCCL_SOCKET_IFNAME:-}
if [[ -z ${PREFLIGHT_ENV:-} && -n $ifname && $ifname != ^* && $ifname != =* ]] && ! compgen -G "/sys/class/net/${ifname}*" >/dev/null; then
  echo "run_device.sh: no interface ${ifname}* here ($(ls /sys/class/net | tr '\n' ' ')); NCCL_SOCKET_IFNAME=lo" >&2
  export NCCL_SOCKET_IFNAME=lo PREFLIGHT_SOCKET_IFNAME_OVERRIDDEN="$ifname->lo"
fi

export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/operator${PYTHONPATH:+:$PYTHONPATH}"
if [[ $nproc == 0 ]]; then
  launch=(python3 -m deepseek_operator.preflight)
else
  launch=(python3 -m torch.distributed.run --standalone --nproc-per-node "$nproc" -m deepseek_operator.preflight)
fi
echo "run_device.sh: $name: ${launch[*]} --nccl-log-dir $dir/$name-nccl $*" >&2
env | grep -E '^(NCCL_|TORCH_SYMM|NVSHMEM_|PREFLIGHT_)' | sort >&2
# PREFLIGHT_TIMEOUT: a wall-clock bound on the launch itself (a hung NCCL init must not hang the caller).
timeout --kill-after=10 "${PREFLIGHT_TIMEOUT:-3600}" "${launch[@]}" --nccl-log-dir "$dir/$name-nccl" "$@" >"$dir/$name.json" 2> >(tee "$dir/$name.stderr" >&2)
rc=$?
echo "$rc" >"$dir/$name.rc"
echo "run_device.sh: $name: exit code $rc" >&2
exit "$rc"
