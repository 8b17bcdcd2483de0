// Config: YAML files and overrides fill typed structs; unknown keys and bad values are
// ConfigErrors that name the key and where it came from; the resolved config round-trips.
#include "core/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/errors.h"
#include "core/runtime.h"
#include "tests/tools/scratch_dir.h"

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

std::filesystem::path write_temp(const testing::ScratchDir& dir, const std::string& name, const std::string& text) {
  const auto path = dir / name;
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
  const testing::ScratchDir scratch;
  const auto base = write_temp(scratch, "base.yaml", "sampler:\n  patch: 64\n  name: fg\n  organs: [liver, spleen]\n");
  const auto site = write_temp(scratch, "site.yaml", "sampler:\n  patch: 128\n  shape: [4, 5, 6]\n");
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
  const testing::ScratchDir scratch;
  const auto path = write_temp(scratch, "typo.yaml", "sampler:\n  patch: 64\n  pacth: 3\n");
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
  const testing::ScratchDir scratch;
  ConfigSources sources;
  sources.add_override("sampler.patch=big");
  SamplerConfig config;
  std::string text = config_error([&] { sources.read("sampler", [&](ConfigVisitor& v) { config.visit(v); }); });
  EXPECT_NE(text.find("--set sampler.patch=big: 'sampler.patch' is big, expected an integer"), std::string::npos) << text;

  const auto path = write_temp(scratch, "types.yaml", "sampler:\n  shape: 7\n");
  ConfigSources from_file;
  from_file.add_file(path);
  text = config_error([&] { from_file.read("sampler", [&](ConfigVisitor& v) { config.visit(v); }); });
  EXPECT_NE(text.find(path.string() + ":2: 'sampler.shape' is 7, expected a list of integers"), std::string::npos) << text;
  EXPECT_EQ(config.patch, 96) << "a failed read must not leave half-applied values behind for that field";
}

TEST(Config, MessagesAreOneLine) {
  ConfigSources sources;
  sources.add_text("sampler:\n  patch:\n    - 1\n    - [2, 3]\n", "block.yaml");
  SamplerConfig config;
  const std::string text = config_error([&] { sources.read("sampler", [&](ConfigVisitor& v) { config.visit(v); }); });
  EXPECT_NE(text.find("block.yaml:2: 'sampler.patch' is [1, [2, 3]], expected an integer"), std::string::npos) << text;
  EXPECT_NE(config_error([] { ConfigSources().add_text("sampler:\n  ? {a: 1}\n  : 2\n", "complex.yaml"); })
                .find("complex.yaml:2: a key is {a: 1}; expected a plain name"),
            std::string::npos);
}

