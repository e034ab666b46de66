#!/usr/bin/env bash
# The real-data runs of docs/results.md, on the lent GPU (after benchmarks/gpu/stage.sh p1 p2 p3).
#   bash benchmarks/gpu/real_data.sh teacher     # zero-shot vs fine-tuned teacher
#   bash benchmarks/gpu/real_data.sh distill     # full D2LLM run, MNRL baseline, untrained student
#   bash benchmarks/gpu/real_data.sh ablation    # no CI / RI / FI / word level / filtering, DeeLM arm
#   bash benchmarks/gpu/real_data.sh quality     # test-split table (teacher, student, LLM bi-encoder)
# Each step resumes from what the previous calls left under runs/ (the machine stays warm between calls).
set -uo pipefail
source benchmarks/gpu/env.sh
mkdir -p ../shared && ln -sfn /root/stage/data ../shared/data
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
STEPS=${STEPS:-300}
COMMON=(--set training.max_steps=$STEPS --set student.model=$SMOLLM2)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
case "$1" in
  teacher)
    python3 benchmarks/teacher_quality.py --model "$SMOLLM2" --data ../shared/data --output runs/teacher-smollm2 \
      --snli-train-per-label 3000 --wikiqa-train-per-label 1000 --snli-dev-per-label 1000 \
      --batch-size 32 --eval-batch-size 128 2>&1 | grep -v "it/s\]" | tee "$OUT/teacher_quality.log" ;;
  distill)
    python3 benchmarks/distill_ablation.py configs/smollm2_gpu.yaml --output-dir runs/ablation-gpu \
      --variants full mnrl_baseline untrained "${COMMON[@]}" 2>&1 | grep -v "it/s\]" | tee "$OUT/distill.log" ;;
  ablation)
    python3 benchmarks/distill_ablation.py configs/smollm2_gpu.yaml --output-dir runs/ablation-gpu \
      --variants full no_ci no_ri no_fi no_word_level no_filtering mnrl_baseline untrained "${COMMON[@]}" \
      2>&1 | grep -v "it/s\]" | tee "$OUT/ablation.log"
    python3 benchmarks/distill_ablation.py configs/smollm2_gpu.yaml --output-dir runs/deelm-gpu --variants full \
      "${COMMON[@]}" --set student.bidirectional_from_layer=28 --set teacher.cache=runs/ablation-gpu/teacher_scores.sqlite \
      2>&1 | grep -v "it/s\]" | tee "$OUT/deelm.log" ;;
  quality)
    python3 benchmarks/quality_table.py --data ../shared/data --output-dir runs/quality-gpu \
      --teacher runs/teacher-smollm2 --student runs/ablation-gpu/full/model \
      --llm-bi-encoder runs/ablation-gpu/mnrl_baseline/model --batch-size 128 2>&1 | grep -v "it/s\]" \
      | tee "$OUT/quality.log" ;;
esac
find runs -name "*.md" -o -name "*.json" -not -path "*/checkpoint*" -not -path "*/model/*" | tar czf "$OUT/results-$1.tgz" -T - ; ls -la "$OUT"
