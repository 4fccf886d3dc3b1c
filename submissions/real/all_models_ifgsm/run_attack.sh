#!/bin/sh
# Usage: run_attack.sh INPUT_DIR OUTPUT_DIR EPSILON
exec python3 attack.py "$@"
