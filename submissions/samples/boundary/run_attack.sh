#!/bin/sh
# Usage: run_attack.sh INPUT_DIR OUTPUT_DIR QUERY_BUDGET (queries on stdout, answers on stdin)
exec python3 attack.py "$@"
