// pmserver --config FILE: every command-line option as a TOML key (its
// long name without "--", e.g. `pool = "/dev/dax0.0"`, `quota-open = 64`,
// `no-rma = true`; '_' may stand for '-'). Options given on the command
// line win over the file. Parsed with toml++, so a malformed file is
// refused with its line and column, and a key that is no option is refused
// by name rather than ignored.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace pmcr::server {

class TomlConfig : public CLI::ConfigTOML {
 public:
  explicit TomlConfig(const CLI::App& app) : app_(app) {}
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override;
  // CLI11's TOML, with the settings that have no value (no default, not
  // given) commented out, so that the text reads back as it was.
  std::string to_config(const CLI::App* app, bool default_also, bool write_description,
                        std::string prefix) const override;

 private:
  const CLI::App& app_;
};

// Adds --config (read with TomlConfig) and --print-config (set: print the
// settings in effect, defaults included, as TOML that --config reads, and
// exit) to APP.
void add_config_options(CLI::App& app, bool& print_config);

}  // namespace pmcr::server
