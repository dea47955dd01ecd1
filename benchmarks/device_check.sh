#!/usr/bin/env bash
# The GPU check, in one command: run it from the repository root on a machine with CUDA.
#
#   bash benchmarks/device_check.sh            # everything, about 10 minutes
#   OUT=some/folder bash benchmarks/device_check.sh
#
# Four parts, each under a time limit (a part that overruns is reported and the next runs):
#   1. the CUDA tests (tests/test_cuda.py, tests/test_tasks.py's CUDA test, and the
#      mocked worker→GPU assignment);
#   2. the layer benchmark's d = 4096 rows (Monarch and BTT n_ρ = 2, batch 1, 16, 256,
#      4096) on the GPU, cold L2, against nn.Linear and the fly/CBS kernel;
#   3. compiled against eager: the same benchmark at d = 4096, batch 256, with --compile;
#   4. a short LM proxy search on --device cuda with two workers (spread over the GPUs
#      when there are several), then the same command again, which must train nothing.
# Output goes to the terminal and to $OUT (default: device-check-<date>/), one log per part.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-device-check-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

"$PY" - <<'EOF' || { echo "device_check: $PY (set PYTHON=...) cannot import torch or sees no CUDA device"; exit 1; }
import torch
assert torch.cuda.is_available()
names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {len(names)} GPU(s): {names}")
EOF

status=0
part() {  # part NAME LIMIT_S COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit} s)"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - t0)) s"
    [ "$rc" -eq 0 ] || status=1
}

part 1-cuda-tests 240 "$PY" -m pytest -q -n 0 -p no:cacheprovider -rs \
    tests/test_cuda.py tests/test_tasks.py tests/test_workers_device.py -k "cuda or device or gpu"
part 2-layers-d4096 240 "$PY" benchmarks/layers.py --device cuda --dims 4096 \
    --batches 1 16 256 4096 --proxy-dims --only monarch "btt(n_ρ=2)" --repeats 15 --budget 5
part 3-compiled 240 "$PY" benchmarks/layers.py --device cuda --dims 4096 --batches 256 \
    --proxy-dims --only monarch "btt(n_ρ=2)" --compile --skip einsum1 oe-path --repeats 15
search=("$PY" -c "from einspace.cli import main; main()" search dense monarch btt --task lm
    --widths 64,128 --steps 200 --eval-every 50 --lr-grid 0 --device cuda --workers 2
    --store "$OUT/runs.sqlite")
part 4-search 240 "${search[@]}"
part 4-search-again 120 "${search[@]}"
part 4-store 60 "$PY" - "$OUT/runs.sqlite" <<'EOF'
import sys
from search.store import RunStore
runs = RunStore(sys.argv[1]).runs()
print(runs[["structure", "width", "status", "attempt"]].to_string(index=False))
assert (runs["status"] == "finished").all(), "a run of the search did not finish"
assert (runs["attempt"] == 1).all(), "the second search trained a finished run again"
EOF
echo "device_check: logs in $OUT; $([ $status -eq 0 ] && echo all parts passed || echo SOME PART FAILED)"
exit $status
