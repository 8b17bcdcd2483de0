// Config: YAML files and overrides fill typed structs; unknown keys and bad values are
// ConfigErrors that name the key and where it came from; the resolved config round-trips.
#include "core/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/errors.h"
#include "core/runtime.h"

namespace vitruvian {
namespace {

struct SamplerConfig {
  int patch = 96;
  double foreground_fraction = 0.33;
  bool augment = true;
  std::string name = "uniform";
  std::vector<std::int64_t> shape = {1, 2, 3};
  std::vector<std::string> organs;
  void visit(ConfigVisitor& v) {
    v.field("patch", patch, "patch edge in voxels");
    v.field("foreground_fraction", foreground_fraction, "share of patches centred on foreground");
    v.field("augment", augment, "random flips and rotations");
    v.field("name", name, "sampler name");
    v.field("shape", shape, "patch shape");
    v.field("organs", organs, "organ names");
  }
};

std::filesystem::path write_temp(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() / ("vitruvian_config_test_" + name);
  std::ofstream(path) << text;
  return path;
}

std::string config_error(const std::function<void()>& body) {
  try {
    body();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no ConfigError";
}

TEST(Config, FilesThenOverridesInOrder) {
  const auto base = write_temp("base.yaml", "sampler:\n  patch: 64\n  name: fg\n  organs: [liver, spleen]\n");
  const auto site = write_temp("site.yaml", "sampler:\n  patch: 128\n  shape: [4, 5, 6]\n");
  ConfigSources sources;
  sources.add_file(base);
  sources.add_file(site);
  sources.add_override("sampler.augment=false");
  sources.add_override("sampler.foreground_fraction=0.5");
  SamplerConfig config;
  sources.read("sampler", [&](ConfigVisitor& v) { config.visit(v); });
  sources.check_all_used();
  EXPECT_EQ(config.patch, 128);
  EXPECT_EQ(config.name, "fg");
  EXPECT_FALSE(config.augment);
  EXPECT_DOUBLE_EQ(config.foreground_fraction, 0.5);
  EXPECT_EQ(config.shape, (std::vector<std::int64_t>{4, 5, 6}));
  EXPECT_EQ(config.organs, (std::vector<std::string>{"liver", "spleen"}));
}

TEST(Config, UnknownKeyNamesFileLineAndKnownKeys) {
  const auto path = write_temp("typo.yaml", "sampler:\n  patch: 64\n  pacth: 3\n");
  ConfigSources sources;
  sources.add_file(path);
  SamplerConfig config;
  sources.read("sampler", [&](ConfigVisitor& v) { config.visit(v); });
  const std::string text = config_error([&] { sources.check_all_used(); });
  EXPECT_NE(text.find(path.string() + ":3: unknown key 'sampler.pacth'"), std::string::npos) << text;
  EXPECT_NE(text.find("did you mean 'sampler.patch'"), std::string::npos) << text;
  EXPECT_NE(text.find("known keys under 'sampler':"), std::string::npos) << text;
  EXPECT_NE(text.find("foreground_fraction"), std::string::npos) << text;
}

TEST(Config, UnknownOverrideNamesTheOverride) {
  ConfigSources sources;
  sources.add_override("runtime.colective_timeout_s=5");
  RuntimeConfig runtime;
  sources.read("runtime", [&](ConfigVisitor& v) { runtime.visit(v); });
  const std::string text = config_error([&] { sources.check_all_used(); });
  EXPECT_NE(text.find("--set runtime.colective_timeout_s=5: unknown key"), std::string::npos) << text;
  EXPECT_NE(text.find("did you mean 'runtime.collective_timeout_s'"), std::string::npos) << text;
}

TEST(Config, WrongTypesNameKeyValueAndExpectation) {
  ConfigSources sources;
  sources.add_override("sampler.patch=big");
  SamplerConfig config;
  std::string text = config_error([&] { sources.read("sampler", [&](ConfigVisitor& v) { config.visit(v); }); });
  EXPECT_NE(text.find("--set sampler.patch=big: 'sampler.patch' is big, expected an integer"), std::string::npos) << text;

  const auto path = write_temp("types.yaml", "sampler:\n  shape: 7\n");
  ConfigSources from_file;
  from_file.add_file(path);
  text = config_error([&] { from_file.read("sampler", [&](ConfigVisitor& v) { config.visit(v); }); });
  EXPECT_NE(text.find(path.string() + ":2: 'sampler.shape' is 7, expected a list of integers"), std::string::npos) << text;
  EXPECT_EQ(config.patch, 96) << "a failed read must not leave half-applied values behind for that field";
}

TEST(Config, BrokenFilesAndOverrides) {
  EXPECT_NE(config_error([] { ConfigSources().add_file("/nonexistent/run.yaml"); }).find("/nonexistent/run.yaml: cannot open"),
            std::string::npos);
  const auto bad = write_temp("bad.yaml", "sampler:\n  patch: [1, 2\n");
  EXPECT_NE(config_error([&] { ConfigSources().add_file(bad); }).find("not valid YAML"), std::string::npos);
  const auto list = write_temp("list.yaml", "- a\n- b\n");
  EXPECT_NE(config_error([&] { ConfigSources().add_file(list); }).find("expected a YAML mapping"), std::string::npos);
  EXPECT_NE(config_error([] { ConfigSources().add_override("novalue"); }).find("expected KEY=VALUE"), std::string::npos);
  EXPECT_NE(config_error([] { ConfigSources().add_override("a.b="); }).find("has no value"), std::string::npos);
}

TEST(Config, RuntimeValidationAndResolvedRoundTrip) {
  ConfigSources sources;
  sources.add_override("runtime.device=gpu");
  RuntimeConfig runtime;
  sources.read("runtime", [&](ConfigVisitor& v) { runtime.visit(v); });
  EXPECT_NE(config_error([&] { runtime.validate(); }).find("'gpu' is not a device choice; expected auto, cpu or cuda"),
            std::string::npos);

  RuntimeConfig original;
  original.device = "cpu";
  original.collective_timeout_s = 42.5;
  original.intra_op_threads = 3;
  ConfigWriter writer;
  writer.add("runtime", [&](ConfigVisitor& v) { original.visit(v); });
  const auto path = std::filesystem::temp_directory_path() / "vitruvian_config_test_resolved.yaml";
  writer.write(path);
  ConfigSources again;
  again.add_file(path);
  RuntimeConfig reread;
  again.read("runtime", [&](ConfigVisitor& v) { reread.visit(v); });
  again.check_all_used();
  EXPECT_EQ(reread.device, "cpu");
  EXPECT_DOUBLE_EQ(reread.collective_timeout_s, 42.5);
  EXPECT_EQ(reread.intra_op_threads, 3);
  EXPECT_NE(writer.str().find("collective_timeout_s: 42.5"), std::string::npos) << writer.str();
}

}  // namespace
}  // namespace vitruvian
