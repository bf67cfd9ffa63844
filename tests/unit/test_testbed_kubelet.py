"""The testbed kubelet's pure decisions (testbed/podspec.py), its image table (testbed/images.yaml), and what it says
of a volume it cannot set up (testbed/volumes.py, the FailedMount event testbed/podrunner.py posts)."""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from deepseek_operator.api import images as project_images
from testbed import images, podrunner, podspec, volumes

POD: dict[str, Any] = {
    "metadata": {"name": "web-0", "namespace": "llm", "uid": "u-1", "labels": {"app": "web"},
                 "annotations": {"batch.kubernetes.io/job-completion-index": "3"}},
    "spec": {"nodeName": "gpu-node-1", "serviceAccountName": "runner"},
    "status": {"podIP": "10.244.128.7", "hostIP": "10.244.0.1", "podIPs": [{"ip": "10.244.128.7"}]},
}
OBJECTS = {("configmap", "settings"): {"LEVEL": "debug", "MODE": "fast"},
           ("secret", "token"): {"value": "s3cr3t"}}


def lookup(kind: str, name: str, key: str, optional: bool) -> str | None:
    value = OBJECTS.get((kind, name), {}).get(key)
    if value is None and not optional:
        raise podspec.SpecError(f"{kind} {name} has no key {key}")
    return value


def lookup_all(kind: str, name: str, optional: bool) -> dict[str, str]:
    return dict(OBJECTS.get((kind, name), {}))


def env_of(container: dict[str, Any], base: dict[str, str] | None = None) -> dict[str, str]:
    return podspec.container_env(POD, container, base=base or {}, lookup=lookup, lookup_all=lookup_all)


def test_env_is_resolved_in_the_kubelets_order_with_every_source() -> None:
    container = {
        "name": "c", "resources": {"limits": {"memory": "2Gi", "cpu": "1500m"}},
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [
            {"name": "PATH", "value": "/override"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "INDEX", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
            {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "CPUS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "token", "key": "value"}}},
            {"name": "MISSING", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}}},
            {"name": "URL", "value": "http://$(IP):8000/$(POD)/$$(POD)/$(UNKNOWN)"},
        ],
    }
    env = env_of(container, base={"PATH": "/image/bin", "HOME": "/root"})
    assert env["PATH"] == "/override" and env["HOME"] == "/root"  # the spec overrides the image's env
    assert env["CFG_LEVEL"] == "debug" and env["CFG_MODE"] == "fast"
    assert (env["POD"], env["IP"], env["INDEX"]) == ("web-0", "10.244.128.7", "3")
    assert (env["MEM_MI"], env["CPUS"]) == ("2048", "2")  # divided by the divisor, rounded up
    assert env["TOKEN"] == "s3cr3t"
    assert "MISSING" not in env
    assert env["URL"] == "http://10.244.128.7:8000/web-0/$(POD)/$(UNKNOWN)"


