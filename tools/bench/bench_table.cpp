#include "bench_table.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace bench {
namespace {

// Terminal columns of a UTF-8 string: its code points (the table holds no wide characters).
std::size_t columns(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool usable(double v) {
  return std::isfinite(v) && v >= 0;
}

}  // namespace

std::string format_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    if (row.size() > width.size()) width.resize(row.size(), 0);
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], columns(row[c]));
  }
  std::string out;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    std::string line;
    for (std::size_t c = 0; c < rows[r].size(); ++c) {
      const std::string& cell = rows[r][c];
      std::string pad(width[c] - columns(cell), ' ');
      if (c > 0) line += "  ";
      line += c == 0 ? cell + pad : pad + cell;
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + '\n';
    if (r == 0) {
      std::size_t total = 0;
      for (std::size_t c = 0; c < width.size(); ++c) total += width[c] + (c > 0 ? 2 : 0);
      out += std::string(total, '-') + '\n';
    }
  }
  return out;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + '"';
}

std::string fixed(double v, int decimals) {
  if (!std::isfinite(v) || v < 0) return "-";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

std::string ratio(double value, double reference) {
  if (!std::isfinite(value) || !std::isfinite(reference) || value < 0 || reference <= 0) return "-";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.2fx", value / reference);
  return buf;
}

}  // namespace bench

namespace bench {

double median(std::vector<double> samples) {
  std::erase_if(samples, [](double v) { return !usable(v); });
  if (samples.empty()) return -1;
  std::sort(samples.begin(), samples.end());
  std::size_t n = samples.size();
  return n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
}

std::string grouped(double v) {
  if (!usable(v)) return "-";
  std::string digits = std::to_string(static_cast<unsigned long long>(std::llround(v)));
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string compact(double v) {
  if (!usable(v)) return "-";
  char buf[64];
  if (v < 1000)
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  else if (v < 1e6)
    std::snprintf(buf, sizeof(buf), "%.1fk", v / 1e3);
  else
    std::snprintf(buf, sizeof(buf), "%.2fM", v / 1e6);
  return buf;
}

std::string median_spread(const std::vector<double>& samples) {
  std::vector<double> ok;
  for (double v : samples) {
    if (usable(v)) ok.push_back(v);
  }
  if (ok.empty()) return "-";
  std::string cell = grouped(median(ok));
  if (ok.size() == 1) return cell;
  auto [lo, hi] = std::minmax_element(ok.begin(), ok.end());
  return cell + " (" + compact(*lo) + "\u2013" + compact(*hi) + ")";
}

}  // namespace bench
