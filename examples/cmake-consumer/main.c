/* Links libpmcr through its CMake package and calls its C API. */
#include <pmcr/pmcr.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  printf("libpmcr %s\n", pmcr_version());
  printf("PMCR_E_NOSPACE: %s\n", pmcr_strerror(PMCR_E_NOSPACE));
  return strcmp(pmcr_strerror(PMCR_E_CHECKSUM), "checksum mismatch") == 0 ? 0 : 1;
}
