#!/usr/bin/env bash
# The real-data runs of docs/results.md on the lent GPU, after `bash benchmarks/gpu/stage.sh q1` (q2, q3):
#   bash benchmarks/gpu/real_data.sh start       # the whole pipeline, in the background (survives the call)
#   bash benchmarks/gpu/real_data.sh wait 540    # follow it for up to 540 s, then pack the results so far
# Pipeline: teacher (fine-tune + dev quality) -> [teacher + MiniLM test-split quality, in the background]
# -> distillation variants in parallel (full, MNRL baseline, untrained, ablations, DeeLM arm) -> student and
# LLM bi-encoder test-split quality -> the quality table -> the 7B speed run with torch.compile.
# A step also runs alone: real_data.sh teacher|distill|quality-teacher|quality-students|quality|speed.
# Every step skips work whose results exist, so a rerun continues where the last one stopped.
set -uo pipefail
source benchmarks/gpu/env.sh
mkdir -p ../shared runs/jobs && ln -sfn /root/stage/data ../shared/data
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
STEPS=${STEPS:-150}; JOBS=${JOBS:-9}; TURNING_POINT=${TURNING_POINT:-28}
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True OMP_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false
VARIANTS=(full mnrl_baseline untrained no_ci no_ri no_fi no_word_level no_filtering bidirectional)
QUALITY=(python3 benchmarks/quality_table.py --data ../shared/data --output-dir runs/quality-gpu --batch-size 128
  --bi-encoder "$MINILM")
STUDENTS=(--student runs/ablation-gpu/full/model --llm-bi-encoder runs/ablation-gpu/mnrl_baseline/model)

quiet() { grep --line-buffered -v "it/s\]\|s/it\]"; }  # progress bars flood the log

step() {
  echo "=== $1 $(date -u +%H:%M:%S)"
  case "$1" in
    teacher)
      [ -f runs/teacher-smollm2/teacher_quality.json ] && return 0
      python3 benchmarks/teacher_quality.py --model "$SMOLLM2" --data ../shared/data --output runs/teacher-smollm2 \
        --snli-train-per-label 3000 --wikiqa-train-per-label 1000 --snli-dev-per-label 1000 \
        --batch-size 32 --eval-batch-size 128 2>&1 | quiet ;;
    distill)
      python3 benchmarks/distill_ablation.py configs/smollm2_gpu.yaml --output-dir runs/ablation-gpu --jobs "$JOBS" \
        --variants "${VARIANTS[@]}" --bidirectional-from-layer "$TURNING_POINT" \
        --set training.max_steps="$STEPS" --set student.model_name_or_path="$SMOLLM2" 2>&1 | quiet ;;
    quality-teacher) "${QUALITY[@]}" --teacher runs/teacher-smollm2 2>&1 | quiet ;;
    quality-students) "${QUALITY[@]}" "${STUDENTS[@]}" 2>&1 | quiet ;;
    quality) "${QUALITY[@]}" --teacher runs/teacher-smollm2 "${STUDENTS[@]}" 2>&1 | quiet ;;
    speed)
      timeout 420 python3 benchmarks/speed.py --device cuda --shapes qwen2-7b --compile --tokenizer "$SMOLLM2" \
        --output-dir runs/speed-gpu-compile 2>&1 | quiet ;;
  esac
  local rc=$?  # pipefail: the python exit code
  echo "=== $1 exit $rc $(date -u +%H:%M:%S)"
  return "$rc"
}

pack() {
  find runs \( -name "*.md" -o -name "*.json" -o -name "*.log" -o -name "*.png" \) -not -path "*/checkpoint*" \
    -not -path "*/model/*" -not -name "tokenizer*" | tar czf "$OUT/results.tgz" -T -
  cp runs/jobs/pipeline.log "$OUT/" 2>/dev/null; ls -la "$OUT"
}

case "$1" in
  pipeline)
    step teacher || exit 1
    step quality-teacher > runs/jobs/quality-teacher.log 2>&1 &
    step distill && step quality-students
    wait
    step quality
    step speed ;;
  start)
    setsid nohup bash -c "bash benchmarks/gpu/real_data.sh pipeline; echo \$? > runs/jobs/pipeline.rc" \
      > runs/jobs/pipeline.log 2>&1 < /dev/null &
    sleep 2; echo "pipeline started" ;;
  wait)
    deadline=$((SECONDS + ${2:-540}))
    while [ ! -f runs/jobs/pipeline.rc ] && [ $SECONDS -lt $deadline ]; do
      sleep 30
      echo "--- $(date -u +%H:%M:%S) $(nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader)"
      grep "^===" runs/jobs/pipeline.log | tail -2
      for log in runs/ablation-gpu/*.log; do
        [ -f "$log" ] && echo "$(basename "$log"): $(tail -c 300 "$log" | tr '\r' '\n' | grep -v '^\s*$' | tail -1 | cut -c1-110)"
      done
    done
    tail -n 40 runs/jobs/pipeline.log; cat runs/jobs/pipeline.rc 2>/dev/null
    pack ;;
  *) step "$1"; pack ;;
esac
