"""Stand-in for `tensorrt_llm/serve/responses_utils.py` as far as its module-level import of the REAL `openai`
package installed in the image: the file index's copy does

    from openai.types.responses.response_content_part_added_event import \\
        PartReasoningText

which openai 1.107.3 (what every Triton 26.0x image pins, for Triton's own OpenAI frontend) does not have: 1.108.1
is the first release with it. So on the plain nvcr.io/nvidia/tritonserver:26.0x-trtllm-python-py3 images loading
the llmapi model fails with "ImportError: cannot import name 'PartReasoningText' from
'openai.types.responses.response_content_part_added_event'" (NVIDIA's statement: server docs/getting_started/llm.md
at 5f756ce4b; /work/research/trtllm-serving.md §2), and the project's derived image (openai 2.52.1) loads.
"""

from __future__ import annotations

import time

from openai.types.responses.response_content_part_added_event import PartReasoningText  # noqa: F401


def get_steady_clock_now_in_seconds() -> float:
    return time.monotonic()
