#!/usr/bin/env bash
# The commands the lent GPU machines ran for the results committed under examples/ and
# benchmarks/ (README, "Results"). Run from the repository root on such a machine, with
# searcher importable (python3 -m searcher), as:
#   bash benchmarks/lent_gpu.sh STEP OUT_DIR
# Each step works on a copy of the committed storage in /tmp and leaves, in OUT_DIR, its
# log and the storage gzipped (the device tool brings back at most 8 files of at most
# 16 MiB each: a step that leaves more loses some; tar them).
# A step goes on when a command fails (its log says why), so that what was measured
# still comes back.
# The committed storages were timed in the replay order before commit 498c91a (each
# fidelity timed other routings; README, "The phase bias"). Since then a GPU run refuses
# to resume them, so the steps that resume one (h200-grid, h200-extended, h200-quant with
# a carried storage) reproduce from commit 5c61b09 (`git checkout 5c61b09`), or start
# fresh storages with the current code. h200-decide runs as it is: `searcher decide`
# re-measures all it compares in the current order. Issue #10's second run
# (h200-quant-against, which resumed the committed quantized storages) is in commit
# 1d2d450; h200-quant-fresh does the same for one study, from a fresh or carried storage,
# and made the quantized storages committed now.
set -uo pipefail
step=$1
out=$2
export PYTHONUNBUFFERED=1
limit=${LIMIT:-450}  # seconds each worker may measure before it stops (rerun to resume)

pack() {  # fold the WAL into the database file, then gzip it into OUT_DIR
    python3 - "$1" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
con.close()
PY
    gzip -c "$1" > "$out/$2.db.gz"
}

tables_and_pack() {  # STUDY SIDE: /tmp/SIDE.db's time split and finalists' table, then pack it
    python3 benchmarks/time_split.py --study "$1" --storage "sqlite:////tmp/$2.db" \
        > "$out/$2-time-split.md" 2>&1
    python3 benchmarks/finalists_plan.py --study "$1" --storage "sqlite:////tmp/$2.db" \
        > "$out/$2-finalists-plan.md" 2>&1
    pack "/tmp/$2.db" "$2"
}

shipped_name() {  # the vLLM file name of a study's shape and GPU
    python3 -c 'import sys
from searcher.study.spec import find_spec, load_spec
spec = load_spec(find_spec(sys.argv[1]))
print(spec.kernel.file_name(spec.shape, spec.gpu))' "$1"
}

case $step in
h200-grid)  # issue #4: the 432 grid of h200-e64-n1408 at every batch size, 4 GPUs
    gunzip -c examples/h200-e64-n1408-vllm432/searcher.db.gz > /tmp/searcher.db
    nvidia-smi -L | tee "$out/gpus.txt"
    python3 -m searcher grid --study h200-e64-n1408 --storage sqlite:////tmp/searcher.db \
        --workers auto --time-limit "$limit" 2>&1 | tee "$out/grid.log"
    pack /tmp/searcher.db searcher
    ;;
h200-extended)  # issue #6 on 4 H200s, then issue #4's and #6's side-by-side runs
    gunzip -c examples/h200-e64-n1408-vllm432/searcher.db.gz > /tmp/searcher.db
    nvidia-smi -L | tee "$out/gpus.txt"
    python3 -m searcher run --study h200-e64-n1408-extended --storage sqlite:////tmp/ext.db \
        --workers auto --time-limit "$limit" --no-live 2>&1 | tee "$out/extended-run.log"
    mkdir -p /tmp/cmp432 /tmp/cmpext
    # Two single-GPU comparisons at once, on GPUs 0 and 1: each re-measures, interleaved,
    # its search's winner, vLLM's default, and the 432 grid's best.
    CUDA_VISIBLE_DEVICES=0 python3 -m searcher compare --study h200-e64-n1408 \
        --storage sqlite:////tmp/searcher.db --out /tmp/cmp432 > "$out/compare-432.log" 2>&1 &
    CUDA_VISIBLE_DEVICES=1 python3 -m searcher compare --study h200-e64-n1408-extended \
        --storage sqlite:////tmp/ext.db --out /tmp/cmpext \
        --against "examples/h200-e64-n1408-vllm432/grid-best/E=64,N=1408,device_name=NVIDIA_H200.json" \
        > "$out/compare-extended.log" 2>&1 &
    wait
    tar czf "$out/compare.tgz" -C /tmp cmp432 cmpext
    pack /tmp/searcher.db searcher
    pack /tmp/ext.db extended
    ;;
