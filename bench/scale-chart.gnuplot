# reactor-bench --suite scale: echo throughput (median, min-max whiskers over rounds) against the
# number of connections held, log x, one line per model. reactor-bench runs it as
#   gnuplot -e "dir='DIR'; models='epoll poll fork'; outfile='DIR/scale.svg'" scale-chart.gnuplot
# DIR/scale-MODEL.dat: idle total msgs_median msgs_min msgs_max us_per_msg_median.
if (!exists("dir")) dir = '.'
if (!exists("models")) models = 'epoll'
if (!exists("outfile")) outfile = 'scale.svg'

set terminal svg size 1300,520 dynamic enhanced font 'sans,11' background rgb 'white'
set output outfile
set multiplot layout 1,2 title "echo of 50 active connections while idle connections are held (cf. Gammo et al., OLS 2004)"
set logscale x
set grid xtics ytics
set key outside bottom center horizontal
set xlabel "connections held (50 active + idle), log scale"
set xrange [40:25000]

set title "throughput (higher is better)"
set ylabel "messages/s"
set yrange [0:*]
set format y "%.1s%c"
plot for [m in models] dir.'/scale-'.m.'.dat' using 2:3:4:5 with yerrorlines lw 2 pt 7 title m

set title "server CPU per message (lower is better)"
set ylabel "us CPU / message"
set format y "%g"
plot for [m in models] dir.'/scale-'.m.'.dat' using 2:6 with linespoints lw 2 pt 7 title m

unset multiplot
