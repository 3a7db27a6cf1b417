#!/usr/bin/env bash
# The device run of issue 21 in one go, each part time-boxed, everything written to $OUT (8 files at most):
# the GPU tests, the same tiny render with the one-program frame on and off at fp32 and bf16 compared frame by
# frame, then benchmarks/gpu.py (bf16, then fp32) at 1080p and 720p with the eager-torchvision peer.
# Prepare here first (docs/performance.md, "The GPU table"): the wheels in .whl/ and, optionally, weights in .wts/
# (the shared file is too big to carry with the wheels: see docs/performance.md for the mixed5 cut). Then:
#   device run, carry [".whl", ".wts"]:  bash benchmarks/gpu_session.sh
# Budgets (seconds) can be set: T_TESTS T_CHECK T_BF16 T_FP32; a part set to 0 is skipped.
set -u
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheels did not install" | tee "$OUT/env.txt"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
W=$(ls .wts/*.h5 2>/dev/null | head -1)
[ -n "$W" ] && export DREAMVID_WEIGHTS=$PWD/$W
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; nproc
  KERAS_BACKEND=jax python3 -c "import jax, keras, numpy, cv2; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__, 'numpy', numpy.__version__, 'cv2', cv2.__version__)"
  echo "weights: ${DREAMVID_WEIGHTS:-random}"; } > "$OUT/env.txt" 2>&1
part() {  # name budget command...
  local name=$1 budget=$2; shift 2
  [ "$budget" = 0 ] && return
  local t=$SECONDS
  timeout --kill-after=5 "$budget" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: rc=$? in $((SECONDS - t)) s (budget $budget s)" | tee -a "$OUT/$name.log" >> "$OUT/env.txt"
}
TESTS=${TESTS:-tests/test_frame_program.py tests/test_backends.py}
part tests "${T_TESTS:-150}" env KERAS_BACKEND=jax DREAMVID_REQUIRE=jax python3 -m pytest -v --tb=short -rs -p no:cacheprovider $TESTS
# the same at full fp32 matmul precision (a GPU's default fp32 convolution may use TF32): only if T_TESTS_HI is set
part tests_highest "${T_TESTS_HI:-0}" env KERAS_BACKEND=jax JAX_DEFAULT_MATMUL_PRECISION=highest python3 -m pytest -q \
  --tb=line -p no:cacheprovider $TESTS
part check "${T_CHECK:-90}" env KERAS_BACKEND=jax python3 benchmarks/gpu_check.py --size 320 --frames 12 --json "$OUT/check.json"
part gpu_bf16 "${T_BF16:-170}" python3 benchmarks/gpu.py --backends jax --precisions bf16 --sizes 1920x1080,1280x720 \
  --frames ${FRAMES:-12} --repeat 3 ${BENCH_ARGS:-} --json "$OUT/gpu_bf16.json"
part gpu_fp32 "${T_FP32:-90}" python3 benchmarks/gpu.py --backends jax --precisions fp32 --sizes 1920x1080,1280x720 \
  --frames 12 --repeat 3 --no-baseline --no-cpu-stages --json "$OUT/gpu_fp32.json"
cat "$OUT/env.txt"
