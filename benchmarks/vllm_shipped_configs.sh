#!/usr/bin/env bash
# Puts the tuned fused-MoE files vLLM 0.33.0 ships for the given studies into
# .vllm-configs/ (git-ignored; nothing taken from vLLM's wheel is committed), for
# `searcher run|compare --against` and benchmarks/lent_gpu.sh (carry .vllm-configs).
# Usage, from the project root, where pip reaches PyPI:
#   bash benchmarks/vllm_shipped_configs.sh h200-deepseek-v3-tp8-fp8 h200-mixtral-8x7b-tp2-fp8
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
mkdir -p .git/info .vllm-configs
grep -qx '/.vllm-configs/' .git/info/exclude 2>/dev/null || echo '/.vllm-configs/' >> .git/info/exclude
wheel_dir=$(mktemp -d)
trap 'rm -rf "$wheel_dir"' EXIT
python3 -m pip download -q --no-deps -d "$wheel_dir" vllm==0.33.0
for study in "$@"; do
    name=$(python3 -c 'import sys
from searcher.study.spec import find_spec, load_spec
spec = load_spec(find_spec(sys.argv[1]))
print(spec.kernel.file_name(spec.shape, spec.gpu))' "$study")
    # Python's zipfile: the names hold '[' and ']', which unzip reads as a pattern.
    python3 - "$wheel_dir" "$name" "$study" <<'PY'
import glob, sys, zipfile
wheel_dir, name, study = sys.argv[1:]
(wheel,) = glob.glob(f"{wheel_dir}/vllm-*.whl")
member = f"vllm/model_executor/layers/fused_moe/configs/{name}"
with zipfile.ZipFile(wheel) as z:
    if member not in z.namelist():
        print(f"{study}: vLLM 0.33.0 ships no {name}", file=sys.stderr)
    else:
        with open(f".vllm-configs/{name}", "wb") as out:
            out.write(z.read(member))
        print(f"{study}: .vllm-configs/{name}")
PY
done
