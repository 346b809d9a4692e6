#!/usr/bin/env bash
# The GPU check of issue 11, in one prepared run on a fresh GPU machine (about 8 minutes):
#
#   1. install    the GPU extra: `pip install -e ".[gpu]"` (cupy-cuda12x: CUDA 12 and newer
#                 drivers) or ".[gpu-cuda13]" (cupy-cuda13x) where the driver is CUDA 13 or
#                 an installed CuPy for CUDA 13 already works; offline, from wheels in
#                 $GPU_CHECK_WHEELS (see --download-wheels) with this checkout on PYTHONPATH
#   2. pytest     `pytest -m gpu`: the CuPy backend against the CPU kernels (moments and maps
#                 within 1e-10 relative in float64, tests/test_backends.py) and the
#                 particle invariants on the GPU
#   3. calibrate  the planner's GPU rates measured with CuPy and stored where the planner
#                 reads them (zernike3d.scheduling.calibration.calibrate_gpu -> ~/.cache/zernike3d/
#                 gpu-rates.json); also the GPU-vs-CPU moments error at (128, 50), (96, 100)
#   4. placements benchmarks/bench_placements.py, gpu-resident, at (128, 50), (256, 50),
#                 (128, 100), (256, 150), predicted (with the rates just measured) vs measured
#
# and writes one markdown table, the raw figures and the whole log to $OUT (default
# ./gpu_check_out): gpu_check.md, gpu_check.json, gpu_check.log. Each step runs under
# `timeout` within an overall budget ($GPU_CHECK_BUDGET seconds, default 470); a failed or
# timed-out step is recorded and the next one runs. Without a GPU (no nvidia-smi, or it
# lists none) every GPU step is skipped with one line and the table says "no GPU"; the
# exit status is 0 either way (the table says what failed).
#
#   bash benchmarks/gpu_check.sh                     # on the GPU machine, from the repo root
#   bash benchmarks/gpu_check.sh --download-wheels   # here, with internet: fill .whl/ with
#                                                    # what an offline GPU image lacks
# Environment: OUT, PYTHON (default python3), GPU_CHECK_SKIP_INSTALL=1,
# GPU_CHECK_WHEELS (default .whl), GPU_CHECK_BUDGET, GPU_CHECK_CASES (default
# 128x50,256x50,128x100,256x150), GPU_CHECK_TESTS (default: the test files with GPU tests).
set -u
cd "$(dirname "$0")/.." || exit 2
REPO=$PWD
PY=${PYTHON:-python3}
WHEELS=${GPU_CHECK_WHEELS:-.whl}
# Python packages the GPU steps import beyond numpy/scipy/numba/psutil/nvidia-ml-py/pytest
OFFLINE_NEEDS="mrcfile zarr cryosparc-tools tqdm pyyaml"

if [ "${1:-}" = "--download-wheels" ]; then
    # wheels for CPython 3.12 on x86-64 Linux (the GPU image's Python), numpy left out
    # (every GPU image has one); the folder travels with the working tree (carry .whl)
    mkdir -p "$WHEELS" || exit 2
    "$PY" -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEELS" $OFFLINE_NEEDS || exit 2
    rm -f "$WHEELS"/numpy-*.whl
    echo "wheels in $WHEELS: $(ls "$WHEELS" | wc -l) files, $(du -sh "$WHEELS" | cut -f1)"
    exit 0
fi

OUT=${OUT:-./gpu_check_out}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
LOG=$OUT/gpu_check.log
: >"$LOG"
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-470}
CASES=${GPU_CHECK_CASES:-128x50,256x50,128x100,256x150}
export PYTHONUNBUFFERED=1

say() { echo "gpu_check: $*" | tee -a "$LOG"; }

# record NAME STATUS SECONDS NOTE: one line of the steps table (JSON lines)
record() {
    "$PY" -c 'import json, sys; print(json.dumps(dict(zip(("step", "status", "seconds", "note"), sys.argv[1:]))))' \
        "$1" "$2" "$3" "$4" >>"$WORK/steps.jsonl"
}

