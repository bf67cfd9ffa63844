"""Print the command of the preflight Job the operator renders for an example DeepSeekDeployment, one word a line.

    .venv/bin/python benchmarks/preflight/render_job.py examples/r1-distill-llama-70b-h100-fp8.yaml

The words come from the operator's own plan (plan/): the passes that take the example from nothing to
its preflight, so a GPU run of them runs exactly what the Job's container would (`torchrun` and its args, with
`$(JOB_COMPLETION_INDEX)` left for the caller, as the kubelet would expand it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from deepseek_operator.plan import Observed, plan

NOW = "2026-01-01T00:00:00Z"


def preflight_command(resource: Path) -> list[str]:
    doc: dict[str, Any] = next(d for d in yaml.safe_load_all(resource.read_text()) if d["kind"] == "DeepSeekDeployment")
    body = {**doc, "metadata": {**doc["metadata"], "uid": "uid", "generation": 1}}
    claims = {"model-store": "uid-model-store", "deepseek-model-cache": "uid-cache"}
    quantize_jobs: dict[str, Any] = {}
    for _ in range(3):  # no engine yet -> its build Job -> built: the preflight comes next
        p = plan(body, Observed(pvc_uids=claims, quantize_jobs=quantize_jobs), NOW)
        body["status"] = p.status
        for obj in p.apply:
            labels = obj["metadata"].get("labels", {})
            if obj["kind"] == "Job" and labels.get("app.kubernetes.io/component") == "preflight":
                container = obj["spec"]["template"]["spec"]["containers"][0]
                return [*container["command"], *container["args"]]
            if obj["kind"] == "Job":
                quantize_jobs[obj["metadata"]["name"]] = {
                    **obj, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    raise SystemExit(f"{resource}: the operator renders no preflight Job for it (one GPU, or turned off)")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    print("\n".join(preflight_command(Path(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
