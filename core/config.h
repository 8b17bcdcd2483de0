// Typed configuration: each component has a plain struct with a visit(ConfigVisitor&) that
// names its fields (and lists of sections, such as a campaign's routes). ConfigSources merges
// YAML files and `--set key=value` overrides, fills the structs, and reports unknown keys (with
// file and line) and bad values as ConfigError. ConfigWriter turns the resolved structs back
// into YAML, saved next to a job's outputs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace vitruvian {

/// Visits the fields of a config struct. Keys are relative to the current section.
class ConfigVisitor {
 public:
  virtual ~ConfigVisitor() = default;
  virtual void field(const std::string& key, bool& value, const char* help) = 0;
  virtual void field(const std::string& key, int& value, const char* help) = 0;
  virtual void field(const std::string& key, std::int64_t& value, const char* help) = 0;
  virtual void field(const std::string& key, double& value, const char* help) = 0;
  virtual void field(const std::string& key, std::string& value, const char* help) = 0;
  virtual void field(const std::string& key, std::vector<std::int64_t>& value, const char* help) = 0;
  virtual void field(const std::string& key, std::vector<double>& value, const char* help) = 0;
  /// A single text is taken as a list of one.
  virtual void field(const std::string& key, std::vector<std::string>& value, const char* help) = 0;
  /// Paths: a relative path given in a file is taken from that file's folder; one given by an
  /// override or a flag, from the working folder (as given).
  virtual void field(const std::string& key, std::filesystem::path& value, const char* help) = 0;
  virtual void field(const std::string& key, std::vector<std::filesystem::path>& value, const char* help) = 0;

  /// Runs `body` with keys prefixed by "<name>.".
  void section(const std::string& name, const std::function<void(ConfigVisitor&)>& body);

  /// A list of sections under `key` (in YAML a sequence of mappings; item i's keys are
  /// "<key>.<i>.<field>", so `--set routes.1.overlap=0.5` reaches one item). Reading sizes
  /// `items` to what the sources give (keeping it when they give nothing); `body` visits each.
  template <class T>
  void items(const std::string& key, std::vector<T>& items, const std::function<void(ConfigVisitor&, T&)>& body,
             const char* help) {
    items.resize(item_count(key, items.size(), help));
    section(key, [&](ConfigVisitor& list) {
      for (std::size_t i = 0; i < items.size(); ++i) {
        list.section(std::to_string(i), [&](ConfigVisitor& item) { body(item, items[i]); });
      }
    });
  }

 protected:
  /// The dotted key of `key` within the current section.
  std::string qualified(const std::string& key) const;
  /// How many items the list `key` has: from the sources when reading (`current` when they
  /// give none); `current` when writing.
  virtual std::size_t item_count(const std::string& key, std::size_t current, const char* help) = 0;

 private:
  std::vector<std::string> prefix_;
};

/// A visit function for one section, e.g. [&](ConfigVisitor& v) { runtime.visit(v); }.
using ConfigVisit = std::function<void(ConfigVisitor&)>;

/// YAML files and overrides, merged in the order given (later wins), each key remembering where
/// it came from.
class ConfigSources {
 public:
  ConfigSources();
  ~ConfigSources();
  ConfigSources(ConfigSources&&) noexcept;
  ConfigSources& operator=(ConfigSources&&) noexcept;

  /// Adds a YAML file (a mapping). Throws ConfigError if it cannot be read or parsed.
  void add_file(const std::filesystem::path& path);
  /// Adds YAML text; `origin` names it in errors.
  void add_text(const std::string& yaml, const std::string& origin);
  /// Adds "dotted.key=value" (the value is read as YAML: 3, 0.5, true, [1, 2], text).
  void add_override(const std::string& assignment);
  /// Sets `key` to the text `value` as it is (not parsed as YAML: a file name stays a file
  /// name), or to a list of texts; `origin` names it in errors ("--out DIR").
  void set(const std::string& key, const std::string& value, const std::string& origin);
  void set(const std::string& key, const std::vector<std::string>& values, const std::string& origin);

  /// Fills the fields that `visit` declares under `section` ("" for top level). Fields not
  /// present keep their defaults. Throws ConfigError on a value of the wrong type.
  void read(const std::string& section, const ConfigVisit& visit);
  /// Throws ConfigError naming the first key that no read() declared, where it came from, and
  /// the known keys of its section.
  void check_all_used() const;
  /// True if `key` was given by some source.
  bool contains(const std::string& key) const;
  /// Items the sources give for the list `key` (0 when none).
  std::size_t list_size(const std::string& key) const;
  /// Where the earliest-declared key under `prefix` ("routes.1") came from: "file.yaml:12",
  /// "--set ...", or "" when no source gives one.
  std::string origin_of(const std::string& prefix) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Emits resolved configs as YAML.
class ConfigWriter {
 public:
  ConfigWriter();
  ~ConfigWriter();
  /// Adds every field `visit` declares under `section`.
  void add(const std::string& section, const ConfigVisit& visit);
  std::string str() const;
  /// Writes str() to `path` atomically.
  void write(const std::filesystem::path& path) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vitruvian
