"""What the serving pod's frontend adds: latency per request and to the first token, and how many concurrent
streams it holds, for the working tree's frontend ("new") and the one committed at --old-ref ("old", HEAD by
default: run before committing a change, the two pair the change against what it replaces; 73d1110 is the stdlib
http.server + urllib one that the aiohttp frontend replaced), both in front of the same fake Triton
(tests/fake_triton.py: the llmapi model's cumulative streams with a fixed delay per token).

    .venv/bin/python benchmarks/frontend_overhead.py [--old-ref REF] [--out benchmarks/frontend/overhead-<date>.txt]

It starts everything itself on free loopback ports and stops it on exit, even when killed: each child dies with
this process (PR_SET_PDEATHSIG), the fake Triton also stops by itself after --budget seconds, and an alarm ends
the run after --budget seconds. Request counts and stream levels are bounded. Latency: the same requests, one at
a time, straight to the fake Triton and through each frontend, interleaved; "added" is the frontend's percentile
less the direct one; a bare aiohttp hop (on asyncio's loop, and on uvloop's where installed) is the floor of any
proxy. CPU: each proxied path alone, the proxy process's CPU time per request (/proc/PID/task/*/schedstat), which
other load on the machine changes far less than latency. Streams: N streamed chats at once (N = 64, 128, 256, ...
up to --max-streams); a level is held when every stream answers in full without an error; the ramp stops at the
first level not held. Goals from the issue: at most 1 ms added at p50, at least 256 concurrent streams.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import ctypes
import datetime
import importlib.util
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))
sys.path.insert(0, str(ROOT))  # tests.fake_triton

from deepseek_operator.frontend.chat import ChatFormat  # noqa: E402
from tests.fake_triton import write_checkpoint  # noqa: E402

FRONTEND_DIR = "operator/deepseek_operator/frontend"
MODEL = "deepseek-r1"
MESSAGES = [{"role": "user", "content": "w1 w2 w3 w4 w5 w6 w7 w8"}]
CHILDREN: list[subprocess.Popen[bytes]] = []


# ------------------------------------------------------------------------------------------------ processes

def _die_with_parent() -> None:
    """In the child: a SIGKILL when the benchmark dies, however it dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stop_children() -> None:
    for proc in CHILDREN:
        if proc.poll() is None:
            proc.terminate()
    for proc in CHILDREN:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    CHILDREN.clear()


def _on_signal(signum: int, frame: Any) -> None:
    _stop_children()
    raise SystemExit(128 + signum)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start(args: list[str], pythonpath: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{pythonpath}{os.pathsep}{ROOT}", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, *args], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            preexec_fn=_die_with_parent)
    CHILDREN.append(proc)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    CHILDREN.remove(proc)


async def _wait_live(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(400):
            if proc.poll() is not None:
                raise RuntimeError(f"{url} exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/health/live") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} never came up: {log.read_text()[-2000:]}")


def start_fake(work: Path, tokens: int, delay_s: float, budget_s: float) -> tuple[subprocess.Popen[bytes], str]:
    log = work / f"fake-{tokens}-{delay_s}.log"
    proc = _start(["-m", "tests.fake_triton", "--port", "0", "--tokens", str(tokens),
                   "--token-delay", str(delay_s), "--exit-after", str(budget_s)], ROOT / "operator", log)
    for _ in range(400):
        text = log.read_text() if log.exists() else ""
        if "listening on" in text:
            return proc, f"http://127.0.0.1:{text.split('listening on')[1].split()[0]}"
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"the fake Triton did not start: {log.read_text() if log.exists() else ''}")


def old_package(work: Path, ref: str) -> Path:
    """The frontend as committed at `ref` (every file of its folder there), as a package of its own."""
    root = work / "old"
    package = root / "deepseek_operator" / "frontend"
    package.mkdir(parents=True)
    (root / "deepseek_operator" / "__init__.py").write_text("")
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{ref}:{FRONTEND_DIR}"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in names:
        if name.endswith(".py"):
            source = subprocess.run(["git", "show", f"{ref}:{FRONTEND_DIR}/{name}"], cwd=ROOT, check=True,
                                    capture_output=True).stdout
            (package / name).write_bytes(source)
    return root


