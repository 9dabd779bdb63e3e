#!/usr/bin/env bash
# Fill .whl/ with what bench/gpu_check.sh installs on a GPU machine that has CUDA torch, pandas, pyarrow,
# scipy, scikit-learn, statsmodels, matplotlib, click and tqdm but none of the rest (no registry there).
# Run here, from the repository root, with the dev environment active: each package at the version
# installed here (the versions the tests passed with), for CPython 3.12 on x86-64 Linux. DeepSpeed is
# built as a pure-Python wheel (DS_BUILD_OPS=0): the ops moesearch uses are JIT-built there on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
# missing from the GPU image (docs/performance.md lists it), each with what it needs that the image lacks
needed=(optuna alembic sqlalchemy mako colorlog pydantic pydantic-core annotated-types typing-inspection
        moocore cffi pycparser platformdirs hjson tomlkit pyDOE3 plotly psycopg psycopg-binary)
pins=()
for name in "${needed[@]}"; do
    pins+=("$name==$(python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")")
done
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" -d .whl "${pins[@]}"
DS_BUILD_OPS=0 python -m pip wheel -q --no-deps --no-binary deepspeed -w .whl \
    "deepspeed==$(python -c 'import importlib.metadata as m; print(m.version("deepspeed"))')"
python -m pip wheel -q --no-deps -w .whl .
ls -l .whl && du -sh .whl
