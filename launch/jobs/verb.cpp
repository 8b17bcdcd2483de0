// The subcommand every verb starts from.
#include "launch/jobs/verb.h"

#include <CLI/CLI.hpp>

namespace vitruvian::jobs {

CLI::App* add_verb_command(CLI::App& app, const std::string& name, const std::string& description,
                           const std::string& footer) {
  CLI::App* command = app.add_subcommand(name, description);
  std::string text = "Global options (--config, --set, --device, --log-level, ...): vitruvian --help";
  if (!footer.empty()) text += "\n" + footer;
  command->footer(text);
  return command;
}

}  // namespace vitruvian::jobs
