"""What a serving pod needs on a real cluster, held to TensorRT-LLM's own files (issue: pods that would serve):
the multi-node launch and its drain, GB200's IMEX channels, prompts longer than max_num_tokens, the quantize
Job's reach, and INT8. Each test fails on the operator as it was before these were fixed."""

from __future__ import annotations

import subprocess
import sys

import yaml

from deepseek_operator.plan import plan
from deepseek_operator.render import catalog, imex, multinode, runtime
from tests.unit.test_plan import T0, Cluster, cond, edited, example
from tests.unit.test_recipes import MODEL_YAML, spec_for

R1 = "deepseek-r1"


def _model_yaml(model: str, gpu: str, **runtime_fields: object) -> dict[str, object]:
    from deepseek_operator.plan.revisions import render_revision
    revision = render_revision(spec_for(model, gpu, **runtime_fields))
    assert revision is not None
    loaded: dict[str, object] = yaml.safe_load(revision.repo_data[MODEL_YAML])
    return loaded


def test_a_prompt_longer_than_max_num_tokens_is_prefilled_in_chunks_where_the_gpu_runs_it() -> None:
    # H200 (sm_90): the curated 3200 tokens per iteration stay, and chunked prefill lets prompts up to maxSeqLen in.
    h200 = _model_yaml(R1, "H200-141GB")
    assert (h200["max_num_tokens"], h200["enable_chunked_prefill"]) == (3200, True)
    # B300 (sm_103): TensorRT-LLM 1.2 runs chunked prefill for MLA on SM90/SM100 only, so every prompt must fit one
    # iteration: max_num_tokens is raised to maxSeqLen, and the runtime says why.
    b300 = _model_yaml(R1, "B300-288GB")
    assert (b300["max_num_tokens"], "enable_chunked_prefill" in b300) == (8192, False)
    rt = runtime.resolve(spec_for(R1, "B300-288GB"), catalog.MODELS[R1], catalog.GPUS["B300-288GB"])
    assert "SM90 and SM100 only" in rt.reason and not rt.chunked_prefill
    # A dense model's max_num_tokens below maxSeqLen gets chunked prefill anywhere.
    dense = _model_yaml("deepseek-r1-distill-qwen-7b", "A100-80GB", maxNumTokens=2048, maxSeqLen=8192)
    assert (dense["max_num_tokens"], dense["enable_chunked_prefill"]) == (2048, True)


def test_a_max_num_tokens_of_the_spec_that_would_refuse_long_prompts_is_refused() -> None:
    body = edited(example("r1-671b-b200-nvfp4"), {"serving.gpu.type": "B300-288GB", "runtime.maxNumTokens": 2048})
    p = plan(body, Cluster().observed(), T0)
    assert cond(p, "SpecValid")["status"] == "False"
    assert "maxNumTokens 2048 is below maxSeqLen" in cond(p, "SpecValid")["message"]
    assert p.apply == []


def test_the_published_recipes_keep_every_setting_they_publish() -> None:
    # curated/deepseek-r1-deepgemm.yaml: trust_remote_code, stream_interval 10, moe_config.max_num_tokens 3200.
    b200 = _model_yaml(R1, "B200-180GB")
    assert b200["trust_remote_code"] is True and b200["stream_interval"] == 10
    assert b200["moe_config"] == {"backend": "DEEPGEMM", "max_num_tokens": 3200}
    # curated/deepseek-r1-latency.yaml: MTP 3 with relaxed acceptance while thinking.
    latency = _model_yaml(R1, "B200-180GB", objective="latency")
    assert latency["speculative_config"] == {"decoding_type": "MTP", "num_nextn_predict_layers": 3,
                                             "use_relaxed_acceptance_for_thinking": True, "relaxed_topk": 10,
                                             "relaxed_delta": 0.6}
    # Two H100 nodes: TensorRT-LLM's TP 16 with EP 8 and attention data parallelism, not TP 8 x PP 2.
    h100 = _model_yaml(R1, "H100-80GB")
    assert (h100["tensor_parallel_size"], h100["pipeline_parallel_size"], h100["moe_expert_parallel_size"],
            h100["enable_attention_dp"]) == (16, 1, 8, True)