h100-extended)  # issue #6 on what H100s were left: one GPU, TRIALS per M (no 432 grid)
    nvidia-smi -L | tee "$out/gpus.txt"
    python3 -m searcher run --study h100-e64-n1408-extended --storage sqlite:////tmp/ext.db \
        --workers auto --trials-per-m "${TRIALS:-80}" --time-limit "$limit" --no-live 2>&1 \
        | tee "$out/extended-run.log"
    mkdir -p /tmp/cmpext
    python3 -m searcher compare --study h100-e64-n1408-extended --storage sqlite:////tmp/ext.db \
        --rounds "${ROUNDS:-3}" --out /tmp/cmpext > "$out/compare-extended.log" 2>&1
    tar czf "$out/compare.tgz" -C /tmp cmpext
    pack /tmp/ext.db extended
    ;;
h200-quant)  # issue #10: the two quantized studies at once, one per GPU (2 H200s); rerun
    # to resume: a storage carried in .gpu-state/ (gunzipped from an earlier OUT) is reused.
    nvidia-smi -L | tee "$out/gpus.txt"
    # AGAINST=1: beat the file vLLM ships for each shape (carried in .vllm-configs/).
    i=0
    for study in h200-deepseek-v3-tp8-fp8 h200-mixtral-8x7b-tp2-fp8; do
        [ -f ".gpu-state/$study.db" ] && cp ".gpu-state/$study.db" "/tmp/$study.db"
        against=()
        [ -n "${AGAINST:-}" ] && against=(--against ".vllm-configs/$(shipped_name "$study")")
        CUDA_VISIBLE_DEVICES=$i python3 -m searcher run --study "$study" ${BATCH_SIZES:+--batch-sizes "$BATCH_SIZES"} \
            --storage "sqlite:////tmp/$study.db" --time-limit "$limit" --no-live \
            ${TRIALS:+--trials-per-m "$TRIALS"} "${against[@]}" > "$out/$study-run.log" 2>&1 &
        i=$((i + 1))
    done
    wait
    for study in h200-deepseek-v3-tp8-fp8 h200-mixtral-8x7b-tp2-fp8; do
        pack "/tmp/$study.db" "$study"
    done
    ;;
h200-quant-compare)  # issue #10: each study's winner, vLLM's default and vLLM 0.33.0's
    # shipped H200 file (from the wheel, carried in .vllm-configs/) side by side, one GPU each
    i=0
    for study in h200-deepseek-v3-tp8-fp8 h200-mixtral-8x7b-tp2-fp8; do
        cp ".gpu-state/$study.db" "/tmp/$study.db"
        shipped=".vllm-configs/$(shipped_name "$study")"
        mkdir -p "/tmp/cmp-$study"
        CUDA_VISIBLE_DEVICES=$i python3 -m searcher compare --study "$study" \
            --storage "sqlite:////tmp/$study.db" --rounds "${ROUNDS:-3}" --out "/tmp/cmp-$study" \
            --against "$shipped" > "$out/$study-compare.log" 2>&1 &
        i=$((i + 1))
    done
    wait
    tar czf "$out/compare.tgz" -C /tmp cmp-h200-deepseek-v3-tp8-fp8 cmp-h200-mixtral-8x7b-tp2-fp8
    ;;
