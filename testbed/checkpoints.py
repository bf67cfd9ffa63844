"""Tiny stand-in checkpoints in a model-store PVC, written the way a platform team fills one: a Job that mounts
the PVC and writes each model folder (here a Hugging Face layout of a config.json, a tokenizer.json and a
tokenizer_config.json, no weights: the testbed's TensorRT-LLM stand-in loads nothing more).

The tokenizer is real, and small: a `tokenizers` WordLevel model with a Whitespace pre-tokenizer and an unknown
token, over ordinary English words and DeepSeek-R1's special tokens (BOS and EOS special, the turn markers and
<think>/</think> not, as in R1's own tokenizer.json), so the serving stand-in counts prompt tokens with the
checkpoint's own tokenizer. tokenizer_config.json is shaped like DeepSeek-R1-Distill's: add_bos_token true and a
chat template that starts with `{{ bos_token }}`, so a prompt rendered with it and then tokenized (which adds BOS
again) starts with two BOS tokens, as on the real model.

Usage: python -m testbed.checkpoints NAMESPACE [--claim model-store] [PATH ...]
(default paths: every `spec.model.source.pvc.path` the examples name).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from testbed.cluster import KUBECONFIG, REPO

LOADER_IMAGE = "busybox:1.36"
JOB_NAME = "model-store-loader"

# DeepSeek-R1's special tokens (its tokenizer_config.json / tokenizer.json), written with escapes: U+FF5C is the
# full-width vertical line, U+2581 the SentencePiece space.
BOS = "<\uff5cbegin\u2581of\u2581sentence\uff5c>"
EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"
USER, ASSISTANT = "<\uff5cUser\uff5c>", "<\uff5cAssistant\uff5c>"
UNK = "[UNK]"
_WORDS_TEXT = """
the a an and or but if then of to in on at by for with from as is are was were be been it this that these those i
you he she we they me him her us them my your our their what which who when where why how not no yes can could will
would should may might must do does did have has had hello hi please thank thanks explain tell write say answer
question word words user model time day year people way thing world life hand part place case week point number
machine learning deep seek one two three four five six seven eight nine ten first last next new old good great small
large big long short high low many much more most some any all each every other same different here there now today
very also just only even again about into over after before under between
"""
WORDS = _WORDS_TEXT.split()
PUNCTUATION = [".", ",", "?", "!", ":", ";", "'", '"', "(", ")", "-", "[", "]", "/"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(system_prompt='') %}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}"
    "{% endif %}{% endfor %}{{ ns.system_prompt }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '" + USER + "' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '" + ASSISTANT + "' + content + '" + EOS + "' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '" + ASSISTANT + "<think>\\n' }}{% endif %}")


def tokenizer_files() -> dict[str, str]:
    """tokenizer.json and tokenizer_config.json of the stand-in checkpoints (ASCII JSON: escapes for R1's tokens)."""
    vocab = {UNK: 0}
    for word in [*WORDS, *(w.capitalize() for w in WORDS), *PUNCTUATION]:
        vocab.setdefault(word, len(vocab))
    added = [(UNK, True), (BOS, True), (EOS, True), (USER, False), (ASSISTANT, False), ("<think>", False),
             ("</think>", False)]
    added_tokens = []
    for content, special in added:
        token_id = vocab.setdefault(content, len(vocab))
        added_tokens.append({"id": token_id, "content": content, "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": special})
    tokenizer = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added_tokens,
                 "normalizer": None, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None,
                 "decoder": None, "model": {"type": "WordLevel", "vocab": vocab, "unk_token": UNK}}

    def added_token(content: str) -> dict[str, object]:
        return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True, "rstrip": False,
                "single_word": False}

    config = {"add_bos_token": True, "add_eos_token": False, "bos_token": added_token(BOS),
              "eos_token": added_token(EOS), "pad_token": added_token(EOS), "unk_token": None,
              "clean_up_tokenization_spaces": False, "legacy": True, "model_max_length": 16384,
              "tokenizer_class": "LlamaTokenizerFast", "chat_template": CHAT_TEMPLATE}
    return {"tokenizer.json": json.dumps(tokenizer), "tokenizer_config.json": json.dumps(config)}


def example_paths(claim: str) -> list[str]:
    paths = set()
    for example in sorted((REPO / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(example.read_text()):
            pvc = (((doc or {}).get("spec") or {}).get("model") or {}).get("source", {}).get("pvc") or {}
            if pvc.get("claimName") == claim:
                paths.add(pvc.get("path", "/"))
    return sorted(paths)


def loader_job(claim: str, paths: list[str]) -> dict[str, object]:
    lines = ["set -eu"]
    for path in paths:
        folder = "/store" + path.rstrip("/")
        # max_position_embeddings: DeepSeek-R1's (its config.json); the LLM API's max_seq_len defaults to it.
        config_json = json.dumps({"model_type": "testbed-tiny", "_name_or_path": path, "architectures": ["Tiny"],
                                  "max_position_embeddings": 163840})
        lines += [f"mkdir -p {shlex.quote(folder)}",
                  f"printf '%s' {shlex.quote(config_json)} > {shlex.quote(folder + '/config.json')}"]
        lines += [f"printf '%s' {shlex.quote(text)} > {shlex.quote(folder + '/' + name)}"
                  for name, text in tokenizer_files().items()]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": JOB_NAME},
            "spec": {"backoffLimit": 2, "template": {"spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                # The servers' user (spec.pods' default) writes the store: the namespace enforces `restricted`.
                "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "load", "image": LOADER_IMAGE, "command": ["sh", "-c", "\n".join(lines)],
                                "securityContext": {"allowPrivilegeEscalation": False,
                                                    "readOnlyRootFilesystem": True,
                                                    "capabilities": {"drop": ["ALL"]}},
                                "volumeMounts": [{"name": "store", "mountPath": "/store"}]}],
                "volumes": [{"name": "store", "persistentVolumeClaim": {"claimName": claim}}]}}}}


def seed(namespace: str, claim: str = "model-store", paths: list[str] | None = None,
         api: client.ApiClient | None = None, timeout: float = 120) -> None:
    """Runs the loader Job in `namespace` and waits for it to complete."""
    api = api or config.new_client_from_config(str(KUBECONFIG))
    batch = client.BatchV1Api(api)
    job = loader_job(claim, paths if paths is not None else example_paths(claim))
    try:
        batch.create_namespaced_job(namespace, job)
    except ApiException as e:
        if e.status != 409:
            raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = batch.read_namespaced_job_status(JOB_NAME, namespace).status
        if status.succeeded:
            return
        if status.failed and status.failed > 2:
            raise RuntimeError(f"{namespace}/{JOB_NAME} failed; see its pod's status")
        time.sleep(0.5)
    raise TimeoutError(f"{namespace}/{JOB_NAME} did not complete within {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("namespace")
    parser.add_argument("--claim", default="model-store")
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args(argv)
    seed(args.namespace, args.claim, args.paths or None)
    print(f"checkpoints written to {args.namespace}/{args.claim}: {', '.join(args.paths or example_paths(args.claim))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

