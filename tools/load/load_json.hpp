// Just enough JSON for the tools: a streaming writer (reactor-load's one-object report,
// reactor-bench's results.json) and a small tree parser (reactor-bench and the tests read
// reactor-load's report back). Numbers keep their source text so 64-bit counters stay exact.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace load {

class JsonWriter {
 public:
  JsonWriter& begin_object(std::string_view key = {});
  JsonWriter& end_object();
  JsonWriter& begin_array(std::string_view key = {});
  JsonWriter& end_array();
  JsonWriter& field(std::string_view key, std::string_view value);
  JsonWriter& field(std::string_view key, const char* value) {
    return field(key, std::string_view(value));
  }
  JsonWriter& field(std::string_view key, std::uint64_t value);
  JsonWriter& field(std::string_view key, std::int64_t value);
  JsonWriter& field(std::string_view key, int value) { return field(key, std::int64_t{value}); }
  JsonWriter& field(std::string_view key, double value);  // non-finite -> null
  JsonWriter& field(std::string_view key, bool value);
  JsonWriter& null_field(std::string_view key);
  // A value that is already JSON text (e.g. another tool's report), inserted as is.
  JsonWriter& raw_field(std::string_view key, std::string_view json);
  // Array elements: the same calls with an empty key.
  const std::string& str() const { return out_; }

 private:
  void key(std::string_view k);
  std::string out_;
  std::vector<bool> first_;  // per open container: nothing written yet
};

std::string json_escape(std::string_view s);
// A double as JSON: integral values without a fraction, others to 10 significant digits,
// non-finite ones as null.
std::string json_number(double v);

class JsonValue {
 public:
  enum class Kind { null, boolean, number, string, array, object };

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::null; }
  bool is_number() const { return kind_ == Kind::number; }
  bool is_object() const { return kind_ == Kind::object; }
  bool is_array() const { return kind_ == Kind::array; }
  bool is_string() const { return kind_ == Kind::string; }

  double as_double() const { return number_; }
  // Exact for integer text; otherwise the double truncated. 0 for non-numbers.
  std::uint64_t as_u64() const;
  bool as_bool() const { return boolean_; }
  const std::string& as_string() const { return text_; }
  const std::vector<JsonValue>& items() const { return items_; }
  const std::vector<std::pair<std::string, JsonValue>>& members() const { return members_; }
  // Object member by key, or nullptr.
  const JsonValue* find(std::string_view key) const;
  // Convenience for reports: the member's number, or `fallback` when absent/not a number.
  double number_or(std::string_view key, double fallback) const;
  std::uint64_t u64_or(std::string_view key, std::uint64_t fallback) const;

  // Whole text must be one JSON value (surrounding whitespace allowed).
  static std::optional<JsonValue> parse(std::string_view text, std::string* error = nullptr);

 private:
  friend class JsonParser;
  Kind kind_ = Kind::null;
  bool boolean_ = false;
  double number_ = 0;
  std::string text_;  // string value, or a number's source text
  std::vector<JsonValue> items_;
  std::vector<std::pair<std::string, JsonValue>> members_;
};

}  // namespace load