def test_a_missing_required_secret_key_stops_the_container() -> None:
    with pytest.raises(podspec.SpecError, match="no key"):
        env_of({"name": "c", "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "token", "key": "x"}}}]})


@pytest.mark.parametrize(("container", "want"), [
    ({}, ["/entry", "serve", "--default"]),  # the image's entrypoint and cmd
    ({"args": ["--port=1"]}, ["/entry", "--port=1"]),  # args replace the cmd only
    ({"command": ["sh"]}, ["sh"]),  # a command drops the image's cmd too
    ({"command": ["sh", "-c"], "args": ["echo $(POD)"]}, ["sh", "-c", "echo web-0"]),
])
def test_command_and_args_replace_the_images_entrypoint_and_cmd(container: dict[str, Any], want: list[str]) -> None:
    assert podspec.argv(container, ["/entry"], ["serve", "--default"], {"POD": "web-0"}) == want


def test_an_image_with_no_entrypoint_and_no_command_cannot_start() -> None:
    with pytest.raises(podspec.SpecError, match="no command"):
        podspec.argv({}, [], [], {})


def test_probes_take_the_kubelets_defaults_and_named_ports() -> None:
    container = {"name": "triton", "ports": [{"name": "http", "containerPort": 8000}],
                 "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5}}
    probe = podspec.Probe.of(container, "readiness")
    assert probe is not None
    assert (probe.period_s, probe.timeout_s, probe.failure_threshold, probe.success_threshold) == (5, 1, 3, 1)
    assert podspec.Probe.of(container, "liveness") is None
    assert podspec.named_port(container, "http") == 8000 and podspec.named_port(container, 9000) == 9000
    with pytest.raises(podspec.SpecError):
        podspec.named_port(container, "grpc")


def test_a_probe_result_flips_only_after_its_threshold_in_a_row() -> None:
    state = podspec.ProbeState(podspec.Probe("readiness", {}, failure_threshold=3))
    assert state.record(True) is True  # ready on the first success
    assert state.record(False) is None and state.record(False) is None  # one slow answer keeps it ready
    assert state.record(True) is None and state.record(False) is None and state.record(False) is None
    assert state.record(False) is False  # three failures in a row: unready
    assert state.record(False) is None


def test_crash_loop_back_off_doubles_from_ten_seconds_up_to_five_minutes() -> None:
    assert [podspec.backoff_s(n) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]


@pytest.mark.parametrize(("policy", "code", "restart"), [
    ("Always", 0, True), ("Always", 1, True), ("OnFailure", 0, False), ("OnFailure", 2, True),
    ("Never", 1, False),
])
def test_restart_policy(policy: str, code: int, restart: bool) -> None:
    assert podspec.should_restart(policy, code) is restart


def test_termination_message_falls_back_to_the_log_only_when_asked_and_failed() -> None:
    log = "\n".join(f"line {i}" for i in range(200))
    assert podspec.termination_message("File", 1, "", log) == ""
    assert podspec.termination_message("FallbackToLogsOnError", 0, "", log) == ""
    tail = podspec.termination_message("FallbackToLogsOnError", 1, "", log)
    assert tail.startswith("line 120") and tail.endswith("line 199")  # the last 80 lines
    assert podspec.termination_message("FallbackToLogsOnError", 1, "written", log) == "written"


@pytest.mark.parametrize(("initializing", "codes", "phase"), [
    (True, [None], "Pending"), (False, [None], "Running"), (False, [0, None], "Running"),
    (False, [0, 0], "Succeeded"), (False, [0, 1], "Failed"),
])
def test_pod_phase(initializing: bool, codes: list[int | None], phase: str) -> None:
    assert podspec.pod_phase(initializing, codes) == phase


def test_quantities() -> None:
    assert podspec.quantity("500m") == 0.5 and podspec.quantity("8Gi") == 8 * 2**30 and podspec.quantity("3") == 3
    with pytest.raises(podspec.SpecError):
        podspec.quantity("lots")


def test_the_image_table_maps_each_image_the_project_uses() -> None:
    table = images.load()
    triton = images.find(table, "nvcr.io/nvidia/tritonserver:26.07-trtllm-python-py3")
    assert triton is not None and triton.entrypoint == ["/opt/nvidia/nvidia_entrypoint.sh"]
    # The real tritonserver and its Python backend stand where the NGC image has them; model.py stands in.
    described = {d["image"]: d for d in images.describe(table)}["tritonserver-trtllm"]
    assert "/opt/tritonserver/bin/tritonserver" in described["real"]
    assert "/app/all_models/llmapi/tensorrt_llm/1/model.py" in described["standins"]
    # The project's own images under exactly the references the CRD's defaults and the chart name, no others.
    for target in project_images.TARGETS:
        ref = project_images.reference(target)
        assert images.find(table, ref) is not None, ref
        assert images.find(table, ref.replace(":0.1.0", ":0.0.9")) is None
    assert images.find(table, "deepseek-operator:0.1.0") is None
    assert images.find(table, "docker.io/library/nginx:1.27") is None  # not pullable here: ErrImagePull


def test_the_preflight_images_torchrun_asks_only_for_what_cpus_can_do() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("torchrun", images.STANDINS / "preflight" / "torchrun.py")
    assert spec is not None and spec.loader is not None
    torchrun = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(torchrun)
    args = ["--nnodes=2", "--nproc-per-node=8", "-m", "deepseek_operator.preflight", "--backend=nccl",
            "--expect-gpu=H100-80GB", "--expect-transport=ib", "--min-bus-bandwidth-gbps=20", "--sizes=1MiB-1GiB"]
    assert torchrun.rewrite(args) == ["--nnodes=2", "--nproc-per-node=2", "-m", "deepseek_operator.preflight",
                                      "--backend=gloo", "--expect-transport=any", "--min-bus-bandwidth-gbps=0.02",
                                      "--sizes=1MiB-4MiB"]


def test_mount_targets_resolve_symlinks_inside_the_container(tmp_path: Path) -> None:
    from testbed.container import in_root

    (tmp_path / "run").mkdir()
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "run").symlink_to("/run")  # as in Debian's base layer
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "alt").symlink_to("../run")
    assert in_root(tmp_path, "/var/run/secrets/token") == tmp_path / "run" / "secrets" / "token"
    assert in_root(tmp_path, "/etc/alt/x") == tmp_path / "run" / "x"
    assert in_root(tmp_path, "/../../etc") == tmp_path / "etc"


def test_a_container_runs_as_its_security_context_says_and_never_as_root_when_told_not_to() -> None:
    pod = {"metadata": {"namespace": "llm", "name": "p"},
           "spec": {"securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000,
                                        "supplementalGroups": [3000], "runAsNonRoot": True}}}
    assert podspec.run_as(pod, {"name": "c"}, image_user=0) == podspec.RunAs(1000, 1000, (3000, 2000))
    assert podspec.run_as(pod, {"name": "c", "securityContext": {"runAsUser": 1001}}, 0).uid == 1001
    # An image's USER stands when nothing overrides it; root is refused under runAsNonRoot, as the kubelet does.
    bare = {"metadata": {"namespace": "llm", "name": "p"}, "spec": {}}
    assert podspec.run_as(bare, {"name": "c"}, image_user=10001) == podspec.RunAs(10001, 10001, ())
    with pytest.raises(podspec.SpecError, match="runAsNonRoot and image will run as root"):
        podspec.run_as(bare, {"name": "c", "securityContext": {"runAsNonRoot": True}}, image_user=0)


