#include "config_file.hpp"

#include <toml++/toml.h>

#include <cmath>
#include <iomanip>
#include <iterator>
#include <sstream>

namespace pmcr::server {
namespace {

std::string where(const std::string& path, const toml::source_region& at) {
  return path + ":" + std::to_string(at.begin.line);
}

// One value as CLI11 reads it from a command line; false if it is no
// scalar (a table, a date, a time).
bool scalar_text(const toml::node& node, std::string* text) {
  if (auto s = node.value_exact<std::string>()) *text = *s;
  else if (auto i = node.value_exact<int64_t>()) *text = std::to_string(*i);
  else if (auto b = node.value_exact<bool>()) *text = *b ? "true" : "false";
  else if (auto d = node.value_exact<double>()) {
    // A whole number as one (1000000.0: "1000000"), anything else in full.
    if (std::trunc(*d) == *d && std::fabs(*d) < 9e15) {
      *text = std::to_string(static_cast<int64_t>(*d));
    } else {
      std::ostringstream out;
      out << std::setprecision(17) << *d;
      *text = out.str();
    }
  } else {
    return false;
  }
  return true;
}

}  // namespace

std::vector<CLI::ConfigItem> TomlConfig::from_config(std::istream& input) const {
  const std::string path = app_.get_config_ptr() ? app_.get_config_ptr()->as<std::string>() : "the configuration";
  const std::string text{std::istreambuf_iterator<char>(input), std::istreambuf_iterator<char>()};
  toml::table table;
  try {
    table = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    throw CLI::ConfigError(where(path, e.source()) + ": not valid TOML: " + std::string(e.description()));
  }
  std::vector<CLI::ConfigItem> items;
  for (const auto& [key, node] : table) {
    std::string name(key.str());
    for (char& c : name)
      if (c == '_') c = '-';
    const std::string at = where(path, node.source());
    const CLI::Option* opt = app_.get_option_no_throw("--" + name);
    if (!opt)
      throw CLI::ConfigError(at + ": '" + std::string(key.str()) + "' is no pmserver setting (the settings are its "
                             "long options without '--', e.g. pool = \"/dev/dax0.0\"; see pmserver --help)");
    if (!opt->get_configurable())
      throw CLI::ConfigError(at + ": '" + std::string(key.str()) + "' may only be given on the command line");
    CLI::ConfigItem item;
    item.name = name;
    std::string one;
    if (const toml::array* list = node.as_array()) {
      for (const auto& element : *list) {
        if (!scalar_text(element, &one))
          throw CLI::ConfigError(at + ": '" + std::string(key.str()) + "' lists something other than strings, "
                                 "numbers or booleans");
        item.inputs.push_back(one);
      }
    } else if (scalar_text(node, &one)) {
      item.inputs.push_back(one);
    } else {
      throw CLI::ConfigError(at + ": '" + std::string(key.str()) + "' must be a string, a number or a boolean "
                             "(pmserver's settings have no sections)");
    }
    items.push_back(std::move(item));
  }
  return items;
}

std::string TomlConfig::to_config(const CLI::App* app, bool default_also, bool write_description,
                                  std::string prefix) const {
  std::istringstream in(CLI::ConfigTOML::to_config(app, default_also, write_description, std::move(prefix)));
  std::string out, line;
  while (std::getline(in, line)) {
    const bool unset = line.size() > 3 && line.front() != '#' && line.compare(line.size() - 3, 3, "=\"\"") == 0;
    out += (unset ? "# " : "") + line + "\n";
  }
  return out;
}

void add_config_options(CLI::App& app, bool& print_config) {
  app.config_formatter(std::make_shared<TomlConfig>(app));
  app.set_config("--config", "",
                 "read settings from this TOML file: each option's long name without '--' as a key (e.g. pool = "
                 "\"/dev/dax0.0\", no-rma = true); options on the command line win");
  app.add_flag("--print-config", print_config,
               "print the settings in effect (the file's, the command line's and the defaults) as TOML, and exit")
      ->configurable(false);
}

}  // namespace pmcr::server
