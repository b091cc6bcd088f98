#!/usr/bin/env bash
# figures-table.sh prints the figures that `make bench-figures` measured
# (the FIGURE lines the benchmarks in test/bench/figures_test.go log, in
# the go test output given as files or on stdin) as one Markdown table.
set -euo pipefail

awk '
  index($0, "FIGURE\t") {
    line = substr($0, index($0, "FIGURE\t") + 7)
    n = split(line, f, "\t")
    if (n != 5) next
    if (!rows) {
      print "| figure | value | raw baseline (same run) | ratio (value ÷ raw) | aim |"
      print "| --- | --- | --- | --- | --- |"
    }
    rows++
    printf "| %s | %s | %s | %s | %s |\n", f[1], f[2], f[3], f[4], f[5]
  }
  END { if (!rows) { print "no FIGURE lines found" > "/dev/stderr"; exit 1 } }
' "$@"