# ------------------------------------------------------------------ volumes the kubelet cannot set up


class _Objects:
    """The core API as the volume manager reads it: ConfigMaps and Secrets by name, 404 for the others."""

    def __init__(self, configmaps: dict[str, dict[str, str]], secrets: dict[str, dict[str, str]]) -> None:
        self.configmaps, self.secrets = configmaps, secrets

    def read_namespaced_config_map(self, name: str, namespace: str) -> Any:
        if name not in self.configmaps:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(data=self.configmaps[name], binary_data=None)

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        if name not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(data={k: base64.b64encode(v.encode()).decode() for k, v in self.secrets[name].items()})


def _pod_with(*volume_list: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "r1-0", "namespace": "llm", "uid": "u-1"},
            "spec": {"volumes": list(volume_list), "containers": [{"name": "c"}]}}


@pytest.mark.parametrize(("volume", "words"), [
    ({"name": "grpc-tls", "secret": {"secretName": "triton-grpc"}},
     'MountVolume.SetUp failed for volume "grpc-tls" : secret "triton-grpc" not found'),
    ({"name": "calibration", "configMap": {"name": "chats"}},
     'MountVolume.SetUp failed for volume "calibration" : configmap "chats" not found'),
    ({"name": "grpc-tls", "secret": {"secretName": "tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
     'MountVolume.SetUp failed for volume "grpc-tls" : references non-existent secret key: ca.crt'),
    ({"name": "calibration", "configMap": {"name": "samples", "items": [{"key": "r1.jsonl", "path": "s.jsonl"}]}},
     'MountVolume.SetUp failed for volume "calibration" : configmap references non-existent config key: r1.jsonl'),
    ({"name": "both", "projected": {"sources": [{"secret": {"name": "triton-grpc"}}]}},
     'MountVolume.SetUp failed for volume "both" : secret "triton-grpc" not found'),
])
def test_a_volume_the_kubelet_cannot_set_up_fails_in_its_words(tmp_path: Path, volume: dict[str, Any],
                                                               words: str) -> None:
    objects = _Objects({"samples": {"other": "x"}}, {"tls": {"tls.crt": "c", "tls.key": "k"}})
    setup = volumes.VolumeSetup(objects, _pod_with(volume), tmp_path)  # type: ignore[arg-type]
    with pytest.raises(volumes.MountFailed) as failed:
        setup.set_up()
    assert str(failed.value) == words
    # An optional source that is missing is no failure, as for the kubelet.
    optional = {**volume, **{k: {**v, "optional": True} for k, v in volume.items() if isinstance(v, dict)
                             and k != "projected"}}
    if "projected" not in volume:
        assert volumes.VolumeSetup(objects, _pod_with(optional), tmp_path / "o").set_up()  # type: ignore[arg-type]


def test_env_from_a_missing_secret_key_is_a_config_error_not_a_mount_failure(tmp_path: Path) -> None:
    setup = volumes.VolumeSetup(_Objects({}, {"hf": {"other": "x"}}), _pod_with(), tmp_path)  # type: ignore[arg-type]
    with pytest.raises(volumes.VolumeNotReady, match="couldn't find key token in Secret llm/hf"):
        setup.lookup("secret", "hf", "token", False)
    with pytest.raises(volumes.VolumeNotReady, match='secret "nope" not found'):
        setup.lookup("secret", "nope", "token", False)


class _Events:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.patched: list[tuple[str, dict[str, Any]]] = []

    def create_namespaced_event(self, namespace: str, body: dict[str, Any]) -> None:
        self.created.append(body)

    def patch_namespaced_event(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        self.patched.append((name, body))


def test_a_repeated_warning_is_one_event_whose_count_goes_up(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = object.__new__(podrunner.PodRunner)
    runner.api, runner.lock, runner.events = _Events(), threading.Lock(), {}  # type: ignore[assignment]
    pod = SimpleNamespace(uid="u-1", name="r1-0", ns="llm", pod={"spec": {"nodeName": "gpu-node-1"}})
    clock = [100.0]
    monkeypatch.setattr(podrunner.time, "monotonic", lambda: clock[0])
    words = 'MountVolume.SetUp failed for volume "grpc-tls" : secret "triton-grpc" not found'
    runner.warn(pod, "FailedMount", words)  # type: ignore[arg-type]
    [event] = runner.api.created  # type: ignore[attr-defined]
    assert (event["type"], event["reason"], event["message"], event["count"]) == ("Warning", "FailedMount", words, 1)
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "namespace": "llm", "name": "r1-0",
                                       "uid": "u-1"}
    assert event["source"] == {"component": "kubelet", "host": "gpu-node-1"}
    assert event["metadata"]["name"].startswith("r1-0.")
    clock[0] += 2  # the pod sync retries at once: no new write
    runner.warn(pod, "FailedMount", words)  # type: ignore[arg-type]
    assert runner.api.patched == []  # type: ignore[attr-defined]
    clock[0] += podrunner.EVENT_REPEAT_S
    runner.warn(pod, "FailedMount", words)  # type: ignore[arg-type]
    [(name, bump)] = runner.api.patched  # type: ignore[attr-defined]
    assert name == event["metadata"]["name"] and bump["count"] == 2
    runner.forget_events("u-1")
    assert runner.events == {}
