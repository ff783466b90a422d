/*
 * pmcr error codes.
 *
 * Every pmcr function returns 0 on success or one of these negative codes.
 * They are grouped by what the caller can do about the failure:
 *
 *   -1  .. -19   usage: the call or its input is wrong; fix the program
 *   -20 .. -39   resources: out of space, memory or time; free space or retry
 *   -40 .. -59   server: the pmserver cannot be reached or was lost; restart
 *                the job (or the server) and it restarts from the last sealed
 *                checkpoint
 *   -60 .. -79   checkpoint: a checkpoint is incomplete, damaged or does not
 *                match; pick another version
 *   -80 .. -99   system: an I/O, MPI or internal failure; see the message
 *
 * pmcr_strerror() names a code; pmcr_last_error() gives the detail of the
 * last failure in the calling thread.
 */
#ifndef PMCR_ERRORS_H
#define PMCR_ERRORS_H

#define PMCR_OK 0

/* usage */
#define PMCR_E_INVAL -1     /* an argument is invalid (see the message) */
#define PMCR_E_NOT_INIT -2  /* the library is not initialised */
#define PMCR_E_EXISTS -3    /* the region, id or version already exists */
#define PMCR_E_NOT_FOUND -4 /* no such region, id, job or version */
#define PMCR_E_SIZE -5      /* a size does not match the stored one */
#define PMCR_E_CONFIG -6    /* the configuration is missing or invalid */
#define PMCR_E_STATE -7     /* the object is not in a state that allows this */
#define PMCR_E_PERM -8      /* not allowed: another owner's job, or a region open only for reading */
#define PMCR_E_AUTH -9      /* authentication failed: no, a wrong or a replayed credential (see the message) */
#define PMCR_E_RANGE -10    /* an offset or length outside the data, or an array too small */

/* resources */
#define PMCR_E_NOSPACE -20  /* the pool has no room for the region */
#define PMCR_E_NOMEM -21    /* out of memory in this process */
#define PMCR_E_TIMEDOUT -22 /* the server did not answer in time */
#define PMCR_E_BUSY -23     /* the object is in use; retry later */
#define PMCR_E_QUOTA -24    /* this connection reached a server quota (regions, bytes, open regions) */

/* server */
#define PMCR_E_UNREACHABLE -40 /* no server listens at the address */
#define PMCR_E_SERVER_LOST -41 /* the connection to the server was lost */
#define PMCR_E_PROTOCOL -42    /* a malformed or unexpected message */
#define PMCR_E_TRANSPORT -43   /* the UCX transport failed (see the message) */

/* checkpoint */
#define PMCR_E_CHECKSUM -60   /* data does not match its checksum */
#define PMCR_E_INCOMPLETE -61 /* not every rank or region is committed */
#define PMCR_E_CORRUPT -62    /* the pool or a checkpoint is damaged */
#define PMCR_E_NRANKS -63     /* the version was written by another number of ranks */
#define PMCR_E_SUPERSEDED -64 /* a later run (attempt) of the same job took over: this one may not write */
#define PMCR_E_FENCED -65     /* a standby took this job over: this (old primary) run may write nothing more */

/* system */
#define PMCR_E_IO -80       /* a file or device operation failed */
#define PMCR_E_PMEM -81     /* libpmem2 failed (see the message) */
#define PMCR_E_MPI -82      /* an MPI call failed */
#define PMCR_E_INTERNAL -99 /* a bug in pmcr: please report the message */

#if defined(__GNUC__)
#define PMCR_EXPORT __attribute__((visibility("default")))
#else
#define PMCR_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
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
 * Returns the message recorded by the last pmcr call (rank or region API)
 * in the calling thread that failed: what went wrong, where, and what to
 * do. The string is valid until the next failing pmcr call in this thread.
 * Returns "" if no call failed yet.
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

#endif /* PMCR_ERRORS_H */