# step NAME CAP COMMAND...: run under timeout (CAP s, or what is left of the budget)
step() {
    local name=$1 cap=$2 left status began rc
    shift 2
    left=$((BUDGET - ($(date +%s) - START)))
    [ "$cap" -gt "$left" ] && cap=$left
    if [ "$cap" -lt 10 ]; then
        say "$name: skipped (the ${BUDGET} s budget is spent)"
        record "$name" skipped 0 "budget spent"
        return 1
    fi
    say "$name: $* (at most $cap s)"
    began=$(date +%s)
    timeout --kill-after=10 "$cap" "$@" >"$WORK/step.out" 2>&1
    rc=$?
    cat "$WORK/step.out" >>"$LOG"
    status=ok
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        status="timed out after $cap s"
    elif [ $rc -ne 0 ]; then
        status="failed (exit $rc): $(grep -v '^ *$' "$WORK/step.out" | tail -1 | cut -c1-200 | tr '|' '/')"
    fi
    say "$name: $status"
    record "$name" "$status" $(($(date +%s) - began)) "${STEP_NOTE:-}"
    STEP_NOTE=""
    return $rc
}

skip() {
    say "$1: skipped ($2)"
    record "$1" skipped 0 "$2"
}

GPU_NAME=""
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then
    GPU_NAME=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)
    CUDA_MAJOR=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9]*\).*/\1/p' | head -1)
    say "GPU: $GPU_NAME, driver CUDA ${CUDA_MAJOR:-?}"
    nvidia-smi >>"$LOG" 2>&1
else
    say "no GPU (nvidia-smi missing or lists none): the GPU steps are skipped"
fi

# 1. install
if [ -z "$GPU_NAME" ]; then
    skip install "no GPU"
elif [ "${GPU_CHECK_SKIP_INSTALL:-}" = 1 ]; then
    skip install "GPU_CHECK_SKIP_INSTALL=1"
