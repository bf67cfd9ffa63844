#!/bin/bash
# Stand-in for the NGC images' entrypoint (/opt/nvidia/nvidia_entrypoint.sh): it prints a banner and runs the
# command it is given; with none it runs bash, which, with no terminal attached, exits at once.
echo "== Triton Inference Server (testbed image: tritonserver from nvidia-pytriton; TensorRT-LLM stands in) =="
if [ "$#" -eq 0 ]; then exec /bin/bash; fi
exec "$@"
