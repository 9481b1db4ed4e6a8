# Draws a headroom-bench-collector run's samples (the --csv file: seconds, cpu_seconds,
# cpu_percent, rss_mib) as one PNG: RSS (MiB, left axis) and CPU (% of one core, right axis)
# over the run, with the goals as dashed lines, so growth is visible at a glance.
# Usage: gnuplot -e "csv='run.csv'; png='run.png'; title='5 000 agents x 10 s'" benches/plot-collector.gp
# (gnuplot from Debian's gnuplot-nox.)
if (!exists("csv")) csv = 'collector.csv'
if (!exists("png")) png = 'collector.png'
if (!exists("title")) title = 'headroom-collector'
if (!exists("rss_goal")) rss_goal = 512
if (!exists("cpu_goal")) cpu_goal = 50
set terminal pngcairo size 1000,500 font 'sans,10'
set output png
set datafile separator ','
set key below horizontal
set title title
set xlabel 'minutes into the run'
set ylabel 'RSS (MiB)'
set y2label 'CPU (% of one core, per 10 s sample)'
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:100]
set grid
plot csv using ($1/60):4 skip 1 with lines lw 2 lc rgb '#3366cc' title 'RSS', \
     rss_goal with lines dt 2 lc rgb '#3366cc' title sprintf('RSS goal %d MiB', rss_goal), \
     csv using ($1/60):3 skip 1 axes x1y2 with lines lw 1 lc rgb '#cc3333' title 'CPU', \
     cpu_goal axes x1y2 with lines dt 2 lc rgb '#cc3333' title sprintf('CPU goal %d %%', cpu_goal)
