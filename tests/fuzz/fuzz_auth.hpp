// The authentication fuzz body: any bytes, decoded as a request, go through
// what pmserver does with a request of a connection (the access table and,
// for AUTH, the key-mode credential check) as three callers: one not yet
// authenticated, a stranger to the job "victim", and its owner. Shared by
// the libFuzzer target and the unit test that replays the seed corpus.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace pmcr::fuzz {

// Returns "" or a description of the violation: a request served before
// authentication, an AUTH that authenticated without the key, a stranger
// let into the victim's job.
std::string check_auth(const uint8_t* data, size_t size);

}  // namespace pmcr::fuzz
