"""Checks each export in a run_gpu.py report against what TensorRT-LLM 1.2's PyTorch backend reads. CPU only.

What the loader does, read from NVIDIA/TensorRT-LLM (the 1.2 line: its requirements.txt at
000867d9b1ad62f3de1e54e111c094da492a5626 pins nvidia-modelopt[torch]~=0.37.0, transformers==4.57.1, torch<=2.9.0):

- tensorrt_llm/_torch/model_config.py, ModelConfig.from_pretrained: a checkpoint with `hf_quant_config.json` is read
  by load_modelopt_quant_config (before config.json's `quantization_config`, which is read only without it). That
  takes `quantization.quant_algo` ("fp8_pb_wo" renamed FP8_BLOCK_SCALES), `kv_cache_quant_algo`, `group_size` and
  `exclude_modules`; MIXED_PRECISION also reads quant_cfg.json.
- tensorrt_llm/quantization/mode.py: QuantAlgo names, QUANT_ALGO_LIST (all but INT8), KV_CACHE_QUANT_ALGO_LIST
  (FP8, INT8, NVFP4).
- tensorrt_llm/_torch/modules/linear.py, get_quant_method: the linear method per quant mode. FP8 -> FP8QDQLinearMethod
  (weight float8_e4m3fn, scalar weight_scale, scalar input_scale or none for dynamic), NVFP4 -> NVFP4LinearMethod
  (weight packed [out, in/2], weight_scale float8_e4m3fn per 16 inputs, weight_scale_2 and input_scale scalars; its
  GEMM is Blackwell's), W4A16_AWQ -> W4A16_AWQ_LinearMethod (weight packed, transposed to [in, out/2] on load,
  weight_scale [out, in/group_size], in_features % group_size == 0, `pre_quant_scale` read for the unfused o_proj and
  down_proj; the fused qkv and gate_up loaders read none, so it must be folded into the norms there), W8A16/W4A16
  per channel -> WeightOnlyQuantLinearMethod (int8 weight, weight_scale [out]). Anything else, W8A8 SmoothQuant
  included, raises "unsupported quant mode". Llama and Qwen2 fuse q/k/v and gate/up.

Usage: python3 benchmarks/quantize/check_export.py [REPORT.json ...]   (default: the committed *.json here)
Exit status 0 when every export of the operator's current program passes (a run that needed a GPU it did not have is
skipped), 1 otherwise. Runs of another program (the baseline) or of configs the operator does not map only report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

QUANT_ALGO = {"W8A16", "W4A16", "W4A16_AWQ", "W4A8_AWQ", "W8A16_GPTQ", "W4A16_GPTQ", "W8A8_SQ_PER_CHANNEL",
              "W8A8_SQ_PER_TENSOR_PLUGIN", "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN",
              "W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN", "W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN",
              "W4A8_QSERVE_PER_GROUP", "W4A8_QSERVE_PER_CHANNEL", "FP8", "FP8_PER_CHANNEL_PER_TOKEN",
              "FP8_BLOCK_SCALES", "MIXED_PRECISION", "NVFP4", "W4A8_NVFP4_FP8", "W4A8_MXFP4_FP8",
              "W4A8_MXFP4_MXFP8", "W4A16_MXFP4", "NO_QUANT"}  # mode.py QUANT_ALGO_LIST (INT8 left out)
KV_CACHE_QUANT_ALGO = {"FP8", "INT8", "NVFP4"}
# The quant_algo values get_quant_method gives a linear method for (and those this check knows the tensors of).
LINEAR_METHOD = {"FP8": "FP8QDQLinearMethod", "NVFP4": "NVFP4LinearMethod", "W4A16_AWQ": "W4A16_AWQ_LinearMethod",
                 "W8A16": "WeightOnlyQuantLinearMethod", "W4A16": "WeightOnlyQuantLinearMethod",
                 "FP8_PER_CHANNEL_PER_TOKEN": "FP8RowwiseLinearMethod",
                 "FP8_BLOCK_SCALES": "FP8BlockScalesLinearMethod",
                 "W4A8_AWQ": "W4A8_AWQ_LinearMethod", "W4A8_NVFP4_FP8": "W4A8NVFP4FP8LinearMethod",
                 "W4A8_MXFP4_FP8": "W4A8MXFP4FP8LinearMethod", "W4A8_MXFP4_MXFP8": "W4A8MXFP4MXFP8LinearMethod"}
FUSED = {"q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"}  # qkv_proj / gate_up_proj in TensorRT-LLM


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _excluded(name: str, exclude: list[str]) -> bool:
    # QuantConfig.is_module_excluded_from_quantization: fnmatch against each pattern.
    from fnmatch import fnmatchcase
    return any(fnmatchcase(name, pattern) for pattern in exclude)


def _linears(tensors: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The linear modules of the checkpoint (a `.weight` of two dimensions, or a packed one) with their tensors."""
    modules: dict[str, dict[str, Any]] = {}
    for name, (dtype, shape) in tensors.items():
        module, _, leaf = name.rpartition(".")
        modules.setdefault(module, {})[leaf] = (dtype, shape)
    return {m: t for m, t in modules.items()
            if "weight" in t and len(t["weight"][1]) == 2 and not m.endswith(("embed_tokens", "norm"))}


