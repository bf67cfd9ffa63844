set -eu
: > /tmp/hostfile
echo '$(POD_NAME).r1-671b-2x8-7931120534.default.svc.cluster.local slots=8' >> /tmp/hostfile
echo '$(POD_NAME)-1.r1-671b-2x8-7931120534.default.svc.cluster.local slots=8' >> /tmp/hostfile
for host in '$(POD_NAME)-1.r1-671b-2x8-7931120534.default.svc.cluster.local'; do
  python3 -c 'import socket, sys, time
deadline = time.time() + 600
while True:
    try:
        socket.create_connection((sys.argv[1], 2222), 2).close(); break
    except OSError:
        if time.time() > deadline: sys.exit("worker " + sys.argv[1] + " never answered")
        time.sleep(2)' "$host"
done
exec mpirun --hostfile /tmp/hostfile -np 16 --map-by ppr:8:node --bind-to none --mca orte_keep_fqdn_hostnames 1 --mca plm_rsh_args '-p 2222 -i /etc/deepseek/ssh/id_ed25519 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null' -x NCCL_DEBUG -x NCCL_IB_DISABLE -x NCCL_IB_HCA -x NCCL_NET_GDR_LEVEL -x NCCL_SOCKET_IFNAME trtllm-llmapi-launch tritonserver --model-repository=/srv/model-repository --http-port=8000 --grpc-port=8001 --metrics-port=8002 --metrics-config=histogram_latencies=true
