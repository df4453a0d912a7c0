#!/usr/bin/env bash
# The GPU check in one command: every CUDA path of global_loc against the CPU, timed, in one
# markdown report (benchmarks/gpu_check.py says what it checks and the tolerances).
#
#   bash benchmarks/gpu_check.sh local     a machine with a CUDA build of PyTorch and global_loc
#                                          installed (pip install -e '.[learned]'); weights and data
#                                          from ../shared (WEIGHTS=, DATA= to change)
#   bash benchmarks/gpu_check.sh prepare   here, with internet to the package registry: packs what
#                                          a bare machine without internet needs (the wheels torch's
#                                          image lacks, the weights, the temple) into .gpu_carry/part*,
#                                          each small enough to travel in one call of the device tool
#   bash benchmarks/gpu_check.sh run       there, once per part, each call carrying .gpu_carry/partK:
#                                          each call stores its part in /tmp/gl_gpu; the call that
#                                          completes the set installs the wheels into /tmp/gl_gpu/site
#                                          and runs the check (report: $OUT/gpu_check.md, or
#                                          benchmarks/results/gpu_check.md where OUT is unset)
#
# INSTALL=0 PYTHON=.venv/bin/python tests `run` on a machine whose Python has the packages already.
# The check itself takes 2 to 4 minutes on an H100 (the limit is 8); the parts take seconds each.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WEIGHTS=${WEIGHTS:-$ROOT/../shared/weights}
DATA=${DATA:-$ROOT/../shared/data}
STORE=${STORE:-/tmp/gl_gpu}
PART_MIB=${PART_MIB:-55}   # a call carries the tree (about 2 MiB) and 64 MiB at most
# Wheels for the device image (Python 3.12, torch, numpy, OpenCV, SciPy, PyYAML, Pillow, tqdm, onnxruntime
# already there): the versions this project's environment runs.
WHEELS=(pycolmap==4.2.1 faiss-cpu==1.15.1 kornia==0.9.0 kornia_rs==0.2.0 protobuf==7.36.2)
WEIGHT_FILES=(aliked/aliked-n16.pth disk/disk-depth-save.pth r2d2/r2d2_WASF_N16.pt xfeat_onnx/xfeat.onnx
              lightglue/aliked_lightglue.pth lightglue/disk_lightglue.pth)

report_path() { if [ -n "${OUT:-}" ]; then echo "$OUT/gpu_check.md"; else echo "$ROOT/benchmarks/results/gpu_check.md"; fi; }

case "${1:-}" in
local)
    export PYTHONUNBUFFERED=1
    exec "${PYTHON:-python3}" benchmarks/gpu_check.py --weights "$WEIGHTS" --data "$DATA" --out "$(report_path)" "${@:2}"
    ;;
prepare)
    rm -rf .gpu_carry && mkdir -p .gpu_carry/stage/whl .gpu_carry/stage/weights .gpu_carry/stage/data
    "${PYTHON:-python3}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        $(for n in 17 24 27 28 31 34 35; do echo --platform manylinux_2_${n}_x86_64; done) \
        --platform manylinux2014_x86_64 -d .gpu_carry/stage/whl "${WHEELS[@]}"
    for f in "${WEIGHT_FILES[@]}"; do
        test -f "$WEIGHTS/$f" || { echo "missing $WEIGHTS/$f (set WEIGHTS=)" >&2; exit 1; }
        mkdir -p ".gpu_carry/stage/weights/$(dirname "$f")" && cp "$WEIGHTS/$f" ".gpu_carry/stage/weights/$f"
    done
    test -d "$DATA/temple_ring" || { echo "missing $DATA/temple_ring (set DATA=)" >&2; exit 1; }
    cp -r "$DATA/temple_ring" .gpu_carry/stage/data/
    # first-fit decreasing into parts of PART_MIB: a wheel, a weight file or the temple folder is one item
    "${PYTHON:-python3}" - "$PART_MIB" <<'EOF'
import shutil, sys
from pathlib import Path
limit = float(sys.argv[1]) * 2**20
stage = Path(".gpu_carry/stage")
items = [p for p in (stage / "whl").iterdir()] + [p for p in (stage / "weights").rglob("*") if p.is_file()]
items += [stage / "data" / "temple_ring"]
size = lambda p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
parts = []
for p in sorted(items, key=size, reverse=True):
    if size(p) > limit:
        sys.exit(f"{p} ({size(p) / 2**20:.1f} MiB) is larger than a part; raise PART_MIB")
    for part in parts:
        if part[0] + size(p) <= limit:
            part[0] += size(p); part[1].append(p); break
    else:
        parts.append([size(p), [p]])
for k, (total, members) in enumerate(parts, 1):
    d = Path(f".gpu_carry/part{k}")
    for p in members:
        dest = d / p.relative_to(stage)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(p), dest)
    (d / f"part{k}_of_{len(parts)}").write_text("")
    print(f"part{k}: {total / 2**20:.1f} MiB: {', '.join(p.name for p in members)}")
EOF
    rm -rf .gpu_carry/stage
    n=$(ls -d .gpu_carry/part* | wc -l)
    echo "then, with the device tool, $n calls in a row (the machine stays warm 30 s between them):"
    for k in $(seq 1 "$n"); do
        echo "  run(command='bash benchmarks/gpu_check.sh run', carry=['.gpu_carry/part$k'], timeout_s=$([ "$k" = "$n" ] && echo 540 || echo 120))"
    done
    ;;
run)
    mkdir -p "$STORE"
    for d in .gpu_carry/part*; do
        [ -d "$d" ] || continue
        cp -r "$d"/. "$STORE"/
        echo "stored $d"
    done
    marks=$(ls "$STORE" | grep -E '^part[0-9]+_of_[0-9]+$' || true)
    [ -n "$marks" ] || { echo "no part has arrived: carry .gpu_carry/partK (bash benchmarks/gpu_check.sh prepare makes them)"; exit 2; }
    want=$(echo "$marks" | head -1 | sed 's/.*_of_//')
    have=$(echo "$marks" | wc -l)
    if [ "$have" -lt "$want" ]; then
        echo "have $have of $want parts ($(echo $marks)); run again with the next part"
        exit 0
    fi
    if [ "${INSTALL:-1}" = 1 ] && [ ! -f "$STORE/site/.done" ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$STORE/site" "$STORE"/whl/*.whl
        touch "$STORE/site/.done"
    fi
    export PYTHONPATH="$STORE/site:$ROOT" PYTHONUNBUFFERED=1
    PY=${PYTHON:-python3}
    "$PY" -c "import torch, pycolmap, faiss, kornia, google.protobuf; print('torch', torch.__version__, 'CUDA', torch.cuda.is_available())"
    mkdir -p "$(dirname "$(report_path)")"
    status=0
    timeout 470 "$PY" benchmarks/gpu_check.py --weights "$STORE/weights" --data "$STORE/data" --out "$(report_path)" \
        "${@:2}" 2>&1 | tee "$(dirname "$(report_path)")/gpu_check.log" || status=$?
    echo "report: $(report_path) (status $status)"
    exit $status
    ;;
*)
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
