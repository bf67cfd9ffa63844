"""Write the NCCL environment the operator renders for an example DeepSeekDeployment as shell `export` lines.

    .venv/bin/python benchmarks/preflight/render_env.py \
        examples/r1-671b-h200-fp8.yaml benchmarks/preflight/h200-nvlink.env

The GPU runs source the file, so the preflight is measured under exactly the environment a serving pod of that
resource gets (render/nccl.py via pod_network), not one typed by hand. The preflight then adds only its own
NCCL_DEBUG=INFO, NCCL_DEBUG_SUBSYS and NCCL_DEBUG_FILE (cli.nccl_debug_env).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import yaml

from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.render.nccl import pod_network

# NVLink multicast (NVLS) can take a shared host's GPUs out of service on the lent GPU machines; the runs keep it
# off whatever the operator renders (run_device.sh exports these after sourcing the file).
FORCED_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def render(resource: Path) -> tuple[str, dict[str, str]]:
    doc = yaml.safe_load(resource.read_text())
    spec = DeepSeekDeploymentSpec.model_validate(doc["spec"])
    env = pod_network(spec.network, spans_nodes=True).env
    return str(doc.get("metadata", {}).get("name", resource.stem)), dict(env)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    resource, target = Path(argv[1]), Path(argv[2])
    name, env = render(resource)
    lines = [f"# NCCL environment rendered by deepseek_operator.render.nccl.pod_network for {name}",
             f"# ({resource.as_posix()}, spec.network), by benchmarks/preflight/render_env.py. Do not edit.",
             *(f"export {key}={shlex.quote(value)}" for key, value in sorted(env.items()))]
    overridden = sorted(set(env) & set(FORCED_OFF))
    if overridden:
        lines.append(f"# NOTE: the render sets {', '.join(overridden)}; run_device.sh forces them off.")
    target.write_text("\n".join(lines) + "\n")
    print(f"wrote {target}: {len(env)} variables", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
