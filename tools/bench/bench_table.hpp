// Text output for reactor-bench: an aligned plain-text table and CSV fields.
#pragma once

#include <string>
#include <vector>

namespace bench {

// Columns padded to their widest cell; the first column left-aligned, the others right-aligned;
// a dashed rule under the first (header) row. Rows may be shorter than the header.
std::string format_table(const std::vector<std::vector<std::string>>& rows);

// A CSV field, quoted when it holds a comma, quote or newline.
std::string csv_field(const std::string& s);

// "12345", "1.23", "-" for a missing value (negative or non-finite).
std::string fixed(double v, int decimals);
// "0.87x", or "-" when either side is missing.
std::string ratio(double value, double reference);

// The median of the finite, non-negative samples (the mean of the middle two for an even
// count); -1 when there are none.
double median(std::vector<double> samples);
// "49,025": rounded, with thousands separators; "-" for a missing value.
std::string grouped(double v);
// "812", "47.1k", "1.23M": three significant digits or so; "-" for a missing value.
std::string compact(double v);
// The table cell of R samples: "49,025 (47.1k–50.2k)" (median, then min–max); one sample: just
// the value; none: "-".
std::string median_spread(const std::vector<double>& samples);

}  // namespace bench
