#!/usr/bin/env bash
# Download (here, where pip reaches PyPI) the wheels device_setup.sh installs on the GPU machines, which have torch
# but no pydantic and no network: benchmarks/preflight/wheels/, about 5 MB. Not to be committed.
set -euo pipefail
cd "$(dirname "$0")"
common=(--no-deps --only-binary=:all: --implementation cp --platform manylinux_2_28_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download -q "${common[@]}" --python-version 3.12 -d wheels \
  pydantic==2.14.4 annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0
for v in 3.12 3.13; do
  python3 -m pip download -q "${common[@]}" --python-version "$v" -d "wheels/cp${v/./}" pydantic_core==2.50.5
done
find wheels -name '*.whl' | sort
