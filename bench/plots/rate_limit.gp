# Rate-limit capacity: 429s, makespan, p99 completion and share served against the number of
# clients, for one server-wait form and one attempt budget.
# Usage: gnuplot -e "dir='docs/bench'; file='rate_limit.csv'; server='none'; out='rate_limit_none.png'" bench/plots/rate_limit.gp
if (!exists("dir")) dir = "docs/bench"
if (!exists("file")) file = "rate_limit.csv"
if (!exists("server")) server = "none"
if (!exists("out")) out = "rate_limit_".server.".png"
if (!exists("subtitle")) subtitle = "5 attempts per request"
set datafile separator ","
set terminal pngcairo size 1400,1000 font "DejaVu Sans,11"
set output dir."/".out
array S[8] = ["library default", "no jitter 1s x2", "SDK style", "LiteLLM style", "full jitter", "decorrelated", "library full jitter", "library decorrelated"]
array C[8] = ["#9467bd", "#d62728", "#ff7f0e", "#8c564b", "#1f77b4", "#2ca02c", "#e377c2", "#17becf"]
array D[8] = [1, 1, 1, 1, 1, 1, 2, 2]
hint = server eq "none" ? "no server wait" : server." header"
set multiplot layout 2,2 title sprintf("Token bucket 100/s, burst 100; all clients call at t = 0; %s; %s; 50 trials per point", hint, subtitle)
set grid
set xlabel "clients"
set key top left
sel(i) = strcol(1) eq server && strcol(3) eq S[i]
set ylabel "429 responses per burst"
plot for [i=1:8] dir."/".file using (sel(i) ? $4 : 1/0):8 skip 1 \
     with linespoints lw 2 dt D[i] pt 7 ps 0.6 lc rgb C[i] title S[i]
set logscale y
set ylabel "makespan (s, log scale): last client done"
plot for [i=1:8] dir."/".file using (sel(i) ? $4 : 1/0):9 skip 1 \
     with linespoints lw 2 dt D[i] pt 7 ps 0.6 lc rgb C[i] title S[i]
set ylabel "p99 completion of served requests (s, log scale)"
plot for [i=1:8] dir."/".file using (sel(i) ? $4 : 1/0):11 skip 1 \
     with linespoints lw 2 dt D[i] pt 7 ps 0.6 lc rgb C[i] title S[i]
unset logscale y
set ylabel "requests served (%)"
set yrange [0:105]
set key bottom left
plot for [i=1:8] dir."/".file using (sel(i) ? $4 : 1/0):6 skip 1 \
     with linespoints lw 2 dt D[i] pt 7 ps 0.6 lc rgb C[i] title S[i]
unset multiplot