else
    # the extra whose CuPy wheel suits the driver, or the CuPy already installed and working
    installed=$("$PY" -c 'import importlib.metadata as m
for name in ("cupy-cuda13x", "cupy-cuda12x"):
    try:
        m.version(name); print(name); break
    except m.PackageNotFoundError:
        pass' 2>/dev/null)
    if [ "$installed" = cupy-cuda13x ] || { [ -z "$installed" ] && [ "${CUDA_MAJOR:-12}" -ge 13 ]; }; then
        EXTRA=gpu-cuda13
    else
        EXTRA=gpu
    fi
    STEP_NOTE="pip install -e .[$EXTRA] (installed CuPy: ${installed:-none})"
    if ! step install 200 "$PY" -m pip install --retries 0 --timeout 15 -e ".[$EXTRA]"; then
        # offline: the extra's CuPy must already be there; the modules the checks import
        # come from the wheels folder, zernike3d from this checkout
        export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
        if [ -d "$WHEELS" ]; then
            STEP_NOTE="offline: $OFFLINE_NEEDS from $WHEELS; zernike3d on PYTHONPATH"
            step install-offline 90 "$PY" -m pip install --no-index --find-links "$WHEELS" $OFFLINE_NEEDS
        else
            skip install-offline "no wheels folder $WHEELS (make one with --download-wheels); zernike3d on PYTHONPATH"
        fi
    fi
fi

# 2. pytest -m gpu (only the files with GPU tests: the others need the workflow's tools)
if [ -z "$GPU_NAME" ]; then
    skip pytest "no GPU"
else
    TESTS=${GPU_CHECK_TESTS:-$(grep -l 'mark.gpu' tests/test_*.py | tr '\n' ' ')}
    STEP_NOTE="pytest -m gpu $TESTS"
    step pytest 150 "$PY" -m pytest -q -rA -m gpu -p no:cacheprovider --junitxml="$WORK/pytest.xml" $TESTS
fi

# 3. calibrate the planner's GPU rates
if [ -z "$GPU_NAME" ]; then
    skip calibrate "no GPU"
else
    step calibrate 120 "$PY" -c 'import json, sys, dataclasses
from zernike3d.scheduling.calibration import calibrate_gpu
from zernike3d.scheduling.planner import GPU_RATES_FILE, gpu_rates
rates, details = calibrate_gpu()
print(f"stored in {GPU_RATES_FILE}: {rates}")
datasheet = dataclasses.asdict(gpu_rates(rates.name, path="/nonexistent"))
json.dump({"rates": dataclasses.asdict(rates), "datasheet": datasheet, **details}, open(sys.argv[1], "w"), indent=1)' \
        "$WORK/calibration.json"
fi

# 4. GPU placements (one bench process per case: a failed case does not lose the others)
if [ -z "$GPU_NAME" ]; then
    skip placements "no GPU"
else
    for case in ${CASES//,/ }; do
        step "placements-$case" 120 "$PY" benchmarks/bench_placements.py --cases "$case" \
            --placements gpu-resident --repeats 2 --max-seconds 100 --out "$WORK/placements-$case.json"
    done
fi

# the table and the raw figures
"$PY" - "$WORK" "$OUT" "$GPU_NAME" "$(($(date +%s) - START))" <<'EOF' 2>&1 | tee -a "$LOG"
import glob, json, os, platform, sys
import xml.etree.ElementTree as ET

work, out, gpu, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
steps = [json.loads(line) for line in open(os.path.join(work, "steps.jsonl"))]
raw = {"gpu": gpu or None, "python": platform.python_version(), "total_seconds": seconds, "steps": steps}
try:
    import cupy
    raw["cupy"] = cupy.__version__
except Exception as err:  # missing, or no driver: the table says so
    raw["cupy"] = f"unavailable ({type(err).__name__})"
lines = ["# GPU check (benchmarks/gpu_check.sh)", ""]
lines.append(f"GPU: {gpu}" if gpu else "GPU: no GPU on this machine: every GPU step was skipped")
lines += [f"Python {raw['python']}, CuPy {raw['cupy']}; {seconds} s in all", "",
          "| step | status | seconds | note |", "|---|---|---|---|"]
lines += [f"| {s['step']} | {s['status']} | {s['seconds']} | {s['note']} |" for s in steps]
junit = os.path.join(work, "pytest.xml")
if os.path.exists(junit):
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    cases = []
    for case in suite.iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = tag + ": " + (case.find(tag).get("message") or "")[:160].replace("|", "/").replace("\n", " ")
        cases.append({"test": case.get("name"), "seconds": float(case.get("time", 0)), "outcome": outcome})
    raw["pytest"] = cases
    lines += ["", "## pytest -m gpu", "", "| test | seconds | outcome |", "|---|---|---|"]
    lines += [f"| {c['test']} | {c['seconds']:.1f} | {c['outcome']} |" for c in cases]
calibration = os.path.join(work, "calibration.json")
if os.path.exists(calibration):
    cal = raw["calibration"] = json.load(open(calibration))
    rates, sheet = cal["rates"], cal["datasheet"]
    lines += ["", f"## Planner GPU rates ({rates['measured']})", "", "| rate | measured | datasheet lead |", "|---|---|---|"]
    for key, unit, scale in (("fp64_flops", "TFLOP/s", 1e12), ("fp64_matmul_flops", "TFLOP/s", 1e12),
                             ("memory_bytes_per_s", "TB/s", 1e12), ("pcie_bytes_per_s", "GB/s", 1e9),
                             ("kernel_efficiency", "", 1), ("launch_seconds", "µs", 1e-6)):
        lines.append(f"| {key} | {rates[key] / scale:.3g} {unit} | {sheet[key] / scale:.3g} {unit} |")
    lines += ["", f"GPU vs CPU moments, float64: max relative error {cal['max_relative_error']:.2e} "
              f"({'within' if cal['max_relative_error'] <= 1e-10 else 'NOT within'} 1e-10)", "",
              "| box | order | GPU decompose s | fitted kernel efficiency | relative error |", "|---|---|---|---|---|"]
    lines += [f"| {c['box']} | {c['order']} | {c['seconds']:.3f} | {c['kernel_efficiency']:.3f} | "
              f"{c['max_relative_error']:.1e} |" for c in cal["cases"]]
rows = []
for path in sorted(glob.glob(os.path.join(work, "placements-*.json"))):
    rows += [row for row in json.load(open(path)) if row["placement"] == "gpu-resident"]
if rows:
    raw["placements"] = rows
    lines += ["", "## Placements (bench_placements.py, decompose, 1 volume; target 256³ order 150 ≤ 10 s)", "",
              "| case | predicted s | measured s | predicted GPU MiB | GPU pool MiB | host peak MiB (predicted) |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['case']} | {r['predicted_seconds']:.3g} | skipped: {r['skipped']} | "
                         f"{r['predicted_gpu_bytes'] / 2**20:.0f} | | |")
            continue
        lines.append(f"| {r['case']} | {r['predicted_seconds']:.3g} | {r['seconds']:.3g} | "
                     f"{r['predicted_gpu_bytes'] / 2**20:.0f} | {r['gpu_bytes'] / 2**20:.0f} | "
                     f"{r['host_bytes'] / 2**20:.0f} ({r['predicted_bytes'] / 2**20:.0f}) |")
failed = [s["step"] for s in steps if s["status"] not in ("ok", "skipped")]
lines += ["", "Failed steps: " + (", ".join(failed) if failed else "none") + " (details in gpu_check.log)"]
open(os.path.join(out, "gpu_check.md"), "w").write("\n".join(lines) + "\n")
json.dump(raw, open(os.path.join(out, "gpu_check.json"), "w"), indent=1)
print(f"gpu_check: wrote {out}/gpu_check.md, gpu_check.json, gpu_check.log")
EOF
exit 0
