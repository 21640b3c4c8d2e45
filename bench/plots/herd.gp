# The thundering herd: mean makespan and mean write calls against the number of clients.
# Usage: gnuplot -e "dir='docs/bench'" bench/plots/herd.gp   (reads herd.csv, writes herd.png)
if (!exists("dir")) dir = "docs/bench"
set datafile separator ","
set terminal pngcairo size 1400,560 font "DejaVu Sans,11"
set output dir."/herd.png"
array S[7] = ["no backoff", "exponential", "equal jitter", "full jitter", "decorrelated", "rising", "library default"]
array C[7] = ["#7f7f7f", "#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#e377c2", "#9467bd"]
set multiplot layout 1,2 title "Thundering herd: optimistic-concurrency writes, hop |N(10 ms, 2 ms)|, base 5 ms, cap 2 s, 100 trials per point"
set grid
set xlabel "clients"
set xrange [0:210]
set logscale y
set key top left
set ylabel "mean makespan (s, log scale)"
plot for [i=1:7] dir."/herd.csv" using (strcol(1) eq S[i] ? $2 : 1/0):($4/1000) skip 1 \
     with linespoints lw 2 pt 7 ps 0.6 lc rgb C[i] title S[i]
set ylabel "mean write calls (log scale)"
plot for [i=1:7] dir."/herd.csv" using (strcol(1) eq S[i] ? $2 : 1/0):6 skip 1 \
     with linespoints lw 2 pt 7 ps 0.6 lc rgb C[i] title S[i]
unset multiplot
