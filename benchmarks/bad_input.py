"""Counts the bad inputs of tests/bad_specs.py that are accepted and then go nowhere without a word.

    .venv/bin/python -m testbed.cluster up        # the API server answers admission
    .venv/bin/python benchmarks/bad_input.py      # rejected / conditioned / silent / plan raised

Each spec is created with `dryRun=All` and strict field validation (as kubectl sends it) against the testbed's API
server, with the CRD of the checkout whose `deepseek_operator` is imported (applied first, server-side): what the
schema and the CEL rules refuse is `rejected`. An accepted spec is planned as the operator would (`plan()`, with
its PVC present): `conditioned` when a condition says what is wrong (FitsHardware or SpecValid False, Degraded
True, or SpecValid's IgnoredSetting), `raised` when the plan raises, and `silent` otherwise. The inputs of the third
round (issue #33, `ROUND_THREE`) are counted again by class. To count an older checkout: `git worktree add
/tmp/old <commit>` and run this file with `PYTHONPATH=/tmp/old/operator:.` (a checkout whose table has no
ROUND_THREE counts without it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import deepseek_operator
from deepseek_operator.plan import Observed, plan
from testbed.cluster import KUBECONFIG
from tests import bad_specs
from tests.bad_specs import ALL, GROUP, VERSION

PLURAL = "deepseekdeployments"
NAMESPACE = f"bad-input-count-{os.getpid()}"
CRD = Path(deepseek_operator.__file__).resolve().parents[2] / "crds" / "serving.deepseek.ai_deepseekdeployments.yaml"


def outcome(status: dict[str, object]) -> str:
    conditions = {c["type"]: c for c in status.get("conditions") or []}  # type: ignore[attr-defined]
    said = [c for c in conditions.values()
            if (c["type"] in ("FitsHardware", "SpecValid") and c["status"] == "False")
            or (c["type"] == "Degraded" and c["status"] == "True") or c.get("reason") == "IgnoredSetting"]
    return "conditioned" if said else "silent"


def main() -> int:
    # No options; parsing them anyway means `--help` prints this and stops, before the testbed is touched.
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    api = config.new_client_from_config(str(KUBECONFIG))
    crd = yaml.safe_load(CRD.read_text())
    ext = client.ApiextensionsV1Api(api)
    ext.patch_custom_resource_definition(crd["metadata"]["name"], crd, field_manager="bad-input-count",
                                         force=True, _content_type="application/apply-patch+yaml")
    core = client.CoreV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    except ApiException as err:
        if err.status != 409:
            raise
    custom = client.CustomObjectsApi(api)
    counts: Counter[str] = Counter()
    round_three: dict[str, list[object]] = getattr(bad_specs, "ROUND_THREE", {})
    by_class = {id(case): area for area, cases in round_three.items() for case in cases}
    per_class: dict[str, Counter[str]] = {area: Counter() for area in round_three}
    silent = []
    for n, case in enumerate(ALL):
        # An input that is the resource's name keeps it (getattr: an older table's cases have no name).
        doc = case.document(NAMESPACE, name=getattr(case, "name", None) or f"bad-{n}")
        try:
            # Strict, as kubectl sends it: an unknown field is an error rather than dropped.
            stored = custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, doc, dry_run="All",
                                                            field_validation="Strict")
        except ApiException as err:
            if err.status not in (400, 422):
                raise
            counts["rejected"] += 1
            if id(case) in by_class:
                per_class[by_class[id(case)]]["rejected"] += 1
            continue
        stored.setdefault("metadata", {})["generation"] = 1
        try:
            result = plan(stored, Observed(pvc_uids={"model-store": "uid-model-store"}), "2026-12-01T00:00:00Z")
        except Exception as err:  # a bug: the count is what this script is for
            counts["raised"] += 1
            if id(case) in by_class:
                per_class[by_class[id(case)]]["raised"] += 1
            silent.append(f"{case.id}: plan raised {type(err).__name__}: {err}")
            continue
        verdict = outcome(result.status)
        counts[verdict] += 1
        if id(case) in by_class:
            per_class[by_class[id(case)]][verdict] += 1
        if verdict == "silent":
            silent.append(case.id)
    core.delete_namespace(NAMESPACE)
    print(f"bad inputs: {len(ALL)} ({CRD.parent.parent})")
    for key in ("rejected", "conditioned", "silent", "raised"):
        print(f"  {key:12s} {counts[key]:3d}")
    print(f"accepted and silent (or raised): {counts['silent'] + counts['raised']}")
    for line in silent:
        print(f"  - {line}")
    for area, found in per_class.items():
        print(f"round three, {area}: {sum(found.values())} ({', '.join(f'{k} {v}' for k, v in sorted(found.items()))})")
    print(json.dumps({**counts, "roundThree": {area: dict(found) for area, found in per_class.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
