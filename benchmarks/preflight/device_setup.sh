# Source on a lent GPU machine (from the repo root): pydantic for the operator's catalog, which the preflight
# reads for --expect-gpu. The machines' image has torch but no pydantic, and no network; the wheels travel in
# benchmarks/preflight/wheels/ (pure-Python ones, plus pydantic-core for CPython 3.12 and 3.13). Not committed.
pyver=$(python3 -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  benchmarks/preflight/wheels/*.whl benchmarks/preflight/wheels/"$pyver"/*.whl
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
python3 -c 'import pydantic, sys; print("device_setup: python", sys.version.split()[0], "pydantic", pydantic.VERSION)'
