#include "text.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "error.hpp"

namespace pmcr {

uint64_t parse_size(const std::string& text) {
  const auto bad = [&text](const char* why) {
    return Error(PMCR_E_INVAL, "invalid size '" + text + "': " + why +
                                   " (expected a number with an optional K, M, G or T suffix, e.g. 64M)");
  };
  size_t i = 0;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  if (i == text.size() || !std::isdigit(static_cast<unsigned char>(text[i]))) throw bad("no number");
  uint64_t value = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    const uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (value > (UINT64_MAX - digit) / 10) throw bad("too large");
    value = value * 10 + digit;
    ++i;
  }
  std::string suffix;
  for (; i < text.size(); ++i) {
    if (!std::isspace(static_cast<unsigned char>(text[i])))
      suffix += static_cast<char>(std::toupper(static_cast<unsigned char>(text[i])));
  }
  if (suffix.size() >= 2 && suffix.compare(suffix.size() - 2, 2, "IB") == 0) suffix.resize(suffix.size() - 2);
  else if (suffix.size() >= 2 && suffix.back() == 'B') suffix.pop_back();
  else if (suffix == "B") suffix.clear();
  unsigned shift = 0;
  if (suffix.empty()) shift = 0;
  else if (suffix == "K") shift = 10;
  else if (suffix == "M") shift = 20;
  else if (suffix == "G") shift = 30;
  else if (suffix == "T") shift = 40;
  else throw bad("unknown suffix");
  if (shift && value > (UINT64_MAX >> shift)) throw bad("too large");
  return value << shift;
}

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? separator : "") + items[i];
  return out;
}

std::string format_size(uint64_t bytes) {
  static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  if (u == 0) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::vector<std::string> parse_server_list(const std::string& text) {
  std::vector<std::string> out;
  for (size_t at = 0; at <= text.size();) {
    const size_t comma = std::min(text.find(',', at), text.size());
    std::string item = text.substr(at, comma - at);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(to_string(parse_host_port(item, kDefaultPort)));
    at = comma + 1;
  }
  if (out.empty()) throw Error(PMCR_E_INVAL, "no server in '" + text + "': expected HOST:PORT[,HOST:PORT...]");
  return out;
}

HostPort parse_host_port(const std::string& text, uint16_t default_port) {
  const auto bad = [&text](const char* why) {
    return Error(PMCR_E_INVAL, "invalid server address '" + text + "': " + why + " (expected HOST:PORT, e.g. 127.0.0.1:" +
                                   std::to_string(kDefaultPort) + ")");
  };
  HostPort hp;
  std::string port_text;
  if (text.empty()) throw bad("empty");
  if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos) throw bad("missing ']'");
    hp.host = text.substr(1, close - 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') throw bad("expected ':' after ']'");
      port_text = text.substr(close + 2);
      if (port_text.empty()) throw bad("empty port");
    }
  } else {
    const auto colon = text.rfind(':');
    if (colon != std::string::npos && text.find(':') != colon) throw bad("IPv6 addresses need brackets");
    hp.host = text.substr(0, colon);
    if (colon != std::string::npos) {
      port_text = text.substr(colon + 1);
      if (port_text.empty()) throw bad("empty port");
    }
  }
  if (hp.host.empty()) throw bad("empty host");
  if (port_text.empty()) {
    hp.port = default_port;
    return hp;
  }
  unsigned long port = 0;
  for (char c : port_text) {
    if (!std::isdigit(static_cast<unsigned char>(c))) throw bad("port is not a number");
    port = port * 10 + static_cast<unsigned long>(c - '0');
    if (port > 65535) throw bad("port out of range");
  }
  hp.port = static_cast<uint16_t>(port);
  return hp;
}

std::string to_string(const HostPort& hp) {
  if (hp.host.find(':') != std::string::npos) return "[" + hp.host + "]:" + std::to_string(hp.port);
  return hp.host + ":" + std::to_string(hp.port);
}

}  // namespace pmcr

namespace pmcr {

namespace {

// 1 to MAX bytes of [A-Za-z0-9._:+=@-], and '/' if SLASH.
void check_name(const std::string& name, const char* what, size_t max, bool slash) {
  const auto bad = [&](const std::string& why) {
    return Error(PMCR_E_INVAL, std::string("invalid ") + what + " '" + name + "': " + why + " (use 1 to " +
                                   std::to_string(max) + " characters from A-Z a-z 0-9 . _ : + = @ -" +
                                   (slash ? " /" : "") + ")");
  };
  if (name.empty()) throw bad("empty");
  if (name.size() > max) throw bad("longer than " + std::to_string(max) + " bytes");
  for (char c : name) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' || c == '+' ||
                    c == '=' || c == '@' || c == '-' || (slash && c == '/');
    if (!ok) throw bad("contains a character that is not allowed");
  }
}

}  // namespace

void check_job_name(const std::string& job) { check_name(job, "job name", 64, false); }

void check_region_name(const std::string& name) { check_name(name, "region name", 255, true); }

}  // namespace pmcr
