#!/usr/bin/env bash
# Reproduce the paper's Figures 2-5 and Table 1: run the notebooks in order with papermill.
# Works on a fresh machine: creates .venv if no environment is active (as run_tests.sh does), installs the
# project, then runs `python -m gradscorecam.pipeline run` with the arguments given here, e.g.
#
#   ./run_all.sh                                  # profile "sample": pretrained weights, built-in photographs
#   ./run_all.sh --profile smoke                  # random weights, 2 images: a pipeline check (minutes, CPU)
#   ./run_all.sh --profile paper --imagenet-val /data/ILSVRC2012/val --device cuda
#   ./run_all.sh --model-file my_model.py --images my_images/labels.csv
#   ./run_all.sh merge results/paper/table1_shard*.csv --output results/paper/table1_merged.csv
#   ./run_all.sh report --out results/paper         # rebuild results/paper/report/index.html from that run
#   ./run_all.sh explore [--model-file F] [--images SRC] [--port 8866] [--no-browser]   # the explorer as a web app
#
# ./run_all.sh --help lists every option.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_env.sh
case "${1:-}" in
    merge|run) exec python -m gradscorecam.pipeline "$@" ;;
    report) shift; exec python -m gradscorecam.report "$@" ;;
    explore) shift; exec python -m gradscorecam.explorer.app "$@" ;;
    -h|--help)
        python -m gradscorecam.pipeline run --help
        printf '\nOther commands (each takes --help): merge SHARDS --output CSV | report [--out DIR] | explore [--model-file F]\n'
        exit 0 ;;
    *) exec python -m gradscorecam.pipeline run "$@" ;;
esac