h200-quant-fresh)  # issue #10, third run: one quantized study ($3) from a fresh storage on
    # the GPU in CUDA_VISIBLE_DEVICES, with the file vLLM 0.33.0 ships (.vllm-configs/) as
    # the incumbent; resumes .gpu-state/STUDY.db when carried (gunzipped from an earlier
    # OUT). COMPARE=1: then its winners, vLLM's default and that file side by side.
    # TRIALS=N: N trials per batch size instead of the study's (a resumed study goes on).
    # Any quantized study runs here, the H100 ones too (the name is the H200 run's).
    study=$3
    nvidia-smi -L > "$out/gpus-$study.txt"
    rm -f "/tmp/$study.db"
    [ -f ".gpu-state/$study.db" ] && cp ".gpu-state/$study.db" "/tmp/$study.db"
    shipped=".vllm-configs/$(shipped_name "$study")"
    timeout -s INT "$((limit + 90))" python3 -m searcher run --study "$study" \
        --storage "sqlite:////tmp/$study.db" --time-limit "$limit" --no-live \
        --against "$shipped" ${TRIALS:+--trials-per-m "$TRIALS"} >> "$out/$study-run.log" 2>&1
    if [ -n "${COMPARE:-}" ]; then
        mkdir -p "/tmp/cmp-$study"
        timeout -s INT "${COMPARE_LIMIT:-150}" python3 -m searcher compare --study "$study" \
            --storage "sqlite:////tmp/$study.db" --rounds "${ROUNDS:-5}" \
            --out "/tmp/cmp-$study" --against "$shipped" > "$out/$study-compare.log" 2>&1
        tar czf "$out/compare-$study.tgz" -C /tmp "cmp-$study"
    fi
    pack "/tmp/$study.db" "$study"
    ;;
h200-decide)  # issue #12: the committed H200 file re-decided under the decision rule
    # (searcher decide re-measures each batch size's finalists and vLLM's default), then
    # the re-decided winners, vLLM's default and the 432 grid's best side by side.
    nvidia-smi -L | tee "$out/gpus.txt"
    cp examples/h200-e64-n1408-extended/searcher.db /tmp/ext.db
    [ -f .gpu-state/extended.db ] && cp .gpu-state/extended.db /tmp/ext.db
    timeout -s INT "$limit" python3 -m searcher decide --study h200-e64-n1408-extended \
        --storage sqlite:////tmp/ext.db > "$out/decide.txt" 2>&1
    mkdir -p /tmp/cmpext
    timeout -s INT "${COMPARE_LIMIT:-200}" python3 -m searcher compare \
        --study h200-e64-n1408-extended --storage sqlite:////tmp/ext.db --rounds "${ROUNDS:-5}" \
        --out /tmp/cmpext \
        --against "examples/h200-e64-n1408-vllm432/grid-best/E=64,N=1408,device_name=NVIDIA_H200.json" \
        > "$out/compare-extended.log" 2>&1
    tar czf "$out/compare.tgz" -C /tmp cmpext
    pack /tmp/ext.db extended
    ;;
h200-throughput)  # issue #13: the search's time split after asking ahead on a thread,
    # on one H200, default process isolation, fresh storages: the three batch sizes, then
    # all 18 of h200-e64-n1408, then its winners side by side with vLLM's default and the
    # 432 grid's best (examples/h200-e64-n1408-vllm432/grid-best/).
    # RESUME=1: only resume the 18-batch-size storage carried in .gpu-state/all.db
    # (gunzipped from an earlier OUT) and compare the batch sizes in COMPARE_BATCH_SIZES.
    # STUDY=...: another study (e.g. h100-e64-n1408 on an H100), compared with vLLM's
    # default alone unless AGAINST names a file to compare with too.
    study=${STUDY:-h200-e64-n1408}
    against=${AGAINST-examples/h200-e64-n1408-vllm432/grid-best/E=64,N=1408,device_name=NVIDIA_H200.json}
    [ "$study" != h200-e64-n1408 ] && against=${AGAINST:-}
    nvidia-smi -L | tee "$out/gpus.txt"
    if [ -z "${RESUME:-}" ]; then
        python3 -m searcher run --study "$study" --batch-sizes 64,1024,4096 \
            --storage sqlite:////tmp/three.db --no-live > "$out/three-run.log" 2>&1
        python3 -m searcher status --study "$study" --storage sqlite:////tmp/three.db \
            --batch-sizes 64,1024,4096 > "$out/three-status.txt" 2>&1
        pack /tmp/three.db three
    fi
    [ -n "${RESUME:-}" ] && cp .gpu-state/all.db /tmp/all.db
    timeout -s INT "$((limit + 60))" python3 -m searcher run --study "$study" \
        --storage sqlite:////tmp/all.db --time-limit "$limit" --no-live > "$out/all-run.log" 2>&1
    python3 -m searcher status --study "$study" --storage sqlite:////tmp/all.db \
        > "$out/all-status.txt" 2>&1
    pack /tmp/all.db all  # again after the comparison; this one survives a cut run
    mkdir -p /tmp/cmpall
    timeout -s INT "${COMPARE_LIMIT:-150}" python3 -m searcher compare --study "$study" \
        --storage sqlite:////tmp/all.db --rounds "${ROUNDS:-3}" --out /tmp/cmpall \
        ${COMPARE_BATCH_SIZES:+--batch-sizes "$COMPARE_BATCH_SIZES"} \
        ${against:+--against "$against"} \
        > "$out/all-compare.log" 2>&1
    tar czf "$out/compare.tgz" -C /tmp cmpall
    pack /tmp/all.db all
    ;;
