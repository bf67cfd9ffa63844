"""Runs the operator's quantize Job program for real: ModelOpt, torch and transformers on a GPU.

It builds tiny random-weight checkpoints of the two distilled architectures (Qwen2, Llama) from a config and a
locally built tokenizer (nothing is downloaded), saves them in bf16 as Hugging Face checkpoints, and for each ModelOpt
config the operator maps a precision to runs `QUANTIZE_PROGRAM` exactly as the quantize Job's container does:

    python3 -c PROGRAM <src> <out> <config_name> '' 0 0

Per (environment, architecture, config) it records the exit code, the output's tail, the time, the exported files
with their sizes, `hf_quant_config.json`, config.json's `quantization_config` and every safetensors tensor's name,
dtype and shape (read from the file header). It prints the report as JSON and writes it, with the full log, under
--out (`$OUT` on the device machine). `check_export.py` checks the report against TensorRT-LLM's loader.

Usage (README.md gives the device call): python3 benchmarks/quantize/run_gpu.py --out DIR
    [--env NAME=PYTHONPATH ...] [--program NAME=FILE ...] [--only NAME:CONFIG ...] [--extra CONFIG ...] [--jobs N]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))

QUANTIZE_PY = REPO / "operator/deepseek_operator/render/quantize.py"


def _from_source() -> tuple[dict[str, str], str]:
    """MODELOPT_CONFIG ({precision value: config name}) and QUANTIZE_PROGRAM read from quantize.py's source, for when
    the operator package does not import (a half-made edit elsewhere in it, or no pydantic)."""
    import ast

    values: dict[str, Any] = {}
    for node in ast.parse(QUANTIZE_PY.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id == "QUANTIZE_PROGRAM":
                values["program"] = ast.literal_eval(node.value)
            elif node.targets[0].id == "MODELOPT_CONFIG" and isinstance(node.value, ast.Dict):
                values["config"] = {k.attr.lower(): ast.literal_eval(v) for k, v in zip(node.value.keys,
                                    node.value.values, strict=True) if isinstance(k, ast.Attribute)}
    return values["config"], values["program"]


try:
    from deepseek_operator.render.quantize import MODELOPT_CONFIG as _CONFIG
    from deepseek_operator.render.quantize import QUANTIZE_PROGRAM

    MODELOPT_CONFIG = {p.value: c for p, c in _CONFIG.items()}
    SOURCE = "import deepseek_operator.render.quantize"
except Exception as e:  # any import failure: read the source instead
    MODELOPT_CONFIG, QUANTIZE_PROGRAM = _from_source()
    SOURCE = f"parsed {QUANTIZE_PY.relative_to(REPO)} ({e!r} on import)"
assert _from_source() == (MODELOPT_CONFIG, QUANTIZE_PROGRAM)

# Shapes chosen so every block size divides them: AWQ groups of 128, NVFP4 blocks of 16, FP8 per tensor. The distills
# use grouped-query attention (2 KV heads here) and Qwen2's q/k/v carry a bias.
COMMON = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
          "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 2048,
          "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "rope_theta": 10000.0}
ARCHS = {"qwen2": "Qwen2", "llama": "Llama"}
# The tokenizer's vocabulary: the words of the program's built-in calibration prompts, and a few more.
TEXT = ("the capital of france is explain theory relativity in simple terms write a python function that reverses "
        "list what 17 times 23 think step by . ? , paris einstein light speed def return")


def build_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    vocab = {tok: i for i, tok in enumerate([*specials, *dict.fromkeys(TEXT.split())])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")
    fast.save_pretrained(str(folder))


def build_model(arch: str, folder: Path) -> dict[str, Any]:
    import torch
    import transformers

    torch.manual_seed(0)
    config_cls = getattr(transformers, f"{ARCHS[arch]}Config")
    model_cls = getattr(transformers, f"{ARCHS[arch]}ForCausalLM")
    config = config_cls(**COMMON, bos_token_id=1, eos_token_id=2, pad_token_id=3)
    model = model_cls(config).to(torch.bfloat16)
    with torch.no_grad():  # random init of the norms too, so AWQ/SmoothQuant folding has something to fold
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
    model.save_pretrained(str(folder), safe_serialization=True)
    build_tokenizer(folder)
    return {"arch": arch, "params": sum(p.numel() for p in model.parameters()), "files": list_files(folder),
            "transformers": transformers.__version__, "tensors": describe_export(folder)["tensors"]}


def list_files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def safetensors_header(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(size))


def describe_export(folder: Path) -> dict[str, Any]:
    info: dict[str, Any] = {"files": list_files(folder)}
    hf_quant = folder / "hf_quant_config.json"
    info["hf_quant_config"] = json.loads(hf_quant.read_text()) if hf_quant.exists() else None
    config = folder / "config.json"
    if config.exists():
        data = json.loads(config.read_text())
        info["quantization_config"] = data.get("quantization_config")
        info["config_dtype"] = {k: data[k] for k in ("torch_dtype", "dtype") if k in data}
        info["architectures"] = data.get("architectures")
    tensors: dict[str, Any] = {}
    for st in sorted(folder.glob("*.safetensors")):
        for name, meta in safetensors_header(st).items():
            if name != "__metadata__":
                tensors[name] = [meta["dtype"], meta["shape"]]
    info["tensors"] = tensors
    return info


def run_program(env_name: str, pythonpath: str, program: str, src: Path, out: Path, config_name: str,
                timeout: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}
    shutil.rmtree(out, ignore_errors=True)
    start = time.monotonic()
    try:
        proc = subprocess.run(["python3", "-c", program, str(src), str(out), config_name, "", "0", "0"],
                              env=env, capture_output=True, text=True, timeout=timeout)
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        rc = 124
        stdout = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        stderr = (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
    result: dict[str, Any] = {"env": env_name, "config": config_name, "rc": rc,
                              "seconds": round(time.monotonic() - start, 1),
                              "stdout_tail": stdout[-1500:], "stderr_tail": stderr[-3000:],
                              "_log": f"$ {config_name} {src.name} [{env_name}] rc={rc}\n{stdout}\n{stderr}\n"}
    if rc == 0 and out.is_dir():
        result["export"] = describe_export(out)
    return result


def versions(pythonpath: str) -> dict[str, Any]:
    code = ("import json, importlib.metadata as m\n"
            "r = {}\n"
            "for n in ('torch', 'transformers', 'nvidia-modelopt', 'tokenizers', 'huggingface_hub', 'accelerate',"
            " 'safetensors', 'pydantic', 'triton'):\n"
            "    try: r[n] = m.version(n)\n"
            "    except Exception as e: r[n] = None\n"
            "try:\n"
            "    import torch; r['cuda'] = torch.version.cuda\n"
            "    r['device'] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'\n"
            "    r['capability'] = list(torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None\n"
            "except Exception as e: r['torch_error'] = repr(e)\n"
            "print(json.dumps(r))\n")
    proc = subprocess.run(["python3", "-c", code], env={**os.environ, "PYTHONPATH": pythonpath},
                          capture_output=True, text=True)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {"error": proc.stderr[-2000:]}


def precompile(pythonpath: str, timeout: int) -> dict[str, Any]:
    """Builds ModelOpt's CUDA extensions once, in parallel, so the jobs below load them (as a second Job would)."""
    code = ("import sys, time; t = time.monotonic()\n"
            "from modelopt.torch.quantization import extensions as e\n"
            "ext = getattr(e, sys.argv[1])(raise_if_failed=False)\n"
            "print('LOADED' if ext is not None else 'FAILED', round(time.monotonic() - t, 1))\n")
    env = {**os.environ, "PYTHONPATH": pythonpath}
    procs = {name: subprocess.Popen(["python3", "-c", code, name], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
             for name in ("get_cuda_ext", "get_cuda_ext_fp8", "get_cuda_ext_mx")}
    result = {}
    for name, proc in procs.items():
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
            output += "\nTIMEOUT"
        result[name] = output[-800:]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT", "benchmarks/quantize/out"))
    parser.add_argument("--work", default="/tmp/quantize-bench")
    parser.add_argument("--env", action="append", default=[],
                        help="NAME=PYTHONPATH of a software environment to run the program in (repeatable); "
                             "the first also builds the checkpoints. Default: this process's PYTHONPATH")
    parser.add_argument("--extra", action="append", default=[],
                        help="another ModelOpt config name to run besides the operator's (repeatable)")
    parser.add_argument("--only", action="append", default=[],
                        help="NAME:CONFIG (repeatable): environment NAME runs exactly these configs")
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--program", action="append", default=[],
                        help="NAME=FILE: environment NAME runs the program in FILE instead of the operator's")
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--timeout", type=int, default=300)
    parser.add_argument("--precompile", action="store_true", help="build ModelOpt's CUDA extensions first")
    parser.add_argument("--tag", default="", help="a label stored in the report")
    args = parser.parse_args()

    envs = [tuple(e.split("=", 1)) for e in args.env] or [("default", os.environ.get("PYTHONPATH", ""))]
    programs = {name: Path(file).read_text() for name, file in (p.split("=", 1) for p in args.program)}
    out_dir, work = Path(args.out), Path(args.work)
    out_dir.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    report: dict[str, Any] = {"tag": args.tag, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                              "host": platform.node(), "python": platform.python_version(),
                              "programs": {name: "operator's QUANTIZE_PROGRAM" if name not in programs else
                                           dict(p.split("=", 1) for p in args.program)[name] for name, _ in envs},
                              "operator_config": MODELOPT_CONFIG, "operator_source": SOURCE,
                              "model_config": COMMON, "environments": {}, "checkpoints": {}, "runs": []}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        report["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        report["nvidia_smi"] = repr(e)
    for name, pythonpath in envs:
        report["environments"][name] = {"PYTHONPATH": pythonpath, **versions(pythonpath)}

    # The checkpoints, built in the first environment (a subprocess, so that its transformers is the one used).
    archs = [a for a in args.archs.split(",") if a]
    build = ("import json, sys; sys.path.insert(0, sys.argv[1]); import run_gpu as r; from pathlib import Path\n"
             "print(json.dumps([r.build_model(a, Path(sys.argv[2]) / a) for a in sys.argv[3:]]))\n")
    proc = subprocess.run(["python3", "-c", build, str(Path(__file__).parent), str(work / "src"), *archs],
                          env={**os.environ, "PYTHONPATH": envs[0][1]}, capture_output=True, text=True)
    if proc.returncode != 0:
        report["build_error"] = proc.stderr[-4000:]
        (out_dir / "report.json").write_text(json.dumps(report, indent=1))
        print(proc.stderr, file=sys.stderr)
        return 1
    for entry in json.loads(proc.stdout.strip().splitlines()[-1]):
        report["checkpoints"][entry["arch"]] = entry

    if args.precompile:
        t = time.monotonic()
        report["precompile"] = precompile(envs[0][1], timeout=min(args.timeout, 150))
        report["precompile"]["seconds"] = round(time.monotonic() - t, 1)

    configs = list(dict.fromkeys(MODELOPT_CONFIG.values()))
    extra = [c for c in args.extra if c not in configs]  # run in the first environment only
    only: dict[str, set[str]] = {}
    for pair in args.only:
        env_name, config_name = pair.split(":", 1)
        only.setdefault(env_name, set()).add(config_name)
    tasks = [(env_name, pythonpath, arch, config_name) for i, (env_name, pythonpath) in enumerate(envs)
             for arch in archs
             for config_name in sorted(only.get(env_name, configs + extra if i == 0 else configs))]
    log_parts: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_program, env_name, pythonpath, programs.get(env_name, QUANTIZE_PROGRAM),
                               work / "src" / arch,
                               work / "out" / env_name / arch / config_name, config_name, args.timeout):
                   (env_name, arch, config_name) for env_name, pythonpath, arch, config_name in tasks}
        for future in concurrent.futures.as_completed(futures):
            env_name, arch, config_name = futures[future]
            result = future.result()
            result["arch"] = arch
            result["precisions"] = [p for p, c in MODELOPT_CONFIG.items() if c == config_name]
            if env_name in programs and config_name == "INT8_WEIGHT_ONLY_CFG":
                result["precisions"] = ["int8"]  # the baseline program's mapping
            log_parts.append(result.pop("_log"))
            report["runs"].append(result)
            print(f"[{env_name}] {arch} {config_name}: rc={result['rc']} {result['seconds']}s", file=sys.stderr,
                  flush=True)
            (out_dir / "report.json").write_text(json.dumps(report, indent=1))  # so far, should the call be cut
    report["runs"].sort(key=lambda r: (r["env"], r["arch"], r["config"]))
    report["total_seconds"] = round(time.monotonic() - started, 1)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    (out_dir / "runs.log").write_text("\n".join(sorted(log_parts)))
    print(json.dumps({k: v for k, v in report.items() if k not in ("runs", "checkpoints")}, indent=1))
    for r in report["runs"]:
        quant = ((r.get("export") or {}).get("hf_quant_config") or {}).get("quantization")
        print(f"{r['env']:8} {r['arch']:6} {r['config']:22} rc={r['rc']:<4} {r['seconds']:6}s {json.dumps(quant)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
