// ConfigSources (YAML + overrides -> typed structs) and ConfigWriter (structs -> YAML).
#include "core/config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <type_traits>

#include "core/atomic_file.h"
#include "core/errors.h"

namespace vitruvian {

void ConfigVisitor::section(const std::string& name, const std::function<void(ConfigVisitor&)>& body) {
  prefix_.push_back(name);
  try {
    body(*this);
  } catch (...) {
    prefix_.pop_back();
    throw;
  }
  prefix_.pop_back();
}

std::string ConfigVisitor::qualified(const std::string& key) const {
  std::string out;
  for (const auto& part : prefix_) {
    if (part.empty()) continue;
    out += part + ".";
  }
  return out + key;
}

namespace {

struct Entry {
  YAML::Node value;
  std::string origin;  // "file.yaml:12" or "--set key=value"
  std::string file;    // the YAML file it came from ("" for overrides): relative paths start there
  int line = 0;        // 1-based line in `file` (0 for overrides)
};

bool is_index(const std::string& part) {
  return !part.empty() && part.size() < 10 && part.find_first_not_of("0123456789") == std::string::npos;
}

std::string type_name(const bool*) { return "true or false"; }
std::string type_name(const int*) { return "an integer"; }
std::string type_name(const std::int64_t*) { return "an integer"; }
std::string type_name(const double*) { return "a number"; }
std::string type_name(const std::string*) { return "a string"; }
std::string type_name(const std::vector<std::int64_t>*) { return "a list of integers"; }
std::string type_name(const std::vector<double>*) { return "a list of numbers"; }
std::string type_name(const std::vector<std::string>*) { return "a list of strings"; }

void set_flow_style(YAML::Node node) {
  node.SetStyle(YAML::EmitterStyle::Flow);
  if (node.IsSequence()) {
    for (auto item : node) set_flow_style(item);
  } else if (node.IsMap()) {
    for (auto item : node) set_flow_style(item.second);
  }
}

/// A value as one line of YAML, for messages: flow style throughout (a parsed node keeps the
/// block style of its file, which the emitter follows), any line break left in it a space.
std::string render(const YAML::Node& node) {
  const YAML::Node copy = YAML::Clone(node);
  set_flow_style(copy);
  YAML::Emitter out;
  out << YAML::Flow << copy;
  std::string text = out.c_str();
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string parent_of(const std::string& key) {
  const auto dot = key.rfind('.');
  return dot == std::string::npos ? std::string() : key.substr(0, dot);
}

/// Reads fields out of the merged entries.
class Reader final : public ConfigVisitor {
 public:
  Reader(std::map<std::string, Entry>& entries, std::set<std::string>& known) : entries_(entries), known_(known) {}
  void field(const std::string& k, bool& v, const char*) override { scalar(k, v); }
  void field(const std::string& k, int& v, const char*) override { scalar(k, v); }
  void field(const std::string& k, std::int64_t& v, const char*) override { scalar(k, v); }
  void field(const std::string& k, double& v, const char*) override { scalar(k, v); }
  void field(const std::string& k, std::string& v, const char*) override { scalar(k, v); }
  void field(const std::string& k, std::vector<std::int64_t>& v, const char*) override { list(k, v); }
  void field(const std::string& k, std::vector<double>& v, const char*) override { list(k, v); }
  void field(const std::string& k, std::vector<std::string>& v, const char*) override { list(k, v); }
  void field(const std::string& k, std::filesystem::path& v, const char*) override {
    std::string text;
    scalar(k, text);
    if (const Entry* entry = find(k)) v = resolve(*entry, text);
  }
  void field(const std::string& k, std::vector<std::filesystem::path>& v, const char*) override {
    std::vector<std::string> texts;
    list(k, texts);
    const Entry* entry = find(k);
    if (entry == nullptr) return;
    v.clear();
    for (const auto& text : texts) v.push_back(resolve(*entry, text));
  }

 protected:
  std::size_t item_count(const std::string& key, std::size_t current, const char* help) override {
    const std::string full = qualified(key);
    known_.insert(full);
    if (const Entry* whole = find(key)) {  // "routes: []" (or a value that is not a list of mappings)
      if (whole->value.IsSequence() && whole->value.size() == 0) return 0;
      throw ConfigError(whole->origin, "'" + full + "' is " + render(whole->value) + ", expected " + help);
    }
    std::set<std::size_t> indices;
    for (auto it = entries_.lower_bound(full + "."); it != entries_.end() && it->first.rfind(full + ".", 0) == 0; ++it) {
      const std::string rest = it->first.substr(full.size() + 1);
      const std::string part = rest.substr(0, rest.find('.'));
      if (!is_index(part) || part == rest) {
        throw ConfigError(it->second.origin, "'" + it->first + "' does not fit '" + full + "', expected " + help);
      }
      indices.insert(std::stoul(part));
    }
    if (indices.empty()) return current;
    std::size_t next = 0;
    for (const auto index : indices) {
      if (index != next) {
        throw ConfigError(origin_under(full + "." + std::to_string(index) + "."),
                          "'" + full + "." + std::to_string(index) + "' skips item " + std::to_string(next) + " of '" +
                              full + "'; items are numbered from 0 without gaps");
      }
      ++next;
    }
    return next;
  }

 private:
  std::string origin_under(const std::string& prefix) const {
    const auto it = entries_.lower_bound(prefix);
    return it == entries_.end() ? prefix : it->second.origin;
  }
  static std::filesystem::path resolve(const Entry& entry, const std::string& text) {
    const std::filesystem::path path(text);
    if (text.empty() || path.is_absolute() || entry.file.empty()) return path;
    return (std::filesystem::path(entry.file).parent_path() / path).lexically_normal();
  }
  const Entry* find(const std::string& key) {
    const std::string full = qualified(key);
    known_.insert(full);
    const auto it = entries_.find(full);
    return it == entries_.end() ? nullptr : &it->second;
  }
  [[noreturn]] void bad(const std::string& key, const Entry& entry, const std::string& expected) {
    throw ConfigError(entry.origin, "'" + qualified(key) + "' is " + render(entry.value) + ", expected " + expected);
  }
  /// Config text is printable: a control character other than tab or a line break (a stray
  /// carriage return, say) is refused here, as neither a value nor a name can mean it and the
  /// YAML written back could not keep it.
  void check_text(const std::string& key, const Entry& entry, const std::string& text) {
    const auto control = std::find_if(text.begin(), text.end(), [](char c) {
      const auto u = static_cast<unsigned char>(c);
      return (u < 0x20 && c != '\t' && c != '\n') || u == 0x7f;
    });
    if (control == text.end()) return;
    throw ConfigError(entry.origin, fmt::format("'{}' holds the control character 0x{:02X} at position {}; expected "
                                                "printable text",
                                                qualified(key), static_cast<unsigned char>(*control),
                                                control - text.begin()));
  }
  template <class T>
  void scalar(const std::string& key, T& value) {
    const Entry* entry = find(key);
    if (entry == nullptr) return;
    if (!entry->value.IsScalar()) bad(key, *entry, type_name(&value));
    T read{};
    try {
      read = entry->value.as<T>();
    } catch (const YAML::Exception&) {
      bad(key, *entry, type_name(&value));
    }
    if constexpr (std::is_same_v<T, std::string>) check_text(key, *entry, read);
    value = std::move(read);
  }
  template <class T>
  void list(const std::string& key, std::vector<T>& value) {
    const Entry* entry = find(key);
    if (entry == nullptr) return;
    if constexpr (std::is_same_v<T, std::string>) {
      if (entry->value.IsScalar()) {  // one text for a list of texts
        std::string text = entry->value.as<std::string>();
        check_text(key, *entry, text);
        value = {std::move(text)};
        return;
      }
    }
    if (!entry->value.IsSequence()) bad(key, *entry, type_name(&value));
    std::vector<T> out;
    try {
      for (const auto& item : entry->value) {
        if (!item.IsScalar()) bad(key, *entry, type_name(&value));
        out.push_back(item.as<T>());
      }
    } catch (const YAML::Exception&) {
      bad(key, *entry, type_name(&value));
    }
    if constexpr (std::is_same_v<T, std::string>) {
      for (const auto& text : out) check_text(key, *entry, text);
    }
    value = std::move(out);
  }

  std::map<std::string, Entry>& entries_;
  std::set<std::string>& known_;
};

/// Builds a YAML tree out of fields.
class Emitter final : public ConfigVisitor {
 public:
  explicit Emitter(YAML::Node& root) : root_(root) {}
  void field(const std::string& k, bool& v, const char*) override { put(k, v); }
  void field(const std::string& k, int& v, const char*) override { put(k, v); }
  void field(const std::string& k, std::int64_t& v, const char*) override { put(k, v); }
  void field(const std::string& k, double& v, const char*) override { put(k, v); }
  void field(const std::string& k, std::string& v, const char*) override { put(k, v); }
  void field(const std::string& k, std::vector<std::int64_t>& v, const char*) override { put(k, v); }
  void field(const std::string& k, std::vector<double>& v, const char*) override { put(k, v); }
  void field(const std::string& k, std::vector<std::string>& v, const char*) override { put(k, v); }
  void field(const std::string& k, std::filesystem::path& v, const char*) override { put(k, v.string()); }
  void field(const std::string& k, std::vector<std::filesystem::path>& v, const char*) override {
    std::vector<std::string> texts;
    for (const auto& p : v) texts.push_back(p.string());
    put(k, texts);
  }

 protected:
  std::size_t item_count(const std::string& key, std::size_t current, const char*) override {
    put(key, YAML::Node(YAML::NodeType::Sequence));
    return current;
  }

 private:
  template <class T>
  void put(const std::string& key, const T& value) {
    std::stringstream parts(qualified(key));
    std::string part;
    std::vector<std::string> path;
    while (std::getline(parts, part, '.')) path.push_back(part);
    put_path(root_, path, 0, value);
  }
  /// Numeric parts index the sequence item_count() created (items are visited in order, so an
  /// index is at most one past the end).
  template <class T>
  static void put_path(YAML::Node node, const std::vector<std::string>& path, size_t i, const T& value) {
    if (is_index(path[i]) && node.IsSequence()) {
      const std::size_t index = std::stoul(path[i]);
      if (index == node.size()) node.push_back(YAML::Node(YAML::NodeType::Map));
      if (i + 1 == path.size()) {
        node[index] = value;
      } else {
        put_path(node[index], path, i + 1, value);
      }
      return;
    }
    if (i + 1 == path.size()) {
      node[path[i]] = value;
      return;
    }
    put_path(node[path[i]], path, i + 1, value);
  }
  YAML::Node& root_;
};

}  // namespace

struct ConfigSources::Impl {
  std::map<std::string, Entry> entries;
  std::set<std::string> known;