throughput-ab)  # issue #13 on a GPU kind without earlier runs: all batch sizes of STUDY
    # (default h100-e64-n1408) with the code of an earlier commit and with this tree, one
    # after the other on one machine, each on a cold Triton cache and a fresh storage of its
    # own. The earlier code is carried in .gpu-state/base, made beforehand with
    #   mkdir -p .gpu-state/base && git archive BASE searcher studies spaces pyproject.toml \
    #       | tar -x -C .gpu-state/base
    # BATCH_SIZES=1,2,...: those batch sizes only. SIDES="base new base2 new2": runs in
    # that order; a side named new or newN runs this tree, any other NAME or NAMEN the
    # code carried in .gpu-state/NAME (made as base is). Each side's time split and
    # finalists' table are written beside its storage (with this tree's scripts).
    study=${STUDY:-h100-e64-n1408}
    nvidia-smi -L | tee "$out/gpus.txt"
    for side in ${SIDES:-base new}; do
        code=${side%%[0-9]*}
        dir=$PWD
        [ "$code" != new ] && dir=$PWD/.gpu-state/$code
        (cd "$dir" && TRITON_CACHE_DIR=/tmp/triton-$side PYTHONPATH="$dir:${PYTHONPATH:-}" \
            timeout -s INT "$((limit + 60))" python3 -m searcher run --study "$study" \
            ${BATCH_SIZES:+--batch-sizes "$BATCH_SIZES"} \
            --storage "sqlite:////tmp/$side.db" --time-limit "$limit" --no-live) \
            > "$out/$side-run.log" 2>&1
        tables_and_pack "$study" "$side"
    done
    ;;
switch-ab)  # issue #13's experiment: the same batch sizes of STUDY (default the GPU's
    # e64-n1408 study) with Python's switch interval (0.005 s) and with
    # SEARCHER_SWITCH_INTERVAL_S (default 0.0005) in the measuring process, one after the
    # other on one machine, each on a cold Triton cache and a fresh storage of its own; then
    # each one's time split. Small M first: there the finalists' rounds and the trials are
    # mostly host work beside the compile threads (README, "Still missed").
    study=${STUDY:-h100-e64-n1408}
    nvidia-smi -L | grep -q H200 && study=${STUDY:-h200-e64-n1408}
    sizes=${BATCH_SIZES:-1,2,4,8,64,1024,4096}
    nvidia-smi -L | tee "$out/gpus.txt"
    for side in python short; do
        interval=
        [ "$side" = short ] && interval=${SWITCH_S:-0.0005}
        TRITON_CACHE_DIR=/tmp/triton-$side SEARCHER_SWITCH_INTERVAL_S=$interval \
            timeout -s INT "$((limit + 60))" python3 -m searcher run --study "$study" \
            --batch-sizes "$sizes" --storage "sqlite:////tmp/$side.db" --time-limit "$limit" \
            --no-live > "$out/$side-run.log" 2>&1
        tables_and_pack "$study" "$side"
    done
    ;;
*)
    echo "unknown step $step" >&2
    exit 2
    ;;
esac