def test_wide_ep_on_gb200_gets_its_load_balancer_and_needs_imex_channels() -> None:
    body = example("r1-671b-gb200-wide-ep")
    p = plan(body, Cluster(lws_installed=True).observed(), T0)
    # Without NVIDIA's DRA driver the trays cannot share memory: said, and nothing applied.
    assert (p.status["phase"], cond(p, "Ready")["reason"]) == ("Degraded", "NoMultiNodeNVLink")
    assert imex.KIND in cond(p, "Degraded")["message"] and p.apply == []
    # With it, the revision's ComputeDomain and every pod's claim of its IMEX channel.
    cluster = Cluster(lws_installed=True, compute_domains_installed=True)
    domains = [o for o in cluster_applied(cluster, body) if o["kind"] == imex.KIND]
    assert domains and domains[0]["spec"]["channel"]["resourceClaimTemplate"]["name"].endswith("-imex-channel")
    lws = next(o for o in cluster_applied(cluster, body) if o["kind"] == "LeaderWorkerSet")
    for role in ("leaderTemplate", "workerTemplate"):
        pod = lws["spec"]["leaderWorkerTemplate"][role]["spec"]
        assert pod["resourceClaims"][0]["resourceClaimTemplateName"] == \
            domains[0]["spec"]["channel"]["resourceClaimTemplate"]["name"]
        assert pod["containers"][0]["resources"]["claims"] == [{"name": imex.CLAIM}]
    model_yaml = yaml.safe_load(next(o for o in cluster_applied(cluster, body) if o["kind"] == "ConfigMap")["data"][
        MODEL_YAML])
    assert model_yaml["moe_config"] == {"backend": "WIDEEP", "use_low_precision_moe_combine": True,
                                        "load_balancer": {"num_slots": 288, "layer_updates_per_iter": 1}}


def cluster_applied(cluster: Cluster, body: dict[str, object]) -> list[dict[str, object]]:
    """Everything the operator would apply for `body` now, unchanged children included."""
    fresh = Cluster(lws_installed=cluster.lws_installed, compute_domains_installed=cluster.compute_domains_installed,
                    preflight_passes=True)
    applied: list[dict[str, object]] = []
    for _ in range(3):
        applied += fresh.reconcile(body, T0).apply
    return applied


def test_the_quantize_job_is_not_asked_for_what_only_modelopts_deepseek_flow_makes() -> None:
    body = edited(example("r1-671b-b200-nvfp4"), {"model.checkpointPrecision": None})
    body["spec"]["model"].pop("checkpointPrecision")
    p = plan(body, Cluster().observed(), T0)
    message = cond(p, "SpecValid")["message"]
    assert cond(p, "SpecValid")["status"] == "False" and "nvidia/DeepSeek-R1-0528-FP4-v2" in message
    assert "checkpointPrecision: nvfp4" in message and p.apply == []


def test_int8_is_refused_with_what_the_pytorch_backend_loads_instead() -> None:
    p = plan(edited(example("r1-distill-qwen-7b-a100"), {"model.precision": "int8"}), Cluster().observed(), T0)
    assert cond(p, "SpecValid")["status"] == "False"
    assert "w4a16/awq" in cond(p, "SpecValid")["message"] and p.apply == []


def test_rank_zero_runs_the_leader_and_the_server_and_a_dead_server_ends_the_job(tmp_path: object) -> None:
    # The rank script under sh, with stand-ins for the leader (sleeps until killed) and a server that exits 3:
    # rank 0 exits with the server's code, having killed the leader, so mpirun ends the job.
    import pathlib
    root = pathlib.Path(str(tmp_path))
    (root / "bin").mkdir()
    (root / "bin" / "python3").write_text(
        f'#!/bin/sh\nif [ "$1" = -m ]; then exec sleep 30; fi\nexec {sys.executable} "$@"\n')
    (root / "bin" / "python3").chmod(0o755)
    (root / "bin" / "server").write_text("#!/bin/sh\nexit 3\n")
    (root / "bin" / "server").chmod(0o755)
    script = multinode.rank_script(["server"]).replace(multinode.SERVER_PID_FILE, str(root / "pid"))
    env = {"PATH": f"{root / 'bin'}:/usr/bin:/bin", "OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "16"}
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=20)
    assert done.returncode == 3 and "stopping the MPI job" in done.stderr