  void flatten(const YAML::Node& node, const std::string& prefix, const std::string& file) {
    for (const auto& item : node) {
      const int line = item.first.Mark().line + 1;
      const std::string origin = file + ":" + std::to_string(line);
      if (!item.first.IsScalar()) {
        throw ConfigError(origin, "a key is " + render(item.first) + "; expected a plain name (a complex '? ' key?)");
      }
      const std::string key = item.first.as<std::string>();
      const std::string full = prefix.empty() ? key : prefix + "." + key;
      if (key.empty() || key.find('.') != std::string::npos) {
        throw ConfigError(origin, "key '" + key + "' is not a plain name (no dots; nest mappings instead)");
      }
      if (item.second.IsMap()) {
        flatten(item.second, full, file);
      } else if (item.second.IsNull()) {
        throw ConfigError(origin, "'" + full + "' has no value");
      } else if (is_list_of_sections(item.second, origin, full)) {
        // A list of mappings (a campaign's routes): item i's keys become "<key>.<i>.<field>".
        // It replaces the whole list of an earlier source.
        erase_under(full);
        for (std::size_t i = 0; i < item.second.size(); ++i) flatten(item.second[i], full + "." + std::to_string(i), file);
      } else {
        erase_under(full);
        entries[full] = Entry{item.second, origin, file, line};
      }
    }
  }
  static bool is_list_of_sections(const YAML::Node& node, const std::string& origin, const std::string& key) {
    if (!node.IsSequence() || node.size() == 0) return false;
    std::size_t maps = 0;
    for (const auto& element : node) maps += element.IsMap() ? 1 : 0;
    if (maps != 0 && maps != node.size()) {
      throw ConfigError(origin, "'" + key + "' mixes mappings and plain values; expected a list of one or the other");
    }
    return maps != 0;
  }
  /// Removes what an earlier source gave for `key` and below (a later source replaces it).
  void erase_under(const std::string& key) {
    entries.erase(key);
    const std::string prefix = key + ".";
    auto it = entries.lower_bound(prefix);
    while (it != entries.end() && it->first.rfind(prefix, 0) == 0) it = entries.erase(it);
  }
};

ConfigSources::ConfigSources() : impl_(std::make_unique<Impl>()) {}
ConfigSources::~ConfigSources() = default;
ConfigSources::ConfigSources(ConfigSources&&) noexcept = default;
ConfigSources& ConfigSources::operator=(ConfigSources&&) noexcept = default;

void ConfigSources::add_text(const std::string& yaml, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(origin + ":" + std::to_string(e.mark.line + 1), "not valid YAML: " + e.msg);
  }
  if (root.IsNull()) return;  // an empty file sets nothing
  if (!root.IsMap()) throw ConfigError(origin, "expected a YAML mapping of keys to values at the top level");
  impl_->flatten(root, "", origin);
}

void ConfigSources::add_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path.string(), "cannot open the config file (expected a readable YAML file)");
  std::stringstream text;
  text << in.rdbuf();
  add_text(text.str(), path.string());
}

