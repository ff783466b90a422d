// The --help-all text of the tools with subcommands (pmcr, pmcr-bench), laid
// out so that help2man makes their man pages from it: each subcommand a
// section of its own ("pmcr stat:" at the start of a line), its options
// under it.
#pragma once

#include <CLI/CLI.hpp>

#include <cstring>
#include <string>

namespace pmcr::tools {

class ManFormatter : public CLI::Formatter {
 public:
  std::string make_subcommands(const CLI::App* app, CLI::AppFormatMode mode) const override {
    if (mode != CLI::AppFormatMode::All) return CLI::Formatter::make_subcommands(app, mode);
    std::string out;
    for (const CLI::App* sub : app->get_subcommands({}))
      out += "\n" + sub->help(sub->get_name(), CLI::AppFormatMode::Sub);
    return out;
  }
  std::string make_expanded(const CLI::App* sub) const override {
    const std::string body = CLI::Formatter::make_expanded(sub);
    std::string program;
    if (const CLI::App* parent = sub->get_parent()) {
      program = parent->get_name();
      program = program.substr(program.rfind('/') + 1) + " ";
    }
    std::string rest = body.substr(body.find('\n'));
    for (const char* heading : {"\n  Options:", "\n  Positionals:"})
      for (size_t at; (at = rest.find(heading)) != std::string::npos;) rest.erase(at, std::strlen(heading));
    return program + sub->get_name() + ":" + rest;
  }
};

}  // namespace pmcr::tools
