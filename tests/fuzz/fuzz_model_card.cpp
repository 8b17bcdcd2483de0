// The model card (model.json of an exported model): parsed by card_from_json as load_model
// does; a card that parses is written back with card_to_json and must parse to the same text.
#include <cstdint>
#include <string>

#include "models/registry.h"
#include "tests/fuzz/fuzz_common.h"

using namespace vitruvian;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  fuzz::expect_typed_errors([&] {
    const models::ModelCard card = models::card_from_json(text, "model.json");
    const std::string written = models::card_to_json(card);
    const std::string again = models::card_to_json(models::card_from_json(written, "model.json (written back)"));
    if (again != written)
      fuzz::finding("a card does not survive card_to_json and card_from_json:\n" + written + "\n" + again);
  });
  return 0;
}
