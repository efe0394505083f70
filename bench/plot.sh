#!/usr/bin/env bash
# Draws bench/plots/throughput.png and latency.png (gnuplot, Debian's gnuplot-nox) from the data
# files bench/run_all.sh leaves beside them, so that a plot can be redrawn without a new run.
#   throughput.dat: in_flight empty_grpc anyai_grpc nginx anyai_http   (calls/s, closed loop)
#   latency.dat:    x "label" p50 p90 p99 p99.9                         (µs, open loop)
# Usage: bench/plot.sh [plots_dir=bench/plots] [title_note]
set -euo pipefail
cd "$(dirname "$0")/.."
plots=${1:-bench/plots}
note=${2:-}
n=$(awk 'END {print $1 + 1}' "$plots/latency.dat")
gnuplot <<GP
set terminal pngcairo size 960,560 font "sans,10" noenhanced
set output "$plots/throughput.png"
set title "Throughput against concurrency (closed loop, loopback) $note"
set xlabel "calls in flight"; set ylabel "calls per second"
set logscale x 2; set xrange [0.8:320]; set xtics (1,4,16,64,256); set grid; set key top left
set yrange [0:*]
plot "$plots/throughput.dat" u 1:2 w lp lw 2 t "empty gRPC service (bench/grpc_load)", \
     "" u 1:3 w lp lw 2 t "anyai gRPC CreateChatCompletion, admitted (bench/grpc_load)", \
     "" u 1:4 w lp lw 2 t "nginx limit_req + static body (wrk)", \
     "" u 1:5 w lp lw 2 t "anyai HTTP POST /v1/chat/completions, admitted (wrk)"
set output "$plots/latency.png"
set title "Open-loop latency at 25/50/75% of each target's closed-loop peak (h2load --rps) $note"
unset logscale x; set logscale y; set ylabel "latency, µs (log scale)"; set xlabel ""
set xrange [-0.7:$n - 0.3]; set yrange [100:*]; set bmargin 6
set xtics rotate by -35 font ",9"; set key top left
set arrow from graph 0, first 1000 to graph 1, first 1000 nohead dt 2 lc rgb "red"
set label "1 ms: the p99 target at 50% of the peak" at graph 0.01, first 1150 tc rgb "red"
plot "$plots/latency.dat" u 1:(\$3>0?\$3:1/0):xtic(2) w p pt 7 ps 1.2 t "p50", \
     "" u 1:(\$4>0?\$4:1/0) w p pt 5 ps 1.2 t "p90", \
     "" u 1:(\$5>0?\$5:1/0) w p pt 9 ps 1.4 t "p99", \
     "" u 1:(\$6>0?\$6:1/0) w p pt 11 ps 1.4 t "p99.9"
GP
