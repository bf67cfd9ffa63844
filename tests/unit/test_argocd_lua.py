"""Argo CD health check and actions for DeepSeekDeployment, run with Lua 5.1 (lupa) as argocd-cm holds them.

Argo CD runs these scripts in gopher-lua (Lua 5.1) with only the base, table and package libraries and a
"safe" os (time and date): the sandbox below gives the scripts exactly that, with string methods switched off.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("lupa", reason="lupa is needed to run the Lua (pip install lupa)")
try:
    import lupa.lua51 as lua  # the Lua version gopher-lua (Argo CD's Lua) implements
except ImportError:  # a lupa built without its bundled Lua 5.1
    import lupa as lua

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "deploy" / "argocd"
KEY = "serving.deepseek.ai_DeepSeekDeployment"
ACTIONS = ["promote", "promote-full", "abort", "pause", "resume", "retry", "rollback-to"]
ACTION = "serving.deepseek.ai/action"
NONCE = "serving.deepseek.ai/action-nonce"
HEALTH_CODES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

SANDBOX = """
local safe_os = {time = os.time, date = os.date}
if fixed_date ~= nil then
  safe_os.date = function(format) return fixed_date end
end
local env = {
  obj = obj, actionParams = actionParams, ipairs = ipairs, pairs = pairs, next = next, type = type, tostring = tostring,
  tonumber = tonumber, error = error, assert = assert, pcall = pcall, select = select, unpack = unpack,
  rawget = rawget, rawset = rawset, setmetatable = setmetatable, getmetatable = getmetatable,
  table = table, os = safe_os,
}
env.require = function(name)
  if name == "os" then return safe_os end
  error("module " .. name .. " is not available in Argo CD")
