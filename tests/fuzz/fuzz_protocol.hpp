// The protocol fuzz body, shared by the libFuzzer target and the unit test
// that replays the seed corpus.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pmcr::fuzz {

// Decodes DATA as a request and as a reply. Whatever decodes must re-encode
// to exactly the same bytes. Returns "" or a description of the violation.
std::string check_protocol(const uint8_t* data, size_t size);

// One well-formed encoding of every request and reply type (seeds).
std::vector<std::vector<uint8_t>> sample_messages();

}  // namespace pmcr::fuzz