TEST(Config, ControlCharactersInTextAreRefused) {
  // A stray carriage return (a value the YAML written back could not keep) is named, in a value
  // and in a list; tabs, line breaks and CRLF files are text.
  SamplerConfig config;
  ConfigSources stray;
  stray.add_text("sampler:\n  name: fg   \r\r\r\n  patch: 64\n", "stray.yaml");
  std::string text = config_error([&] { stray.read("sampler", [&](ConfigVisitor& v) { config.visit(v); }); });
  EXPECT_NE(text.find("stray.yaml:2: 'sampler.name' holds the control character 0x0D at position 5; expected printable "
                      "text"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find('\r'), std::string::npos);
  EXPECT_EQ(config.name, "uniform") << "a refused text must leave the field as it was";
  ConfigSources in_list;
  in_list.add_text("sampler:\n  organs: [liver, \"sp\\x01leen\"]\n", "list.yaml");
  text = config_error([&] { in_list.read("sampler", [&](ConfigVisitor& v) { config.visit(v); }); });
  EXPECT_NE(text.find("'sampler.organs' holds the control character 0x01 at position 2"), std::string::npos) << text;

  ConfigSources crlf;
  crlf.add_text("sampler:\r\n  name: \"a\\tb\\nc\"\r\n  organs: [liver]\r\n", "crlf.yaml");
  crlf.read("sampler", [&](ConfigVisitor& v) { config.visit(v); });
  EXPECT_EQ(config.name, "a\tb\nc");
  EXPECT_EQ(config.organs, (std::vector<std::string>{"liver"}));
}

TEST(Config, BrokenFilesAndOverrides) {
  const testing::ScratchDir scratch;
  EXPECT_NE(config_error([] { ConfigSources().add_file("/nonexistent/run.yaml"); }).find("/nonexistent/run.yaml: cannot open"),
            std::string::npos);
  const auto bad = write_temp(scratch, "bad.yaml", "sampler:\n  patch: [1, 2\n");
  EXPECT_NE(config_error([&] { ConfigSources().add_file(bad); }).find("not valid YAML"), std::string::npos);
  const auto list = write_temp(scratch, "list.yaml", "- a\n- b\n");
  EXPECT_NE(config_error([&] { ConfigSources().add_file(list); }).find("expected a YAML mapping"), std::string::npos);
  EXPECT_NE(config_error([] { ConfigSources().add_override("novalue"); }).find("expected KEY=VALUE"), std::string::npos);
  EXPECT_NE(config_error([] { ConfigSources().add_override("a.b="); }).find("has no value"), std::string::npos);
}

TEST(Config, RuntimeValidationAndResolvedRoundTrip) {
  const testing::ScratchDir scratch;
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
  const auto path = scratch / "resolved.yaml";
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

/// A config with a list of sections and paths, as a campaign has.
struct Step {
  std::string name;
  std::filesystem::path model;
  std::vector<std::string> classes;
  void visit(ConfigVisitor& v) {
    v.field("name", name, "step name");
    v.field("model", model, "a folder");
    v.field("classes", classes, "class names");
  }
};
struct Plan {
  std::vector<std::filesystem::path> inputs;
  std::vector<Step> steps;
  void visit(ConfigVisitor& v) {
    v.field("input", inputs, "input files");
    v.items<Step>("steps", steps, [](ConfigVisitor& item, Step& s) { s.visit(item); }, "a list of steps");
  }
};

TEST(Config, ListsOfSectionsPathsFromTheFilesFolderAndOneTextForAList) {
  const testing::ScratchDir scratch;
  const auto& dir = scratch.path();
  const auto path = dir / "plan.yaml";
  std::ofstream(path) << "input: data/a.h5\nsteps:\n  - name: first\n    model: ../models/m1\n    classes: liver\n"
                         "  - name: second\n    model: /abs/m2\n";
  ConfigSources sources;
  sources.add_file(path);
  sources.add_override("steps.1.classes=[a, b]");
  EXPECT_EQ(sources.list_size("steps"), 2u);
  EXPECT_EQ(sources.origin_of("steps.1"), path.string() + ":6");
  Plan plan;
  sources.read("", [&](ConfigVisitor& v) { plan.visit(v); });
  sources.check_all_used();
  ASSERT_EQ(plan.inputs.size(), 1u);
  EXPECT_EQ(plan.inputs[0], dir / "data/a.h5");
  ASSERT_EQ(plan.steps.size(), 2u);
  EXPECT_EQ(plan.steps[0].model, (dir / "../models/m1").lexically_normal());
  EXPECT_EQ(plan.steps[0].classes, std::vector<std::string>{"liver"});
  EXPECT_EQ(plan.steps[1].model, "/abs/m2");
  EXPECT_EQ(plan.steps[1].classes, (std::vector<std::string>{"a", "b"}));

  // Written back and read again: the same plan (paths as resolved).
  ConfigWriter writer;
  writer.add("", [&](ConfigVisitor& v) { plan.visit(v); });
  ConfigSources again;
  again.add_text(writer.str(), "resolved");
  Plan reread;
  again.read("", [&](ConfigVisitor& v) { reread.visit(v); });
  again.check_all_used();
  ASSERT_EQ(reread.steps.size(), 2u) << writer.str();
  EXPECT_EQ(reread.steps[1].classes, plan.steps[1].classes);
  EXPECT_EQ(reread.steps[0].model, plan.steps[0].model);

  // A flag sets a path as given, relative to the working folder.
  ConfigSources flags;
  flags.set("steps.0.model", "rel/dir", "--model rel/dir");
  flags.set("input", std::vector<std::string>{"x y.h5", "z.h5"}, "--input");
  Plan from_flags;
  flags.read("", [&](ConfigVisitor& v) { from_flags.visit(v); });
  EXPECT_EQ(from_flags.steps.at(0).model, "rel/dir");
  EXPECT_EQ(from_flags.inputs, (std::vector<std::filesystem::path>{"x y.h5", "z.h5"}));
}

TEST(Config, ListItemsHaveTheirOwnUnknownKeysAndNoGaps) {
  ConfigSources sources;
  sources.add_text("steps:\n  - name: a\n    modle: m\n", "plan.yaml");
  Plan plan;
  sources.read("", [&](ConfigVisitor& v) { plan.visit(v); });
  const std::string text = config_error([&] { sources.check_all_used(); });
  EXPECT_NE(text.find("plan.yaml:3: unknown key 'steps.0.modle' (did you mean 'steps.0.model'?)"), std::string::npos) << text;
  EXPECT_NE(text.find("known keys under 'steps.0': classes, model, name"), std::string::npos) << text;

  ConfigSources gap;
  gap.add_text("steps:\n  - name: a\n", "plan.yaml");
  gap.add_override("steps.2.name=c");
  EXPECT_NE(config_error([&] { gap.read("", [&](ConfigVisitor& v) { plan.visit(v); }); }).find("skips item 1 of 'steps'"),
            std::string::npos);
  ConfigSources scalar;
  scalar.add_text("steps: 3\n", "plan.yaml");
  EXPECT_NE(config_error([&] { scalar.read("", [&](ConfigVisitor& v) { plan.visit(v); }); }).find("'steps' is 3, expected a list of steps"),
            std::string::npos);
  ConfigSources mixed;
  EXPECT_NE(config_error([&] { mixed.add_text("steps:\n  - name: a\n  - b\n", "plan.yaml"); }).find("mixes mappings and plain values"),
            std::string::npos);
  ConfigSources empty;
  empty.add_text("steps: []\n", "plan.yaml");
  Plan none;
  none.steps.resize(3);
  empty.read("", [&](ConfigVisitor& v) { none.visit(v); });
  empty.check_all_used();
  EXPECT_TRUE(none.steps.empty());
}

}  // namespace
}  // namespace vitruvian
