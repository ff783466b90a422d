/*
 * pmcr: checkpoint/restart for MPI programs in network persistent memory.
 *
 * This is the whole public C interface of libpmcr. It is callable from C,
 * C++ and Fortran (ISO_C_BINDING). All functions return 0 or a negative
 * PMCR_E_* code from <pmcr/errors.h>; output parameters are written only on
 * success. The library never prints to stdout and never exits the process.
 */
#ifndef PMCR_PMCR_H
#define PMCR_PMCR_H

#include <pmcr/errors.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PMCR_EXPORT __attribute__((visibility("default")))
#else
#define PMCR_EXPORT
#endif

/*
 * pmcr_strerror -- name an error code
 *
 * Returns a static, human-readable description of err (a PMCR_E_* code or
 * 0). Unknown codes give "unknown pmcr error". Never returns NULL.
 */
PMCR_EXPORT const char *pmcr_strerror(int err);

/*
 * pmcr_last_error -- detail of the last failure in this thread
 *
 * Returns the message recorded by the last pmcr call in the calling thread
 * that failed: what went wrong, where, and what to do. The string is valid
 * until the next pmcr call in this thread. Returns "" if no call failed yet.
 */
PMCR_EXPORT const char *pmcr_last_error(void);

/*
 * pmcr_version -- the library version as "MAJOR.MINOR.PATCH"
 *
 * Returns a static string. Never fails.
 */
PMCR_EXPORT const char *pmcr_version(void);

#ifdef __cplusplus
}
#endif

#endif /* PMCR_PMCR_H */
