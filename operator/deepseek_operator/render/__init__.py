"""Pure builders: Kubernetes objects as dicts, Triton configs, NCCL env, catalogs and sizing. No I/O."""