end
local fn = assert(loadstring(source, "=script"))
setfenv(fn, env)
local string_meta = getmetatable("")
local string_index = string_meta.__index
string_meta.__index = nil  -- Argo CD does not open the string library: no ("x"):sub() either
local ok, result = pcall(fn)
string_meta.__index = string_index
if not ok then error(result) end
return result
"""


def argocd_cm() -> dict[str, str]:
    data: dict[str, str] = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())["data"]
    return data


def health_script() -> str:
    return argocd_cm()[f"resource.customizations.health.{KEY}"]


def actions_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(argocd_cm()[f"resource.customizations.actions.{KEY}"])
    return config


def action_script(name: str) -> str:
    return str(next(d["action.lua"] for d in actions_config()["definitions"] if d["name"] == name))


def to_python(value: Any) -> Any:
    if lua.lua_type(value) != "table":
        return value
    items = dict(value.items())
    if items and all(isinstance(k, int) for k in items) and sorted(items) == list(range(1, len(items) + 1)):
        return [to_python(items[i]) for i in range(1, len(items) + 1)]
    return {k: to_python(v) for k, v in items.items()}


def run(source: str, obj: dict[str, Any], fixed_date: str | None = None,
        params: dict[str, str] | None = None) -> Any:
    runtime = lua.LuaRuntime(unpack_returned_tuples=True)
    g = runtime.globals()
    g.obj = runtime.table_from(copy.deepcopy(obj), recursive=True)
    g.actionParams = runtime.table_from(params or {})  # Argo CD sets it for every action (3.1+)
    g.source = source
    g.fixed_date = fixed_date
    return to_python(runtime.execute(SANDBOX))


def condition(type_: str, status: str, reason: str, message: str, generation: int = 1) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": "2025-01-20T10:00:00Z"}


def dsd(status: dict[str, Any] | None = None, generation: int = 1, annotations: dict[str, str] | None = None
        ) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "serving.deepseek.ai/v1alpha1", "kind": "DeepSeekDeployment",
        "metadata": {"name": "r1-qwen-7b", "namespace": "default", "generation": generation, "uid": "u-1"},
        "spec": {"model": {"name": "deepseek-r1-distill-qwen-7b", "precision": "bf16"},
                 "serving": {"replicas": 2, "gpu": {"type": "A100-80GB"}}},
    }
    if annotations is not None:
        obj["metadata"]["annotations"] = annotations
    if status is not None:
        obj["status"] = {"observedGeneration": generation, **status}
    return obj


CANARY = {"stableRevision": "abc123", "canaryRevision": "def456", "canaryWeight": 10, "currentStep": 1,
          "history": [{"revision": "abc123"}, {"revision": "0ld0ld"}]}
ROLLING_OUT = condition("Progressing", "True", "CanaryStep", "rollout of def456: step 1/4, weight 10%")
PAUSED = condition("Progressing", "True", "CanaryPaused",
                   "rollout of def456 at step 2/4, weight 25%, paused: an indefinite pause step; send `resume` "
                   "or `promote`")
ROLLED_BACK = condition("Degraded", "True", "AnalysisFailed",
                        "revision def456 was rolled back (AnalysisFailed); serving abc123. Change the spec or send "
                        "the `retry` action to roll it out again")

HEALTH_CASES = {
    "no status": (dsd(), "Progressing", "Waiting for the operator to reconcile"),
    "observedGeneration behind": (
        {**dsd({"phase": "Healthy"}, generation=3), "status": {"observedGeneration": 2, "phase": "Healthy"}},
        "Progressing", "Waiting for the operator to observe generation 3"),
    "no observedGeneration yet": (
        {**dsd(generation=2), "status": {"phase": "Healthy"}},
        "Progressing", "Waiting for the operator to observe generation 2"),
    "pending": (dsd({"phase": "Pending", "conditions": [
        condition("Progressing", "True", "Unschedulable", "0/6 nodes have a free A100-80GB")]}),
        "Progressing", "Unschedulable: 0/6 nodes have a free A100-80GB"),
    "building": (dsd({"phase": "Preparing", "conditions": [
        condition("CheckpointReady", "False", "Quantizing", "job engine-1a2b running")]}),
        "Progressing", "Quantizing: job engine-1a2b running"),
    "healthy": (dsd({"phase": "Healthy", "stableRevision": "abc123", "conditions": [
        condition("Ready", "True", "ReplicasReady", "2/2 replicas of revision abc123 ready")]}),
        "Healthy", "ReplicasReady: 2/2 replicas of revision abc123 ready"),
    "progressing at weight 10": (dsd({"phase": "Progressing", **CANARY, "conditions": [ROLLING_OUT]}),
                                 "Progressing", "CanaryStep: rollout of def456: step 1/4, weight 10%"),
    "progressing at weight 10, no condition yet": (
        dsd({"phase": "Progressing", **CANARY}),
        "Progressing", "Rolling out canary def456 at 10% of traffic (step 1)"),
    "paused": (dsd({"phase": "Paused", **CANARY, "canaryWeight": 25, "paused": True, "conditions": [PAUSED]}),
               "Suspended", "CanaryPaused: " + PAUSED["message"]),
    "paused, no condition yet": (
        dsd({"phase": "Paused", **CANARY, "canaryWeight": 25}),
        "Suspended", "Paused: canary def456 at 25% of traffic (step 1); resume, promote or abort"),
    "degraded, analysis failed": (dsd({"phase": "Degraded", **CANARY, "analysis": {
        "errorRate": 0.21, "requests": 400, "p99LatencySeconds": 1.9, "result": "Failed", "failures": 3},
        "conditions": [condition("Ready", "True", "ReplicasReady", "2/2 replicas ready"),
                       condition("Degraded", "True", "AnalysisFailed", "error rate 0.21 above 0.05")]}),
        "Degraded", "AnalysisFailed: error rate 0.21 above 0.05"),
    "degraded, does not fit": (dsd({"phase": "Degraded", "conditions": [
        condition("FitsHardware", "False", "InsufficientGPUMemory", "needs 8 GPUs per replica")]}),
        "Degraded", "InsufficientGPUMemory: needs 8 GPUs per replica"),
    "rolled back by the analysis": (
        dsd({"phase": "RolledBack", "stableRevision": "abc123", "heldRevision": "def456", "canaryWeight": 0,
             "conditions": [ROLLED_BACK]}),
        "Degraded", "Rolled back to revision abc123: AnalysisFailed: " + ROLLED_BACK["message"]),
    "rolled back on request": (
        dsd({"phase": "RolledBack", "stableRevision": "0ld0ld", "heldRevision": "abc123", "conditions": [
            condition("Degraded", "False", "AsExpected", "")]}),
        "Suspended", "Rolled back to revision 0ld0ld on request; revision abc123 waits for a spec change or retry"),
    "unknown phase": (dsd({"phase": "Exploding"}), "Unknown", "Unknown phase Exploding"),
}


@pytest.mark.parametrize("case", list(HEALTH_CASES))
def test_health(case: str) -> None:
    obj, status, message = HEALTH_CASES[case]
    result = run(health_script(), obj)
    assert result["status"] in HEALTH_CODES
    assert (result["status"], result["message"]) == (status, message)


ROLLING = {"promote", "promote-full", "abort", "rollback-to"}
DISCOVERY_CASES = {
    "no status": (dsd(), set()),
    "pending": (dsd({"phase": "Pending"}), set()),
    "building": (dsd({"phase": "Preparing"}), set()),
    "first rollout, no canary yet": (dsd({"phase": "Progressing"}), set()),
    "progressing canary": (dsd({"phase": "Progressing", **CANARY}), ROLLING | {"pause"}),
    "paused canary": (dsd({"phase": "Paused", **CANARY}), ROLLING | {"resume"}),
    "healthy, one revision": (dsd({"phase": "Healthy", "stableRevision": "abc123",
                                   "history": [{"revision": "abc123"}]}), set()),
    "healthy, with history": (dsd({"phase": "Healthy", "stableRevision": "abc123",
                                   "history": [{"revision": "abc123"}, {"revision": "0ld0ld"}]}), {"rollback-to"}),
    "degraded, nothing held": (dsd({"phase": "Degraded"}), set()),
    "rolled back": (dsd({"phase": "RolledBack", "stableRevision": "abc123", "heldRevision": "def456",
                         "history": [{"revision": "abc123"}]}), {"retry"}),
}


@pytest.mark.parametrize("case", list(DISCOVERY_CASES))
def test_discovery(case: str) -> None:
    obj, expected = DISCOVERY_CASES[case]
    actions = run(actions_config()["discovery.lua"], obj)
    assert set(actions) == set(ACTIONS), "discovery and definitions must name the same actions"
    enabled = {name for name, a in actions.items() if not a["disabled"]}
    assert enabled == expected
    assert all(a.get("displayName") for a in actions.values())
    assert actions["rollback-to"]["params"] == [{"name": "revision"}]


def act(name: str, obj: dict[str, Any], fixed_date: str | None = None) -> dict[str, Any]:
    params = {"revision": "0ld0ld"} if name == "rollback-to" else None
    result: dict[str, Any] = run(action_script(name), obj, fixed_date=fixed_date, params=params)
    return result


@pytest.mark.parametrize("name", ACTIONS)
def test_action_sets_annotations_and_a_new_nonce(name: str) -> None:
    obj = dsd({"phase": "Progressing", **CANARY})
    first = act(name, obj)
    annotations = first["metadata"]["annotations"]
    assert annotations[ACTION] == ("rollback-to=0ld0ld" if name == "rollback-to" else name)
    assert annotations[NONCE].startswith("argocd-")
    assert first["spec"] == obj["spec"], "actions never touch spec"
    assert first["status"] == obj["status"]
    # A second action on the object as Argo CD then sees it gets another nonce, even within the same second.
    second = act(name, first)
    assert second["metadata"]["annotations"][NONCE] != annotations[NONCE]


def test_nonce_steps_past_the_handled_one_and_keeps_other_annotations() -> None:
    stamp = "20250120T100000Z"
    obj = dsd({"phase": "Paused", **CANARY, "lastAction": {"nonce": f"argocd-{stamp}-1", "action": "pause"}},
              annotations={NONCE: f"argocd-{stamp}-2", "team": "llm"})
    result = act("resume", obj, fixed_date=stamp)
    assert result["metadata"]["annotations"] == {ACTION: "resume", NONCE: f"argocd-{stamp}-3", "team": "llm"}
    fresh = act("resume", dsd({"phase": "Paused"}), fixed_date=stamp)
    assert fresh["metadata"]["annotations"][NONCE] == f"argocd-{stamp}-1"
    older = act("resume", dsd({"phase": "Paused", "handledActionNonce": f"argocd-{stamp}-1"}), fixed_date=stamp)
    assert older["metadata"]["annotations"][NONCE] == f"argocd-{stamp}-2"


def test_actions_use_the_real_clock() -> None:
    a = act("pause", dsd({"phase": "Progressing"}))
    stamp = a["metadata"]["annotations"][NONCE].split("-")[1]
    assert len(stamp) == len("20250120T100000Z") and stamp.endswith("Z") and stamp[8] == "T"


def test_rollback_to_checks_its_parameter() -> None:
    obj = dsd({"phase": "Healthy", **CANARY})
    with pytest.raises(lua.LuaError, match="unknown revision nope; known: abc123, 0ld0ld"):
        run(action_script("rollback-to"), obj, params={"revision": "nope"})
    with pytest.raises(lua.LuaError, match="needs the parameter revision"):
        run(action_script("rollback-to"), obj)


def test_argocd_cm_holds_exactly_the_lua_files() -> None:
    data = argocd_cm()
    assert set(data) == {f"resource.customizations.health.{KEY}", f"resource.customizations.actions.{KEY}"}
    assert health_script() == (ARGOCD / "health.lua").read_text()
    config = actions_config()
    assert config["discovery.lua"] == (ARGOCD / "actions" / "discovery.lua").read_text()
    assert [d["name"] for d in config["definitions"]] == ACTIONS
    # Each action is its own head plus actions/annotate.lua, as build-argocd-cm.py writes them.
    spec = importlib.util.spec_from_file_location("build_argocd_cm", ARGOCD / "build-argocd-cm.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert (ARGOCD / "argocd-cm.yaml").read_text() == build.render()
    for name in ACTIONS:
        assert action_script(name) == build.action_script(name), name


def test_example_applications() -> None:
    operator = yaml.safe_load((ARGOCD / "application-operator.yaml").read_text())
    assert operator["kind"] == "Application"
    assert operator["spec"]["source"]["path"] == "charts/deepseek-operator"
    model = yaml.safe_load((ARGOCD / "application-model.yaml").read_text())
    assert model["kind"] == "Application"
    assert "ignoreDifferences" not in model["spec"], "the operator never writes spec: nothing to ignore"


def test_sandbox_rejects_string_methods() -> None:
    with pytest.raises(lua.LuaError):
        run('return ("abc"):upper()', dsd())
    with pytest.raises(lua.LuaError):
        run("return string.upper('abc')", dsd())