def check_linear(algo: str, group_size: int | None, module: str, t: dict[str, Any],
                 in_out: tuple[int, int]) -> list[str]:
    """Problems of one quantized linear's tensors for the loader's linear method of `algo`."""
    problems: list[str] = []
    short = module.rsplit(".", 1)[-1]
    in_f, out_f = in_out
    dtype, shape = t["weight"]

    def scalar(leaf: str, required: bool = True) -> None:
        if leaf not in t:
            if required:
                problems.append(f"{module}: no {leaf}")
        elif _numel(t[leaf][1]) != 1:
            problems.append(f"{module}.{leaf} {t[leaf][1]} is not a scalar")

    if algo == "FP8":
        if dtype != "F8_E4M3" or shape != [out_f, in_f]:
            problems.append(f"{module}.weight {dtype}{shape}: FP8QDQ wants F8_E4M3[{out_f}, {in_f}]")
        scalar("weight_scale")
        scalar("input_scale", required=False)  # absent: dynamic quantization
    elif algo == "NVFP4":
        if dtype != "U8" or shape != [out_f, in_f // 2]:
            problems.append(f"{module}.weight {dtype}{shape}: NVFP4 wants U8[{out_f}, {in_f // 2}] (packed e2m1)")
        ws = t.get("weight_scale")
        if ws is None or ws[0] != "F8_E4M3" or ws[1] != [out_f, in_f // 16]:
            problems.append(f"{module}.weight_scale {ws}: NVFP4 asserts float8_e4m3fn [{out_f}, {in_f // 16}]")
        scalar("weight_scale_2")
        scalar("input_scale")  # alpha = input_scale * weight_scale_2: required
        if in_f % 16:
            problems.append(f"{module}: in_features {in_f} not a multiple of NVFP4's 16")
    elif algo == "W4A16_AWQ":
        assert group_size  # checked once for the export
        if dtype not in ("U8", "I8") or shape != [out_f // 2, in_f]:
            problems.append(f"{module}.weight {dtype}{shape}: W4A16_AWQ wants int4 packed [{out_f // 2}, {in_f}] "
                            f"(loaded transposed as [in, out/2])")
        if in_f % group_size:
            problems.append(f"{module}: in_features {in_f} % group_size {group_size} != 0 (ValueError on load)")
        ws = t.get("weight_scale")
        if ws is None or ws[1] != [out_f, in_f // group_size]:
            problems.append(f"{module}.weight_scale {ws}: wants [{out_f}, {in_f // group_size}]")
        if short in FUSED and "pre_quant_scale" in t:
            problems.append(f"{module}.pre_quant_scale: the fused qkv/gate_up loader ignores it (not folded)")
        if short not in FUSED and "pre_quant_scale" not in t:
            problems.append(f"{module}: no pre_quant_scale, which the unfused loader reads (KeyError)")
        if "pre_quant_scale" in t and t["pre_quant_scale"][1] != [in_f]:
            problems.append(f"{module}.pre_quant_scale {t['pre_quant_scale'][1]} is not [{in_f}]")
    elif algo in ("W8A16", "W4A16"):
        want = [out_f, in_f] if algo == "W8A16" else [out_f // 2, in_f]
        if dtype not in ("I8", "U8") or shape != want:
            problems.append(f"{module}.weight {dtype}{shape}: weight-only wants int8 {want}")
        if "weight_scale" not in t or t["weight_scale"][1] != [out_f]:
            problems.append(f"{module}.weight_scale {t.get('weight_scale')}: per channel wants [{out_f}]")
    return problems


def check_export(export: dict[str, Any], source_tensors: dict[str, Any] | None) -> tuple[bool, list[str], list[str]]:
    """(passes, problems, notes) of one export."""
    problems: list[str] = []
    notes: list[str] = []
    files = export.get("files", {})
    hf = export.get("hf_quant_config")
    if hf is None:
        problems.append("no hf_quant_config.json: the loader would fall back to config.json's quantization_config, "
                        "which load_hf_quant_config reads only for fp8 block / mxfp4 / compressed-tensors")
        return False, problems, notes
    if "quantization" not in hf:
        return False, ["hf_quant_config.json has no 'quantization' (KeyError in load_modelopt_quant_config)"], notes
    q = hf["quantization"]
    algo = q.get("quant_algo")
    algo = "FP8_BLOCK_SCALES" if algo == "fp8_pb_wo" else algo
    kv = q.get("kv_cache_quant_algo")
    group_size = q.get("group_size")
    exclude = q.get("exclude_modules") or []
    notes.append(f"quant_algo={algo} kv_cache_quant_algo={kv} group_size={group_size} exclude_modules={exclude}")
    if algo not in QUANT_ALGO:
        problems.append(f"quant_algo {algo!r} is no QuantAlgo of QUANT_ALGO_LIST")
    elif algo not in LINEAR_METHOD:
        problems.append(f"quant_algo {algo}: get_quant_method has no linear method for it ('unsupported quant mode')")
    else:
        notes.append(f"linear method: {LINEAR_METHOD[algo]}")
    if kv is not None and kv not in KV_CACHE_QUANT_ALGO:
        problems.append(f"kv_cache_quant_algo {kv!r} not in KV_CACHE_QUANT_ALGO_LIST")
    if algo == "W4A16_AWQ" and not group_size:
        return False, ["W4A16_AWQ without group_size: W4A16_AWQ_LinearMethod divides by it"], notes
    if algo == "NVFP4":
        if group_size != 16:
            problems.append(f"NVFP4 group_size {group_size}: NVFP4LinearMethod scales every 16 inputs")
        notes.append("NVFP4 GEMMs (nvfp4_gemm, cuBLASLt/CuTe DSL FP4) need Blackwell (SM100+): not servable on Hopper")
    for name in ("config.json", "tokenizer_config.json"):
        if name not in files:
            problems.append(f"no {name}")
    if not any(f.endswith(".safetensors") for f in files):
        problems.append("no safetensors weights")
    if ".complete" not in files:
        problems.append("no .complete marker")
    arch = export.get("architectures") or []
    if not set(arch) & {"LlamaForCausalLM", "Qwen2ForCausalLM"}:
        problems.append(f"architectures {arch}: not a Llama/Qwen2 model of the PyTorch backend")

    tensors = export.get("tensors", {})
    linears = _linears(tensors)
    src_linears = _linears(source_tensors) if source_tensors else {}
    quantized = 0
    for module, t in sorted(linears.items()):
        src = src_linears.get(module, {}).get("weight")
        if src is None:
            problems.append(f"{module}: not in the source checkpoint")
            continue
        out_f, in_f = src[1]
        if _excluded(module, exclude):
            if t["weight"][0] not in ("BF16", "F16") or "weight_scale" in t:
                problems.append(f"{module} is in exclude_modules but its weight is {t['weight'][0]}")
            continue
        if t["weight"][0] in ("BF16", "F16", "F32"):
            if algo in LINEAR_METHOD:
                problems.append(f"{module}: not excluded, yet its weight is {t['weight'][0]} (the loader expects "
                                f"{algo} tensors)")
            continue
        quantized += 1
        if algo in LINEAR_METHOD:
            problems += check_linear(algo, group_size, module, t, (in_f, out_f))
    if "lm_head" in linears and not _excluded("lm_head", exclude):
        problems.append("lm_head is not in exclude_modules")
    missing = set(src_linears) - set(linears)
    if missing:
        problems.append(f"linears missing from the export: {sorted(missing)[:4]}")
    notes.append(f"{quantized} quantized linears, {len(linears) - quantized} left in 16 bits")
    return not problems, problems, notes


def check_report(path: Path) -> tuple[bool, list[str]]:
    report = json.loads(path.read_text())
    lines = [f"== {path.name}: {report.get('nvidia_smi')} {report.get('date')}"]
    ok = True
    sources = {}
    for arch in report.get("checkpoints", {}):
        sources[arch] = report["checkpoints"][arch].get("tensors")
    for run in report["runs"]:
        label = f"{run['env']:8} {run['arch']:6} {run['config']:30} {','.join(run.get('precisions') or ['-']):10}"
        operator_program = report.get("programs", {}).get(run["env"]) == "operator's QUANTIZE_PROGRAM"
        if run["rc"] != 0 and "Found no NVIDIA driver" in (run.get("stderr_tail") or ""):
            lines.append(f"SKIP {label} needs a GPU (this run had none)")
            continue
        if run["rc"] != 0:
            last = [ln for ln in (run.get("stderr_tail") or "").strip().splitlines() if ln.strip()][-1:]
            lines.append(f"FAIL {label} quantize exited {run['rc']}: {last[0][:160] if last else ''}")
            ok = ok and not (operator_program and run.get("precisions"))
            continue
        passes, problems, notes = check_export(run["export"], sources.get(run["arch"]))
        lines.append(f"{'PASS' if passes else 'FAIL'} {label} {notes[0]}")
        lines += [f"       - {p}" for p in problems[:8]] + [f"       . {n}" for n in notes[1:]]
        ok = ok and (passes or not (operator_program and run.get("precisions")))
    return ok, lines


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(Path(__file__).parent.glob("*.json"))
    ok = True
    for path in paths:
        passes, lines = check_report(path)
        print("\n".join(lines))
        ok = ok and passes
    print("every export of the operator's program that ran passes" if ok else
          "some export of the operator's program fails")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
