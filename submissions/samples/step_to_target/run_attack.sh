#!/bin/sh
# Usage: run_attack.sh INPUT_DIR OUTPUT_DIR EPSILON  (INPUT_DIR holds target_class.csv)
exec python3 attack.py "$@"
