# The worker scaling curve of bench/scale.sh (which sets the variables below with gnuplot -e):
#   datafile  lines "workers tasks_per_s ideal_tasks_per_s steady_tasks_per_s"
#   outfile   the image to write
#   term      svg, pngcairo or png
#   cores     CPUs of the machine (the ceiling: cores x the one-worker rate)
#   base      tasks/s with one worker (same run)
#   subtitle  what ran
#   measured  the legend of the measured curve (what the clock covers)
if (term eq "svg") {
  set terminal svg size 820,520 dynamic enhanced font "sans,12" background rgb "white"
} else {
  if (term eq "pngcairo") {
    set terminal pngcairo size 820,520 enhanced font "sans,11" background rgb "white"
  } else {
    set terminal png size 820,520 font "sans,10" background rgb "white"
  }
}
set output outfile
set title sprintf("mesh workers: completed CPU-heavy tasks per second\n{/*0.8 %s}", subtitle)
set xlabel "worker processes"
set ylabel "completed tasks per second"
set xtics 1
set mxtics 1
stats datafile using 1 nooutput name "K"
stats datafile using 3 nooutput name "IDEAL"
set xrange [0.5:K_max + 0.5]
set yrange [0:IDEAL_max * 1.1]
set grid ytics lc rgb "#dddddd"
set key top left box opaque
set style line 1 lc rgb "#1f77b4" lw 2 pt 7 ps 1.4
set style line 2 lc rgb "#7f7f7f" lw 2 dt 2
set style line 3 lc rgb "#ff7f0e" lw 1.5 pt 5 ps 1.1
set style line 4 lc rgb "#d62728" lw 1.5 dt 3
plot datafile using 1:3 with lines ls 2 title "ideal linear (workers x tasks/s of 1 worker)", \
     cores * base with lines ls 4 title sprintf("%d CPU cores x tasks/s of 1 worker", cores), \
     datafile using 1:4 with linespoints ls 3 title "steady: first task started to last finished", \
     datafile using 1:2 with linespoints ls 1 title measured, \
     datafile using 1:2:(sprintf("%.0f", $2)) with labels offset 0,-1.2 notitle
