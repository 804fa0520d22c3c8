# reactor-bench's chart: grouped bars per model with min-max error bars over the rounds,
# connections/s at 1, 16 and 64 concurrent clients on the left, pipelined echo messages/s on the
# right. reactor-bench runs it as
#   gnuplot -e "datafile='DIR/chart.dat'; outfile='DIR/chart.svg'" compare-chart.gnuplot
# chart.dat: "# header" then one line per model: "name", then median min max of conn_c1,
# conn_c16, conn_c64 and msgs_per_sec (13 columns).
if (!exists("datafile")) datafile = 'chart.dat'
if (!exists("outfile")) outfile = 'chart.svg'

set terminal svg size 1400,520 dynamic enhanced font 'sans,11' background rgb 'white'
set output outfile
set multiplot layout 1,2 title "reactor: echo server models (higher is better; bars: median, whiskers: min-max over rounds)"

set style data histograms
set style histogram errorbars gap 1 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set format y "%.0s%c"
set key outside bottom center horizontal
set xtics nomirror rotate by -30

set title "connections per second (connect, 64 B echo, close)"
set ylabel "conn/s"
plot datafile using 2:3:4:xtic(1) title "c=1" lc rgb '#9ecae1', \
     '' using 5:6:7 title "c=16" lc rgb '#4292c6', \
     '' using 8:9:10 title "c=64" lc rgb '#08519c'

set title "echo throughput (50 connections x 16 in flight x 64 B)"
set format y "%.1s%c"
set ylabel "messages/s"
plot datafile using 11:12:13:xtic(1) title "msgs/s" lc rgb '#31a354'

unset multiplot