void ConfigSources::add_override(const std::string& assignment) {
  const std::string origin = "--set " + assignment;
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) throw ConfigError(origin, "expected KEY=VALUE, e.g. runtime.device=cpu");
  const std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::Exception&) {
    value = YAML::Node(text);
  }
  if (value.IsNull()) throw ConfigError(origin, "'" + key + "' has no value");
  if (value.IsMap()) throw ConfigError(origin, "a mapping cannot be set at once; set each 'key.sub=value'");
  impl_->entries[key] = Entry{value, origin, "", 0};
}

void ConfigSources::set(const std::string& key, const std::string& value, const std::string& origin) {
  impl_->entries[key] = Entry{YAML::Node(value), origin, "", 0};
}

void ConfigSources::set(const std::string& key, const std::vector<std::string>& values, const std::string& origin) {
  YAML::Node list(YAML::NodeType::Sequence);
  for (const auto& v : values) list.push_back(v);
  impl_->entries[key] = Entry{list, origin, "", 0};
}

std::size_t ConfigSources::list_size(const std::string& key) const {
  std::set<std::size_t> indices;
  const std::string prefix = key + ".";
  for (auto it = impl_->entries.lower_bound(prefix); it != impl_->entries.end() && it->first.rfind(prefix, 0) == 0; ++it) {
    const std::string part = it->first.substr(prefix.size(), it->first.find('.', prefix.size()) - prefix.size());
    if (is_index(part)) indices.insert(std::stoul(part));
  }
  return indices.empty() ? 0 : *indices.rbegin() + 1;
}

