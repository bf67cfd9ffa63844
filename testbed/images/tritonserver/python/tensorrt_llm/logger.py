"""Stand-in for `tensorrt_llm/logger.py`: the `[TRT-LLM] [W] ...` lines, on stdout."""

from __future__ import annotations


class _Logger:
    def _log(self, severity: str, message: str) -> None:
        print(f"[TRT-LLM] [{severity}] {message}", flush=True)

    def error(self, message: str) -> None:
        self._log("E", message)

    def warning(self, message: str) -> None:
        self._log("W", message)

    def info(self, message: str) -> None:
        self._log("I", message)

    def debug(self, message: str) -> None:
        pass


logger = _Logger()
