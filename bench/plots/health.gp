# Shared health under an outage: calls per second reaching the primary model, per configuration.
# Usage: gnuplot -e "dir='docs/bench'" bench/plots/health.gp   (reads health_series.csv, writes health.png)
if (!exists("dir")) dir = "docs/bench"
set datafile separator ","
set terminal pngcairo size 1100,520 font "DejaVu Sans,11"
set output dir."/health.png"
set title "Primary model down from 30 s to 90 s; 100 requests/s offered; calls/s reaching the primary"
set grid
set xlabel "time (s)"
set ylabel "calls per second to the primary"
set xrange [0:160]
set key top right
set object 1 rect from 30, graph 0 to 90, graph 1 fc rgb "#f2dede" fs solid 0.5 noborder behind
plot dir."/health_series.csv" using 1:2 skip 1 with lines lw 2 lc rgb "#d62728" title "retries only", \
     ""                        using 1:3 skip 1 with lines lw 2 lc rgb "#ff7f0e" title "retry budget", \
     ""                        using 1:4 skip 1 with lines lw 2 lc rgb "#1f77b4" title "circuit breaker", \
     ""                        using 1:5 skip 1 with lines lw 2 dt 2 lc rgb "#2ca02c" title "breaker + budget"
