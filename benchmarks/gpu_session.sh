#!/usr/bin/env bash
# The GPU measurements of issues 11 and 13 in one run, for a session that is lent a GPU machine
# (15 minutes of device time in all, machine start included): each step runs under its own time
# limit and under one overall deadline, so a slow step costs only itself, and every step's log,
# report and run folder lands in $OUT, which the device tool brings back.
#
#   bash benchmarks/gpu_session.sh --prepare     # here, once: the wheels the GPU machine lacks -> .gpu/
#   # then, through the device tool (carry .gpu):  bash benchmarks/gpu_session.sh
#   SMOKE=1 OUT=/tmp/gpu_smoke bash benchmarks/gpu_session.sh   # the same steps, tiny, on this CPU
#
# Steps, most valuable first (issue 11's target needs a GPU most):
#   1. at_autoattack: PGD-40 adversarial training of Madry's MNIST CNN for a fixed wall-clock
#      budget (trainer.max_time), best robust-validation weights kept, then AutoAttack (APGD-CE,
#      APGD-T, Square 5 000) at eps 0.3 on all 10 000 test images  -> $OUT/at_autoattack/
#   2. section6: the paper's whole §VI (undefended CNN, teacher, student, both FGSM sweeps),
#      then the robustness table on those networks, each timed  -> $OUT/section6*/
#   3. peer_imagenet: advlab against torchattacks (FGSM sweep, PGD fp32, PGD bf16+channels_last
#      with its agreement and its share of the fwd+bwd ceiling) on ResNet-101, AlexNet and
#      RegNetY-400MF, 224², batch 128, random weights  -> $OUT/peer_imagenet.md
#   4. fast_paths: packed PGD and torch.compile on the MNIST CNN  -> $OUT/fast_paths_mnist.md
# $OUT/steps.txt: one line per step with its exit status and seconds (124: hit its time limit).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    # hydra-core, omegaconf, antlr4 (../shared/gpu-wheels/README.md); torchattacks (the peer) and
    # scipy (torchattacks imports it) for the GPU machine's Python 3.12, about 38 MB in all
    mkdir -p .gpu
    cp ../shared/gpu-wheels/*.whl .gpu/
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --platform manylinux2014_x86_64 -d .gpu 'scipy>=1.11,<1.16' 'torchattacks==3.5.1'
    exclude=$(git rev-parse --git-path info/exclude)
    grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >>"$exclude"
    du -sh .gpu
    exit 0
fi

OUT=${OUT:-outputs/gpu_session}
SMOKE=${SMOKE:-0}
PY=${PY:-python3}
DEADLINE=$(($(date +%s) + ${BUDGET_S:-540}))
mkdir -p "$OUT"

# what the GPU machine lacks, from the carried wheels: only what does not import already
site=/tmp/advlab-site
install_missing() { # module wheel-glob...
    local module=$1
    shift
    $PY -c "import $module" 2>/dev/null && return 0
    ls "$@" >/dev/null 2>&1 || { echo "no wheel for $module in .gpu/ (run --prepare and carry .gpu)"; return 1; }
    $PY -m pip install -q --no-index --no-deps --target "$site" "$@"
}
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
install_missing hydra .gpu/hydra_core-*.whl .gpu/omegaconf-*.whl .gpu/antlr4*.whl
install_missing scipy .gpu/scipy-*.whl
install_missing torchattacks .gpu/torchattacks-*.whl

step() { # name limit-seconds command...
    local name=$1 limit=$2
    shift 2
    local left=$((DEADLINE - $(date +%s)))
    if [ "$left" -lt 20 ]; then
        echo "$name skipped: the session's deadline" | tee -a "$OUT/steps.txt"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local start
    start=$(date +%s)
    echo "== $name (limit $limit s): $*"
    timeout --signal=TERM --kill-after=15 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc $(($(date +%s) - start)) s" | tee -a "$OUT/steps.txt"
    tail -n 15 "$OUT/$name.log"
}

{
    date -u
    git log --oneline -1 2>/dev/null || true
    nvidia-smi 2>/dev/null || echo "no nvidia-smi"
    $PY -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, 'cuda', torch.cuda.is_available())"
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

if [ "$SMOKE" = 1 ]; then
    export OMP_NUM_THREADS=1
    DEV=(trainer=cpu)
    BENCH_DEV=(--device cpu --threads 1)
    TINY=(data.train_subset=512 data.val_subset=256 data.test_subset=64)
    AT=(trainer.max_epochs=1 defense.steps=2 defense.robust_val_samples=32 attack.autoattack.steps=5
        attack.autoattack.queries=20 "${TINY[@]}")
    S6=(trainer.max_epochs=1 "${TINY[@]}")
    ROB=(attack.pgd.steps=2 attack.pgd_margin.steps=2 attack.pgd_temperature.steps=2 attack.cw.steps=2
        attack.cw.binary_search_steps=1 "${TINY[@]}")
    PEER=(--models mnist_cnn --batch 8 --rounds 1 --pgd-steps 2 --attacks fgsm-sweep pgd-linf pgd-linf-fast)
    FAST=(--models mnist_cnn --batch 8 --steps 2 --rounds 1 --paths packed)
else
    DEV=(trainer=gpu)
    BENCH_DEV=(--device cuda)
    # as long a training as the session affords, then the full evaluation
    AT=(trainer.max_epochs=100 +trainer.max_time=00:00:03:30 data.batch_size=128)
    S6=()
    ROB=(attack.pgd.max_samples=null attack.pgd_margin.max_samples=null attack.pgd_temperature.max_samples=null
        attack.cw.max_samples=1000)
    PEER=(--models resnet101 alexnet regnet_y_400mf --batch 128 --rounds 3 --pgd-steps 10
        --attacks fgsm-sweep pgd-linf pgd-linf-fast)
    FAST=(--models mnist_cnn --batch 1000 --steps 40 --rounds 3 --paths packed compile)
fi

# 1. issue 11: a defence that holds, judged by AutoAttack on the whole test set
step at_autoattack 330 $PY -m advlab "${DEV[@]}" logger=csv defense=adversarial_training \
    +model@defense.model=madry_cnn defense.method=pgd defense.eps=0.3 defense.steps=40 \
    defense.step_size=0.01 defense.ramp_epochs=1 attack=autoattack "hydra.run.dir=$OUT/at_autoattack" \
    "${AT[@]}"

# 2. issue 13: §VI end to end (target < 60 s on an H100), then its robustness table
step section6 150 $PY -m advlab "${DEV[@]}" logger=csv experiment=paper_mnist_distillation \
    "hydra.run.dir=$OUT/section6" "${S6[@]}"
if [ -f "$OUT/section6/student.pt" ]; then
    step section6_robustness 120 $PY -m advlab "${DEV[@]}" logger=csv experiment=mnist_robustness \
        "model.checkpoint=$OUT/section6/undefended.pt" "defense.student.model.checkpoint=$OUT/section6/student.pt" \
        "hydra.run.dir=$OUT/section6_robustness" "${ROB[@]}"
fi

# 3. issue 13: the peer rows on the ImageNet models
step peer_imagenet 180 $PY benchmarks/peer.py "${BENCH_DEV[@]}" "${PEER[@]}" --out "$OUT/peer_imagenet.md"

# 4. issue 13: what packing and compiling buy where one MNIST batch does not fill the device
step fast_paths 90 $PY benchmarks/fast_paths.py "${BENCH_DEV[@]}" "${FAST[@]}" --out "$OUT/fast_paths_mnist.md"

cat "$OUT/steps.txt"
