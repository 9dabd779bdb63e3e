#!/usr/bin/env bash
# The GPU check in one go (issue 22), on a machine with CUDA torch but not the rest of moesearch's needs.
#
#   here, once, with the package registries reachable:  bash bench/gpu_wheels.sh   (fills .whl/)
#   there, from the repository root:  bash bench/gpu_check.sh [--dry-run]           (figures: $OUT/gpu_check.json)
#
# Installs the carried wheels (.whl/: moesearch itself, DeepSpeed as a pure-Python wheel whose ops JIT-build
# on use, optuna, pydantic, moocore and what they need) into /tmp/site, then runs bench/gpu_check.py. With
# --dry-run it installs nothing and runs the same steps at toy size on a CPU (tests/test_bench.py does,
# so it is known to start).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-$(mktemp -d)}"
if [[ "${1:-}" != --dry-run ]] && compgen -G ".whl/*.whl" >/dev/null; then  # built for the GPU machine's Python
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    export PATH="/tmp/site/bin:$PATH"
fi
exec python3 bench/gpu_check.py --out "$out/gpu_check.json" "$@"
