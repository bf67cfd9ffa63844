# Shared set-up for the testbed's entry points: one virtualenv, Debian's packages, the Go builds.
# Sourced, not run. Everything is idempotent and cached; the first run on a fresh machine takes minutes.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DEEPSEEK_TESTBED_CACHE="${DEEPSEEK_TESTBED_CACHE:-$HOME/.cache/deepseek-operator}"
VENV="$REPO/.venv"
PY="$VENV/bin/python"

ensure_venv() {
  local want have=""
  want="$(sha256sum "$REPO/pyproject.toml" | cut -c1-16)"
  [[ -f "$VENV/.installed" ]] && have="$(cat "$VENV/.installed")"
  if [[ ! -x "$PY" || "$want" != "$have" ]]; then
    echo "setup: installing the Python environment into $VENV" >&2
    [[ -x "$PY" ]] || python3 -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip >&2
    "$PY" -m pip install -q -e "$REPO[test]" >&2
    echo "$want" > "$VENV/.installed"
  fi
}

ensure_debian_packages() {
  local missing=()
  command -v openssl >/dev/null || missing+=(openssl)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v redis-server >/dev/null || missing+=(redis-server)  # Argo CD's cache (testbed/argocd/run)
  command -v git >/dev/null || missing+=(git)  # the local repository Argo CD syncs from
  # What the serving image's base layer has on the testbed: a multi-node replica's leader runs mpirun over ssh,
  # its workers run sshd (testbed/images.yaml).
  command -v mpirun >/dev/null || missing+=(openmpi-bin)
  command -v ssh >/dev/null || missing+=(openssh-client)
  [[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
  if (( ${#missing[@]} )); then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

# The NCCL preflight runs PyTorch (several GB with its CUDA wheels, which PyPI's Linux torch requires): in an
# environment of its own in the cache, never in the operator's. The pod runner runs the preflight Job with it.
PREFLIGHT_VENV="$DEEPSEEK_TESTBED_CACHE/preflight-venv"
PREFLIGHT_PACKAGES="torch==2.15.0 numpy pydantic==2.14.4 pyyaml"

ensure_preflight_venv() {
  if [[ ! -f "$PREFLIGHT_VENV/.installed" || "$(cat "$PREFLIGHT_VENV/.installed")" != "$PREFLIGHT_PACKAGES" ]]; then
    echo "setup: installing PyTorch for the NCCL preflight into $PREFLIGHT_VENV (a few minutes)" >&2
    [[ -x "$PREFLIGHT_VENV/bin/python" ]] || python3 -m venv "$PREFLIGHT_VENV"
    # shellcheck disable=SC2086
    "$PREFLIGHT_VENV/bin/python" -m pip install -q $PREFLIGHT_PACKAGES >&2
    echo "$PREFLIGHT_PACKAGES" > "$PREFLIGHT_VENV/.installed"
  fi
}

# The weights downloader's packages, pinned in the file its image installs: an environment of its own (botocore
# pins python-dateutil below the version the kubernetes client needs).
DOWNLOADER_VENV="$DEEPSEEK_TESTBED_CACHE/downloader-venv"
DOWNLOADER_REQUIREMENTS="$REPO/operator/deepseek_operator/download/requirements.txt"

ensure_downloader_venv() {
  local want; want="$(sha256sum "$DOWNLOADER_REQUIREMENTS" | cut -c1-16)"
  if [[ ! -f "$DOWNLOADER_VENV/.installed" || "$(cat "$DOWNLOADER_VENV/.installed")" != "$want" ]]; then
    echo "setup: installing the weights downloader's packages into $DOWNLOADER_VENV" >&2
    [[ -x "$DOWNLOADER_VENV/bin/python" ]] || python3 -m venv "$DOWNLOADER_VENV"
    "$DOWNLOADER_VENV/bin/python" -m pip install -q -r "$DOWNLOADER_REQUIREMENTS" >&2
    echo "$want" > "$DOWNLOADER_VENV/.installed"
  fi
}

# The `openai` package of each Triton TensorRT-LLM image (testbed/images.yaml links it into the image): 1.107.3, which
# every Triton 26.0x image pins, and 2.52.1, which the project's derived image installs. Each version goes into a
# folder of its own in the cache (`pip install --target`, with the packages it needs that the testbed venv lacks:
# httpx, anyio, ...; the venv's own come first on the image's path).
IMAGE_SITE="$DEEPSEEK_TESTBED_CACHE/image-site"
IMAGE_OPENAI_VERSIONS="1.107.3 2.52.1"

ensure_image_openai() {
  local version target
  for version in $IMAGE_OPENAI_VERSIONS; do
    target="$IMAGE_SITE/openai-$version"
    [[ -f "$target/.installed" ]] && continue
    echo "setup: installing openai==$version for the Triton images into $target" >&2
    rm -rf "$target.tmp"
    "$PY" -m pip install -q --target "$target.tmp" "openai==$version" >&2
    rm -rf "$target"
    mv "$target.tmp" "$target"
    touch "$target/.installed"
  done
}

ensure_testbed_built() {
  ensure_debian_packages
  "$REPO/testbed/build" >&2
  ensure_preflight_venv
  ensure_downloader_venv
  ensure_image_openai
}