std::string ConfigSources::origin_of(const std::string& prefix) const {
  const Entry* earliest = nullptr;
  const std::string under = prefix + ".";
  for (auto it = impl_->entries.lower_bound(prefix); it != impl_->entries.end() && it->first.rfind(prefix, 0) == 0; ++it) {
    if (it->first != prefix && it->first.rfind(under, 0) != 0) continue;
    const Entry& e = it->second;
    // A file's line says more than an override; within one file the first line wins.
    const bool better = earliest == nullptr || (earliest->file.empty() && !e.file.empty()) ||
                        (e.file == earliest->file && e.line < earliest->line);
    if (better) earliest = &e;
  }
  return earliest == nullptr ? std::string() : earliest->origin;
}

void ConfigSources::read(const std::string& section, const ConfigVisit& visit) {
  Reader reader(impl_->entries, impl_->known);
  reader.section(section, visit);
}

bool ConfigSources::contains(const std::string& key) const { return impl_->entries.count(key) != 0; }

void ConfigSources::check_all_used() const {
  for (const auto& [key, entry] : impl_->entries) {
    if (impl_->known.count(key)) continue;
    std::string message = "unknown key '" + key + "'";
    std::string best;
    size_t best_distance = 4;
    std::vector<std::string> siblings;
    for (const auto& known : impl_->known) {
      const size_t distance = edit_distance(key, known);
      if (distance < best_distance) best_distance = distance, best = known;
      if (parent_of(known) == parent_of(key)) siblings.push_back(known.substr(parent_of(key).empty() ? 0 : parent_of(key).size() + 1));
    }
    if (!best.empty()) message += " (did you mean '" + best + "'?)";
    if (!siblings.empty()) {
      message += "; known keys" + (parent_of(key).empty() ? std::string() : " under '" + parent_of(key) + "'") + ":";
      for (size_t i = 0; i < siblings.size(); ++i) message += (i ? ", " : " ") + siblings[i];
    }
    throw ConfigError(entry.origin, message);
  }
}

struct ConfigWriter::Impl {
  YAML::Node root{YAML::NodeType::Map};
};

ConfigWriter::ConfigWriter() : impl_(std::make_unique<Impl>()) {}
ConfigWriter::~ConfigWriter() = default;

void ConfigWriter::add(const std::string& section, const ConfigVisit& visit) {
  Emitter emitter(impl_->root);
  emitter.section(section, visit);
}

std::string ConfigWriter::str() const {
  YAML::Emitter out;
  out << impl_->root;
  return std::string(out.c_str()) + "\n";
}

void ConfigWriter::write(const std::filesystem::path& path) const { write_file_atomic(path, str()); }

}  // namespace vitruvian
