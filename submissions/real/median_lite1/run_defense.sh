#!/bin/sh
# Usage: run_defense.sh INPUT_DIR OUTPUT_FILE
exec python3 defense.py "$@"