def event_loop_of(log: Path) -> str:
    """The event loop a frontend said it runs on (one that says nothing ran on asyncio's own)."""
    text = log.read_text() if log.exists() else ""
    return "uvloop" if "on uvloop" in text else "asyncio"


async def start_frontend(kind: str, work: Path, triton: str, checkpoint: Path,
                         old_root: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    port = _free_port()
    log = work / f"{kind}-{port}.log"
    common = ["-m", "deepseek_operator.frontend", "--host", "127.0.0.1", "--port", str(port), "--triton-url", triton,
              "--served-model", MODEL, "--checkpoint", str(checkpoint), "--decoupled", "--default-max-tokens", "64"]
    counted = ["--metrics-port", str(_free_port()), "--revision", "bench", "--max-seq-len", "4096"]
    if kind == "new":
        proc = _start([*common, *counted], ROOT / "operator", log)
    elif (old_root / "deepseek_operator" / "frontend" / "metrics.py").exists():  # an aiohttp one: the same flags
        proc = _start([*common, *counted], old_root, log)
    else:  # the stdlib one had no metrics port, revision or context check
        proc = _start(common, old_root, log)
    url = f"http://127.0.0.1:{port}"
    await _wait_live(url, proc, log)
    for _ in range(100):  # the start line comes just after the ports are bound
        if "frontend on" in log.read_text() or "listening" in log.read_text():
            break
        await asyncio.sleep(0.05)
    return proc, url, event_loop_of(log)


def _loop_factory(loop: str) -> Any:
    if loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def _uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def bare_proxy(port: int, triton: str, budget_s: float, loop: str) -> None:
    """The floor: the least an aiohttp hop can do (forward the request, stream the answer back), with no parsing
    and no counting, on asyncio's own event loop or uvloop's. Run as a child:
    `frontend_overhead.py --bare-proxy PORT TRITON --bare-loop asyncio|uvloop`."""
    from aiohttp import web

    async def serve() -> None:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)

        async def forward(request: web.Request) -> web.StreamResponse:
            async with session.request(request.method, triton + request.raw_path, data=await request.read(),
                                       headers={"Content-Type": "application/json"}) as upstream:
                response = web.StreamResponse(status=upstream.status,
                                              headers={"Content-Type": upstream.headers["Content-Type"]})
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response

        async def live(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/health/live", live)
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.sleep(budget_s)

    with asyncio.Runner(loop_factory=_loop_factory(loop)) as runner:
        runner.run(serve())


async def start_bare(work: Path, triton: str, budget_s: float, loop: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    log = work / f"bare-{loop}-{port}.log"
    proc = _start([str(Path(__file__).resolve()), "--bare-proxy", str(port), triton, "--bare-loop", loop,
                   "--budget", str(budget_s)], ROOT / "operator", log)
    url = f"http://127.0.0.1:{port}"
    await _wait_live(url, proc, log)
    return proc, url


# ------------------------------------------------------------------------------------------------ requests

@dataclass
class Target:
    name: str
    path: str
    body: dict[str, Any]
    openai: bool  # OpenAI's chunks (else Triton's events)
    stream: bool
    base: str = ""
    pid: int = 0  # the proxy's process (0: straight to the fake Triton)
    e2e: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    errors: int = 0
    cpu_ms: float = 0.0  # the proxy's CPU time per request (all its threads), measured apart
    wait_ms: float = 0.0  # the proxy's time runnable but not running (waiting for a core) per request


def _has_text(payload: bytes, openai: bool) -> bool:
    try:
        event = json.loads(payload)
    except ValueError:
        return False
    if "error" in event:
        raise RuntimeError(str(event["error"]))
    if not openai:
        return bool(event.get("text_output"))
    choices = event.get("choices") or [{}]
    delta = choices[0].get("delta") or {}
    return bool(delta.get("content") or delta.get("reasoning_content") or choices[0].get("text"))


async def measure(session: aiohttp.ClientSession, target: Target, timeout_s: float) -> tuple[float, float]:
    """(end to end, to the first generated text) of one request, in seconds; raises on any failure."""
    started = time.perf_counter()
    first = 0.0
    async with session.post(f"{target.base}{target.path}", json=target.body,
                            timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {(await r.text())[:200]}")
        if not target.stream:
            data = await r.read()
            end = time.perf_counter()
            if b'"error"' in data:
                raise RuntimeError(data[:200].decode())
            return end - started, end - started
        buffer, done = b"", False
        async for chunk in r.content.iter_any():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    done = True
                elif _has_text(payload, target.openai) and not first:  # raises on an error event
                    first = time.perf_counter()
        end = time.perf_counter()
    if not first or (target.openai and not done):
        raise RuntimeError("the stream ended early")
    return end - started, first - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def latency(targets: list[Target], rounds: int, timeout_s: float) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for target in targets:  # warm each path (connections, caches) before counting
            for _ in range(5):
                await measure(session, target, timeout_s)
        for n in range(rounds):
            order = targets[n % len(targets):] + targets[:n % len(targets)]  # rotate: no path always goes first
            for target in order:
                try:
                    e2e, ttft = await measure(session, target, timeout_s)
                except (RuntimeError, aiohttp.ClientError, TimeoutError):
                    target.errors += 1
                    continue
                target.e2e.append(e2e)
                target.ttft.append(ttft)


def _schedstat(pid: int) -> tuple[int, int]:
    """(ns on a CPU, ns waiting for one) of all the threads of a process (/proc/PID/task/*/schedstat)."""
    run = wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            fields = (task / "schedstat").read_text().split()
            run, wait = run + int(fields[0]), wait + int(fields[1])
    return run, wait


async def cpu_per_request(targets: list[Target], requests: int, timeout_s: float) -> None:
    """Each proxied path alone: the proxy's CPU time per request, which other load on the machine barely changes
    (unlike its latency), and its time waiting for a core."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for target in targets:
            if not target.pid:
                continue
            for _ in range(5):
                await measure(session, target, timeout_s)
            run, wait = _schedstat(target.pid)
            done = 0
            for _ in range(requests):
                with contextlib.suppress(RuntimeError, aiohttp.ClientError, TimeoutError):
                    await measure(session, target, timeout_s)
                    done += 1
            run2, wait2 = _schedstat(target.pid)
            target.cpu_ms = (run2 - run) / 1e6 / max(1, done)
            target.wait_ms = (wait2 - wait) / 1e6 / max(1, done)


@dataclass
class Level:
    streams: int
    ok: int
    errors: int
    ttft_p50: float
    ttft_p99: float
    wall_s: float
    first_error: str = ""


async def one_level(base: str, streams: int, timeout_s: float) -> Level:
    target = Target("ramp", "/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "stream": True},
                    openai=True, stream=True, base=base)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    errors: list[str] = []
    ttfts: list[float] = []
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as session:
        async def run() -> None:
            try:
                _, ttft = await measure(session, target, timeout_s)
                ttfts.append(ttft)
            except (RuntimeError, aiohttp.ClientError, TimeoutError, OSError) as err:
                errors.append(f"{type(err).__name__}: {err}"[:160])
        await asyncio.gather(*(run() for _ in range(streams)))
    wall = time.perf_counter() - started
    return Level(streams, len(ttfts), len(errors), pct(ttfts, .5) if ttfts else 0, pct(ttfts, .99) if ttfts else 0,
                 wall, errors[0] if errors else "")


async def ramp(base: str, levels: list[int], timeout_s: float, deadline: float) -> list[Level]:
    out = []
    for streams in levels:
        if time.monotonic() + timeout_s > deadline:
            break
        level = await one_level(base, streams, timeout_s)
        out.append(level)
        if level.errors:
            break
        await asyncio.sleep(1.0)  # let sockets in TIME_WAIT and the servers settle
    return out


# ------------------------------------------------------------------------------------------------ report

def held(levels: list[Level]) -> int:
    return max((lv.streams for lv in levels if not lv.errors), default=0)


def report(args: argparse.Namespace, lat: dict[str, list[Target]], ramps: dict[str, list[Level]],
           started: datetime.datetime) -> str:
    ms = 1000.0
    out = [f"# frontend overhead benchmark — {started.isoformat(timespec='seconds')}",
           f"# machine: nproc={os.cpu_count()} python={platform.python_version()} {platform.platform()} "
           f"aiohttp={aiohttp.__version__} load average before: {args.load_before}",
           f"# new: the working tree's frontend, on {args.new_loop}; old: the one committed at {args.old_ref} "
           f"({args.old_commit}), on {args.old_loop}",
           f"# latency: {args.rounds} sequential requests per path, fake Triton {args.tokens} tokens at "
           f"{args.token_delay * ms:g} ms each; streams: {args.ramp_tokens} tokens at {args.ramp_delay * ms:g} ms "
           f"each; timeout {args.timeout:g} s", ""]
    out.append("## Latency, ms (added = through the frontend less straight to the fake Triton, same requests)")
    out.append(f"{'path':<44}{'e2e p50':>9}{'e2e p99':>9}{'ttft p50':>10}{'ttft p99':>10}"
               f"{'+e2e p50':>10}{'+e2e p99':>10}{'+ttft p50':>11}{'+ttft p99':>11}{'errors':>8}")
    added: dict[str, dict[str, float]] = {}
    for group, targets in lat.items():
        base = targets[0]
        for t in targets:
            if not t.e2e:
                out.append(f"{t.name:<44}{'(no answer)':>9}{t.errors:>80}")
                continue
            row = {"e2e50": pct(t.e2e, .5) * ms, "e2e99": pct(t.e2e, .99) * ms, "ttft50": pct(t.ttft, .5) * ms,
                   "ttft99": pct(t.ttft, .99) * ms}
            plus = {k: row[k] - pct(getattr(base, k[:-2] if k.startswith("e2e") else "ttft"), int(k[-2:]) / 100) * ms
                    for k in row}
            added[t.name] = plus
            mark = "" if t is not base else "  (baseline)"
            plus_text = ("".join(f"{plus[k]:>{w}.2f}" for k, w in (("e2e50", 10), ("e2e99", 10), ("ttft50", 11),
                                                                    ("ttft99", 11))) if t is not base
                         else f"{'':>42}")
            out.append(f"{t.name + mark:<44}{row['e2e50']:>9.2f}{row['e2e99']:>9.2f}{row['ttft50']:>10.2f}"
                       f"{row['ttft99']:>10.2f}{plus_text}{t.errors:>8}")
        out.append(f"  ({group})")
    out.append("")
    out.append(f"## The proxy's CPU time per request, ms ({args.cpu_requests} requests per path, one path at a time; "
               "wait = runnable but not running: the machine's other load)")
    out.append(f"{'path':<52}{'cpu':>8}{'wait':>8}")
    for targets in lat.values():
        for t in targets:
            if t.pid:
                out.append(f"{t.name:<52}{t.cpu_ms:>8.3f}{t.wait_ms:>8.3f}")
    out.append("")
    out.append("## Concurrent streamed chats (held: every stream answered in full, no error)")
    out.append(f"{'frontend':<10}{'streams':>8}{'ok':>7}{'errors':>8}{'ttft p50 ms':>13}{'ttft p99 ms':>13}"
               f"{'wall s':>8}  first error")
    for kind, levels in ramps.items():
        for lv in levels:
            out.append(f"{kind:<10}{lv.streams:>8}{lv.ok:>7}{lv.errors:>8}{lv.ttft_p50 * ms:>13.1f}"
                       f"{lv.ttft_p99 * ms:>13.1f}{lv.wall_s:>8.1f}  {lv.first_error}")
    out.append("")
    out.append("## Old vs new")
    out.append(f"{'measure':<52}{'old':>10}{'new':>10}{'old/new':>10}")

    def line(label: str, old: float, new: float, unit: str = "") -> None:
        ratio = f"{old / new:.1f}x" if new > 0 else "-"
        out.append(f"{label:<52}{old:>10.2f}{new:>10.2f}{ratio:>10}{unit}")

    for key, label in (("e2e50", "added ms per streamed chat, p50"), ("e2e99", "added ms per streamed chat, p99"),
                       ("ttft50", "added ms to first token, p50"), ("ttft99", "added ms to first token, p99")):
        line(label, added["old /v1/chat/completions stream"][key], added["new /v1/chat/completions stream"][key])
    for key, label in (("e2e50", "added ms per non-streamed chat, p50"),
                       ("e2e99", "added ms per non-streamed chat, p99")):
        line(label, added["old /v1/chat/completions"][key], added["new /v1/chat/completions"][key])
    cpu = {t.name: t.cpu_ms for targets in lat.values() for t in targets}
    line("proxy CPU ms per streamed chat", cpu["old /v1/chat/completions stream"],
         cpu["new /v1/chat/completions stream"])
    line("proxy CPU ms per non-streamed chat", cpu["old /v1/chat/completions"], cpu["new /v1/chat/completions"])
    old_held, new_held = held(ramps.get("old", [])), held(ramps.get("new", []))
    out.append(f"{'most concurrent streams held (of the levels tried)':<52}{old_held:>10}{new_held:>10}"
               f"{(f'{old_held / new_held:.2f}x' if new_held else '-'):>10}")
    out.append("")
    out.append("A bare aiohttp hop (no parsing, no counting) on the same event loop is the floor of any proxy process "
               "on this machine; each frontend's own share is what it adds above that:")
    for kind, loop in (("new", args.new_loop), ("old", args.old_loop)):
        floor = added.get(f"bare aiohttp hop on {loop}, generate_stream", {})
        chat = added[f"{kind} /v1/chat/completions stream"]
        for key, label in (("e2e50", "streamed chat, p50 per request"),
                           ("ttft50", "streamed chat, p50 to first token")):
            if floor:
                out.append(f"  {kind} (on {loop}) {label}: {chat[key]:.2f} ms added, of which {floor[key]:.2f} ms "
                           f"the bare hop on {loop}, {chat[key] - floor[key]:.2f} ms the frontend's work")
    floor = added.get(f"bare aiohttp hop on {args.new_loop}, generate_stream", {})
    p50 = added["new /v1/chat/completions stream"]["e2e50"]
    out.append("")
    out.append(f"goal <= 1 ms added at p50 (new, streamed chat): {'met' if p50 <= 1.0 else 'NOT met'} ({p50:.2f} ms; "
               f"the bare hop on {args.new_loop} alone adds {floor.get('e2e50', float('nan')):.2f} ms here)")
    out.append(f"goal >= 256 concurrent streams (new): {'met' if new_held >= 256 else 'NOT met'} ({new_held})")
    return "\n".join(out) + "\n"


async def main_async(args: argparse.Namespace, work: Path) -> str:
    started = datetime.datetime.now(datetime.UTC)
    deadline = time.monotonic() + args.budget - 15
    checkpoint = write_checkpoint(work / "checkpoint")
    old_root = old_package(work, args.old_ref)
    args.old_commit = subprocess.run(["git", "rev-parse", "--short", args.old_ref], cwd=ROOT, check=True,
                                     capture_output=True, text=True).stdout.strip()
    args.load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    chat = ChatFormat.from_checkpoint(checkpoint)
    prompt = chat.prompt(MESSAGES).removeprefix(chat.bos)

    # Latency: one request at a time, 16 tokens a few ms apart.
    fake, triton = start_fake(work, args.tokens, args.token_delay, args.budget)
    new, new_url, args.new_loop = await start_frontend("new", work, triton, checkpoint, old_root)
    old, old_url, args.old_loop = await start_frontend("old", work, triton, checkpoint, old_root)
    bare_loops = ["asyncio", *(["uvloop"] if _uvloop_installed() else [])]
    bares = {loop: await start_bare(work, triton, args.budget, loop) for loop in bare_loops}
    generate = {"text_input": prompt, "sampling_param_max_tokens": 64, "return_finish_reason": True,
                "sampling_param_exclude_input_from_output": True}
    chat_body = {"model": MODEL, "messages": MESSAGES}
    streamed = [Target("direct generate_stream", "/v2/models/tensorrt_llm/generate_stream",
                       {**generate, "streaming": True}, False, True, triton),
                Target("new /v1/chat/completions stream", "/v1/chat/completions", {**chat_body, "stream": True},
                       True, True, new_url, new.pid),
                Target("old /v1/chat/completions stream", "/v1/chat/completions", {**chat_body, "stream": True},
                       True, True, old_url, old.pid),
                Target("new /v2/.../generate_stream (pass-through)", "/v2/models/tensorrt_llm/generate_stream",
                       {**generate, "streaming": True}, False, True, new_url, new.pid),
                *(Target(f"bare aiohttp hop on {loop}, generate_stream", "/v2/models/tensorrt_llm/generate_stream",
                         {**generate, "streaming": True}, False, True, url, proc.pid)
                  for loop, (proc, url) in bares.items())]
    whole = [Target("direct generate", "/v2/models/tensorrt_llm/generate", generate, False, False, triton),
             Target("new /v1/chat/completions", "/v1/chat/completions", chat_body, True, False, new_url, new.pid),
             Target("old /v1/chat/completions", "/v1/chat/completions", chat_body, True, False, old_url, old.pid),
             Target("new /v2/.../generate (pass-through)", "/v2/models/tensorrt_llm/generate", generate, False,
                    False, new_url, new.pid),
             *(Target(f"bare aiohttp hop on {loop}, generate", "/v2/models/tensorrt_llm/generate", generate, False,
                      False, url, proc.pid) for loop, (proc, url) in bares.items())]
    await latency(streamed, args.rounds, args.timeout)
    await latency(whole, args.rounds, args.timeout)
    await cpu_per_request(streamed + whole, args.cpu_requests, args.timeout)
    for proc in (new, old, *(proc for proc, _ in bares.values()), fake):
        _stop(proc)

    # Streams: many at once, each answering for a while.
    levels = [n for n in (64, 128, 256, 512, 1024, 2048, 4096) if n <= args.max_streams]
    ramps: dict[str, list[Level]] = {}
    for kind in ("new", "old"):
        fake, triton = start_fake(work, args.ramp_tokens, args.ramp_delay, args.budget)
        proc, url, _ = await start_frontend(kind, work, triton, checkpoint, old_root)
        ramps[kind] = await ramp(url, levels, args.timeout, deadline)
        _stop(proc)
        _stop(fake)
    return report(args, {"streamed": streamed, "not streamed": whole}, ramps, started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the report here")
    parser.add_argument("--old-ref", default="HEAD", help="the git commit whose frontend is \"old\"")
    parser.add_argument("--rounds", type=int, default=200, help="requests per path for latency")
    parser.add_argument("--cpu-requests", type=int, default=200, help="requests per path for CPU time")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--token-delay", type=float, default=0.001, help="seconds per token (latency)")
    parser.add_argument("--ramp-tokens", type=int, default=10)
    parser.add_argument("--ramp-delay", type=float, default=0.2, help="seconds per token (streams)")
    parser.add_argument("--max-streams", type=int, default=1024)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--budget", type=float, default=400.0, help="seconds for the whole run")
    parser.add_argument("--bare-proxy", nargs=2, metavar=("PORT", "TRITON"), help=argparse.SUPPRESS)
    parser.add_argument("--bare-loop", choices=["asyncio", "uvloop"], default="asyncio", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_proxy:
        bare_proxy(int(args.bare_proxy[0]), args.bare_proxy[1], args.budget, args.bare_loop)
        return 0
    atexit.register(_stop_children)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
        signal.signal(signum, _on_signal)
    signal.alarm(int(args.budget))
    with contextlib.suppress(ValueError, OSError):
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    with tempfile.TemporaryDirectory(prefix="frontend-bench-") as tmp:
        try:
            text = asyncio.run(main_async(args, Path(tmp)))
        finally:
            _stop_children()
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

