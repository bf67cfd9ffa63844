set -eu
: > /tmp/hostfile
echo '$(POD_NAME).r1-671b-2x8-9a3bc73f8d.default.svc.cluster.local slots=8' >> /tmp/hostfile
echo '$(POD_NAME)-1.r1-671b-2x8-9a3bc73f8d.default.svc.cluster.local slots=8' >> /tmp/hostfile
for host in '$(POD_NAME)-1.r1-671b-2x8-9a3bc73f8d.default.svc.cluster.local'; do
  python3 -c 'import socket, sys, time
deadline = time.time() + 600
while True:
    try:
        socket.create_connection((sys.argv[1], 2222), 2).close(); break
    except OSError:
        if time.time() > deadline: sys.exit("worker " + sys.argv[1] + " never answered")
        time.sleep(2)' "$host"
done
prefix="$(dirname "$(dirname "$(readlink -f "$(command -v mpirun)")")")"
if [ "$prefix" = /usr ]; then prefix=""; else prefix="--prefix=$prefix"; fi
exec mpirun $prefix --hostfile /tmp/hostfile -np 16 --map-by ppr:8:node --bind-to none --mca orte_keep_fqdn_hostnames 1 --mca plm_rsh_args '-p 2222 -i /etc/deepseek/ssh/id_ed25519 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null' -x PATH -x LD_LIBRARY_PATH -x HOME -x NCCL_DEBUG -x NCCL_IB_DISABLE -x NCCL_IB_HCA -x NCCL_NET_GDR_LEVEL -x NCCL_SOCKET_IFNAME /bin/sh -c 'set -u
if [ "${OMPI_COMM_WORLD_RANK:-0}" != 0 ]; then exec python3 -m tensorrt_llm.llmapi.mgmn_worker_node; fi
export TLLM_SPAWN_PROXY_PROCESS=1 tllm_mpi_size="$OMPI_COMM_WORLD_SIZE"
export TLLM_SPAWN_PROXY_PROCESS_IPC_ADDR=tcp://127.0.0.1:10012
export TLLM_SPAWN_PROXY_PROCESS_IPC_HMAC_KEY="$(python3 -c "import secrets; print(secrets.token_hex(32))")"
python3 -m tensorrt_llm.llmapi.mgmn_leader_node &
leader=$!
python3 -c "import os, sys; os.execvpe(sys.argv[1], sys.argv[1:], {k: v for k, v in os.environ.items() if not k.startswith((\"OMPI_\", \"PMIX_\", \"PMI_\", \"SLURM_\", \"MPI_\", \"UCX_\", \"I_MPI_\", \"HYDRA_\", \"KMP_\", \"MPICH_\", \"MV2_\", \"CRAY_\"))})" tritonserver --model-repository=/srv/model-repository --http-port=8080 --grpc-port=8001 --metrics-port=8002 --metrics-config=histogram_latencies=true --exit-timeout-secs=40 &
server=$!
echo "$server" > /tmp/tritonserver.pid
wait "$server"; code=$?
echo "tritonserver exited with $code: stopping the MPI job" >&2
kill -KILL "$leader"
exit "$code"'
