"""GPU fabric preflight: an all-reduce over every rank of a model replica, before it takes traffic.

``python -m deepseek_operator.preflight`` (under torchrun, or one process per pod) times ``all_reduce`` over a
range of message sizes with torch.distributed, reads from NCCL's INFO log which transport carried it (NVLink
P2P, PCIe P2P, shared memory, InfiniBand/RoCE, or the silent fallback to TCP sockets), checks that the GPUs are
the ones the pod was promised, and gates on all three. Rank 0 prints one JSON document.

Modules: ``nccl_log`` (pure: the NCCL log parser), ``report`` (pure: sizes, bandwidth, GPU check, gate, JSON),
``cli`` (options, environment), ``runner`` (the only one that imports torch, lazily).
"""
