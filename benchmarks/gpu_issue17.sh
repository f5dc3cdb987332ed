#!/usr/bin/env bash
# Issue 17's measurements on one GPU, in one call of about 7 minutes (../shared/gpu/README.md: bring .whl/).
#
#   bash benchmarks/gpu_issue17.sh [OUT_DIR]        # OUT_DIR defaults to $OUT (the device tool) or ./gpu-out
#
# 1. batch-1 latency: CLNet-ResNet-50 vs SimpleBaseline-ResNet-50, 256x256, K=16, fp16 + channels_last: eager,
#    --cuda-graphs, and --compile --cuda-graphs (inductor's reduce-overhead mode); target >= 1000 FPS for CLNet
#    and CLNet/SimpleBaseline >= their MAC ratio (7.23 / 5.52 = 1.31).
# 2. FPS' (--batch max, bounded at 60 s a model) and the limit line (no network above 100%).
# 3. training: data.pipeline cpu vs gpu, CLNet-ResNet-50 256x192 bf16 batch 128, 14 workers; target >= 8000
#    samples/s with data wait < 5%.
# 4. infer end to end on a 1280x720 video, stages' shares, CUDA graphs on.
# Each step writes its own log; a step that fails does not stop the others.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-out}}"
mkdir -p "$out"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
run() {  # run NAME SECONDS COMMAND...: log to $out/NAME.log, keep going on failure
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*" | tee "$out/$name.log"
    /usr/bin/time -f "$name: %e s" timeout "$limit" "$@" >> "$out/$name.log" 2>&1
    echo "== $name exit $?" | tee -a "$out/$name.log"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c "import torch; print(torch.__version__, torch.version.cuda)"; nproc; } > "$out/machine.txt" 2>&1
bench=(python3 -m clpose bench --device cuda --amp fp16 --channels-last --input-size 256x256 --keypoints 16
       --model clnet_resnet50 --model simplebaseline_resnet50)
run latency-eager 90 "${bench[@]}" --batch 1 --runs 300 --warmup 30 --json "$out/latency-eager.json"
run latency-graphs 90 "${bench[@]}" --batch 1 --runs 300 --warmup 30 --cuda-graphs --json "$out/latency-graphs.json"
run fps-max 240 "${bench[@]}" --batch 1 --batch max --max-batch-seconds 60 --runs 20 --warmup 5 --cuda-graphs \
    --json "$out/fps-max.json"
run train-pipeline 240 python3 benchmarks/bench_train_pipeline.py --device cuda --amp bf16 --batch 128 --workers 14 \
    --steps 30 --warmup 10 --rounds 2
run infer-720p 120 python3 benchmarks/bench_infer.py --device cuda --amp fp16 --size 1280x720 --frames 300 --runs 3 \
    --models clnet_resnet50 simplebaseline_resnet50
run latency-compiled 240 "${bench[@]}" --batch 1 --runs 300 --warmup 30 --compile --cuda-graphs \
    --json "$out/latency-compiled.json"
