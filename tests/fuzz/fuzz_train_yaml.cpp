// The training YAML (`vitruvian --config train.yaml train`: sections runtime, data, model,
// optimizer, train): read, checked for unknown keys and validated as the CLI and the train job
// do; a config that passes is written back as the resolved YAML (RUN_DIR/config.yaml) and must
// read back to the same YAML.
#include <cstdint>
#include <string>

#include "core/config.h"
#include "core/runtime.h"
#include "launch/jobs/train.h"
#include "tests/fuzz/fuzz_common.h"

using namespace vitruvian;

namespace {

/// The resolved YAML of `text`.
std::string resolve(const std::string& text, const std::string& origin) {
  ConfigSources sources;
  sources.add_text(text, origin);
  RuntimeConfig runtime;
  jobs::TrainConfig config;
  sources.read("runtime", [&](ConfigVisitor& v) { runtime.visit(v); });
  sources.read("", [&](ConfigVisitor& v) { config.visit(v); });
  sources.check_all_used();
  runtime.validate();
  config.validate();
  ConfigWriter resolved;
  resolved.add("runtime", [&](ConfigVisitor& v) { runtime.visit(v); });
  resolved.add("", [&](ConfigVisitor& v) { config.visit(v); });
  return resolved.str();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  fuzz::expect_typed_errors([&] {
    const std::string written = resolve(text, "train.yaml");
    std::string again;
    try {
      again = resolve(written, "config.yaml (written back)");
    } catch (const Error& e) {
      fuzz::finding(std::string("a valid config written back does not read: ") + e.what() + "\n" + written);
    }
    if (again != written)
      fuzz::finding("a config does not survive ConfigWriter and reading:\n" + written + "\n" + again);
  });
  return 0;
}
