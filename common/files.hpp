// Durability of directory entries: after a file is created or renamed, its
// name survives a crash only once its directory is synced.
#pragma once

#include <string>

namespace pmcr {

// fsyncs the directory DIR. Throws Error(PMCR_E_IO) naming it.
void sync_directory(const std::string& dir);
// The directory holding PATH ("." for a bare name).
std::string parent_directory(const std::string& path);

}  // namespace pmcr
