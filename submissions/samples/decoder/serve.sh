#!/bin/sh
# Usage: serve.sh (queries on stdin, labels on stdout: docs/query-track.md)
exec python3 serve.py
