// The campaign YAML (`vitruvian infer --campaign campaign.yaml`): read, checked for unknown keys
// and validated as the infer job does; a campaign that passes is written back as YAML (what
// OUT/campaign.yaml holds) and must read back to the same YAML.
#include <cstdint>
#include <string>

#include "core/config.h"
#include "launch/campaign/campaign_config.h"
#include "tests/fuzz/fuzz_common.h"

using namespace vitruvian;

namespace {

campaign::CampaignConfig read(const std::string& text, const std::string& origin) {
  ConfigSources sources;
  sources.add_text(text, origin);
  campaign::CampaignConfig config;
  campaign::read_campaign(sources, config);
  sources.check_all_used();
  config.validate();
  return config;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  fuzz::expect_typed_errors([&] {
    const campaign::CampaignConfig config = read(text, "campaign.yaml");
    const std::string written = config.yaml();
    std::string again;
    try {
      again = read(written, "campaign.yaml (written back)").yaml();
    } catch (const Error& e) {
      fuzz::finding(std::string("a valid campaign written back does not read: ") + e.what() + "\n" + written);
    }
    if (again != written) fuzz::finding("a campaign does not survive yaml() and reading:\n" + written + "\n" + again);
  });
  return 0;
}
