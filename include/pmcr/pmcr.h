/*
 * pmcr: checkpoint/restart for MPI programs in network persistent memory.
 *
 * This is the rank API of libpmcr (the region API underneath it, for
 * programs with or without MPI, is <pmcr/region.h>). It is callable from C,
 * C++ and Fortran (ISO_C_BINDING). All functions return 0 or a negative
 * PMCR_E_* code from <pmcr/errors.h>; output parameters are written only on
 * success. The library never prints to stdout and never exits the process.
 */
#ifndef PMCR_PMCR_H
#define PMCR_PMCR_H

#include <stddef.h>

#include <mpi.h>
#include <pmcr/errors.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The rank API
 *
 * Every rank of a communicator calls pmcr_init, protects the buffers that
 * hold its state, and calls pmcr_checkpoint(version) from time to time. A
 * version exists once every rank has committed all its protected buffers
 * durably to the pmserver and the version is sealed; until then the previous
 * sealed version is the latest. After a failure, a relaunched job (same job
 * name, same number of ranks) finds the latest sealed version with
 * pmcr_restart_test and gets every buffer back with pmcr_restart.
 *
 * Collective functions must be called by every rank of the communicator
 * given to pmcr_init, in the same order, with the same version arguments.
 * They return the same code on every rank. The library is not thread safe:
 * call it from one thread per rank (MPI_THREAD_FUNNELED is enough).
 *
 * Configuration comes from the environment, and from an optional file given
 * to pmcr_init whose keys win over the environment:
 *
 *   PMCR_SERVERS   servers         host:port of the pmserver (default
 *                                  127.0.0.1:13790); a comma-separated list is
 *                                  accepted, only its first entry is used yet
 *   PMCR_JOB       job             job name, [A-Za-z0-9._:+=@-]{1,64};
 *                                  required (pmcr-run sets it)
 *   PMCR_KEEP      keep            sealed versions kept per job (default 2);
 *                                  older ones are deleted after a newer seal
 *   PMCR_LOG_LEVEL log_level       trace|debug|info|warn|error|off (stderr)
 *   PMCR_TIMEOUT   timeout         seconds the server may show no progress
 *                                  on a request or a transfer before it
 *                                  fails (default 60); a long transfer that
 *                                  keeps moving never times out
 *   PMCR_CONNECT_TIMEOUT connect_timeout  seconds to connect (default 5)
 *   PMCR_DATA_PATH data_path       how buffers travel: "am" (default:
 *                                  rendezvous active messages the server
 *                                  receives into the pool itself) or "rma"
 *                                  (ucp_put_nbx/ucp_get_nbx, only where the
 *                                  server offers it: an RDMA NIC that
 *                                  enforces remote keys)
 *
 * The file is TOML, or JSON if its name ends in ".json".
 */

/*
 * pmcr_init -- start pmcr on a communicator (collective)
 *
 * Reads the configuration (config_path may be NULL: environment only),
 * connects every rank to the pmserver and duplicates comm for pmcr's own
 * messages. MPI must be initialised. pmcr_init may be called again after
 * pmcr_finalize.
 *
 * It starts a new attempt of the job on the server: an earlier run of the
 * same job (the run a relaunch replaces, a rank of it still stalled
 * somewhere, or another run under the same job name) can write and seal
 * nothing more from then on, and its unsealed buffers are dropped.
 *
 * Returns 0, or on every rank:
 *   PMCR_E_CONFIG      a setting is missing or invalid (PMCR_JOB unset, bad
 *                      file, unknown key, "rma" where the server does not
 *                      offer it, PMCR_ENCRYPT=1 without a readable
 *                      PMCR_DATA_KEY_FILE of mode 0600); the message names it
 *   PMCR_E_STATE       pmcr is already initialised, or MPI is not
 *   PMCR_E_AUTH        the server refused this job's credential (PMCR_AUTH,
 *                      PMCR_KEY_FILE, PMCR_MUNGE_SOCKET), or this host cannot
 *                      make one (no munged); the message says which. A key
 *                      file that is unreadable or not mode 0600 is
 *                      PMCR_E_CONFIG
 *   PMCR_E_PERM        the job name belongs to another user on the server
 *   PMCR_E_UNREACHABLE no pmserver answers at the configured address
 *   PMCR_E_BUSY        the server serves as many connections as it may;
 *                      retry later
 *   PMCR_E_TIMEDOUT    the server did not answer in time
 *   PMCR_E_PROTOCOL    the server is not a compatible pmserver
 *   PMCR_E_MPI         an MPI call failed
 */
PMCR_EXPORT int pmcr_init(MPI_Comm comm, const char *config_path);

/*
 * pmcr_protect -- register (or replace) a buffer to checkpoint (local)
 *
 * id is the buffer's name, an int >= 0 chosen by the program; the same id
 * names the same data across checkpoints and restarts. Protecting an id
 * again replaces its pointer and size. ptr may be NULL only if size is 0.
 * The memory must stay valid until it is unprotected or pmcr_finalize.
 *
 * Returns 0, or:
 *   PMCR_E_NOT_INIT  pmcr_init has not been called
 *   PMCR_E_INVAL     id < 0, or ptr NULL with size > 0
 *   PMCR_E_EXISTS    the buffer overlaps the buffer of another id
 */
PMCR_EXPORT int pmcr_protect(int id, void *ptr, size_t size);

/*
 * pmcr_unprotect -- stop checkpointing a buffer (local)
 *
 * Returns 0, or PMCR_E_NOT_INIT, or PMCR_E_NOT_FOUND if id is not protected.
 */
PMCR_EXPORT int pmcr_unprotect(int id);

/*
 * pmcr_checkpoint -- write every protected buffer as version (collective)
 *
 * Every rank puts its protected buffers into the server, which persists them
 * and verifies their checksums; then the version is sealed. It returns 0 on
 * every rank only once version is sealed: all ranks' buffers are durable and
 * checksummed. Then sealed versions beyond PMCR_KEEP are deleted, oldest
 * first. On failure every rank returns the same code, the previous sealed
 * version stays the latest, and every rank has freed what it had stored of
 * version on the server, so a program that goes on loses no space. version must be >= 0 and greater than
 * any version this job checkpointed or restarted from since pmcr_init.
 *
 * Returns 0, or on every rank:
 *   PMCR_E_NOT_INIT    pmcr_init has not been called
 *   PMCR_E_INVAL       version < 0, not growing, or not the same on all ranks
 *   PMCR_E_EXISTS      version is already sealed on the server
 *   PMCR_E_NOSPACE     the pool is full: free space with `pmcr rm`, lower
 *                      PMCR_KEEP, or give the server a bigger pool
 *   PMCR_E_QUOTA       a rank's buffers exceed what one connection may hold
 *                      on the server (pmserver --quota-*)
 *   PMCR_E_SUPERSEDED  a later run of this job began on the server: this
 *                      one may not write any more (see pmcr_init)
 *   PMCR_E_FENCED      this run was declared failed (a rank's lease lapsed
 *                      or its connection was lost) and a standby took the
 *                      job over: it may write nothing more; end it
 *   PMCR_E_STATE       called in a standby (PMCR_ROLE=standby) before
 *                      pmcr_restart_test returned
 *   PMCR_E_SERVER_LOST, PMCR_E_TIMEDOUT, PMCR_E_TRANSPORT
 *                      the server failed or was lost during the checkpoint;
 *                      relaunch (pmcr-run does) once it is back
 *   PMCR_E_CHECKSUM    data arrived damaged on the server
 *   PMCR_E_MPI         an MPI call failed
 *
 * With several servers (PMCR_SERVERS lists more than one) the version is
 * spread over them, each rank's data on PMCR_REPLICAS of them; a server
 * lost meanwhile fails the checkpoint (PMCR_E_SERVER_LOST) only if some
 * rank is left with no copy.
 *
 * With PMCR_ASYNC=1 it copies what changed since the last checkpoint into
 * staging memory and returns once that copy is done: a thread of each rank
 * sends it, and pmcr_wait(version) returns 0 once the version is sealed.
 * It first finishes the previous asynchronous checkpoint; if that one
 * failed, it returns that error and takes no new version. Buffers larger
 * than PMCR_STAGING are checkpointed synchronously.
 */
PMCR_EXPORT int pmcr_checkpoint(int version);

/*
 * pmcr_wait -- wait until version is sealed (collective)
 *
 * For an asynchronous checkpoint (PMCR_ASYNC=1): returns 0 on every rank
 * once every rank's data of version is durable on its servers and the
 * version sealed, as a synchronous pmcr_checkpoint would have; on failure
 * every rank returns the same code (those of pmcr_checkpoint) and the
 * previous sealed version stays the latest. For a version already sealed
 * (a synchronous checkpoint, or one waited for before) it returns 0 at once.
 *
 * Returns 0, or on every rank PMCR_E_NOT_INIT, PMCR_E_INVAL (version < 0
 * or not the same on all ranks), PMCR_E_NOT_FOUND (not one of this job's
 * last 64 checkpoints), or the checkpoint's error.
 */
PMCR_EXPORT int pmcr_wait(int version);

/*
 * pmcr_restart_test -- find the version to restart from (collective)
 *
 * Stores in *version the highest intact sealed version of this job that
 * was written by as many ranks as this communicator has, or -1 if there is
 * none (a first run). The server checks every byte of the candidate against
 * its checksums first; a damaged version is quarantined there (never
 * offered again) and the next older one is tried. When that happened, the
 * call still returns 0 and pmcr_last_error() says which version was
 * damaged and which one is offered instead.
 *
 * In a standby job (PMCR_ROLE=standby, as pmcr-run --standby starts it) it
 * blocks while the standby follows the primary job's checkpoints into the
 * protected buffers, sleeping between them, and returns only when the
 * primary has failed and this job has taken it over (it is the primary
 * now), with the version its buffers already hold: pmcr_restart then reads
 * only what it does not hold yet (usually nothing). Protect every buffer,
 * with its final size, before calling it.
 *
 * Returns 0, or on every rank PMCR_E_NOT_INIT, PMCR_E_INVAL (version NULL),
 * PMCR_E_SERVER_LOST, PMCR_E_TIMEDOUT, PMCR_E_MPI; in a standby also
 * PMCR_E_SUPERSEDED (another launch began the job: there is nothing to
 * take over).
 */
PMCR_EXPORT int pmcr_restart_test(int *version);

/*
 * pmcr_recover_size -- size of this rank's buffer id in version (local)
 *
 * Lets a program resize a buffer before pmcr_restart.
 *
 * Returns 0, or:
 *   PMCR_E_NOT_INIT   pmcr_init has not been called
 *   PMCR_E_INVAL      size NULL, id < 0 or version < 0
 *   PMCR_E_NOT_FOUND  version is not sealed, or this rank has no buffer id in it
 *   PMCR_E_SERVER_LOST, PMCR_E_TIMEDOUT
 */
PMCR_EXPORT int pmcr_recover_size(int version, int id, size_t *size);

/*
 * pmcr_restart -- fill the protected buffers from version (collective)
 *
 * Every rank gets each of its protected buffers straight into its memory
 * and verifies its checksum. Buffers stored in the version but not protected
 * now are skipped. On success the next pmcr_checkpoint must use a version
 * greater than this one.
 *
 * Returns 0, or on every rank (the first failing rank's code; the message
 * on each rank says what failed there):
 *   PMCR_E_NOT_INIT    pmcr_init has not been called
 *   PMCR_E_INVAL       version < 0 or not the same on all ranks
 *   PMCR_E_NOT_FOUND   version is not sealed for this job, or a protected id
 *                      is missing from it
 *   PMCR_E_NRANKS      version was written by a different number of ranks
 *   PMCR_E_SIZE        a protected buffer's size differs from the stored
 *                      one (see pmcr_recover_size); the buffer is untouched
 *   PMCR_E_CHECKSUM    the data read back does not match its checksum; the
 *                      buffer's content is undefined: restart from another
 *                      version
 *   PMCR_E_CORRUPT     the server found version damaged (it is quarantined
 *                      now): pmcr_restart_test offers the newest intact one;
 *                      or, with PMCR_ENCRYPT=1, a buffer fails
 *                      authentication (altered, not written encrypted, or
 *                      another job's, version's, rank's or id's); the
 *                      buffer's content is then undefined
 *   PMCR_E_CONFIG      with PMCR_ENCRYPT=1: the version was encrypted under
 *                      another data key (the message names both key ids)
 *   PMCR_E_SERVER_LOST, PMCR_E_TIMEDOUT, PMCR_E_MPI
 */
PMCR_EXPORT int pmcr_restart(int version);

/*
 * pmcr_finalize -- stop pmcr (collective)
 *
 * Disconnects from the server and forgets the protected buffers. Sealed
 * versions stay on the server. Call it before MPI_Finalize.
 *
 * Returns 0, or PMCR_E_NOT_INIT, or PMCR_E_MPI. It releases everything
 * even when it fails.
 */
PMCR_EXPORT int pmcr_finalize(void);

/* pmcr_strerror, pmcr_last_error and pmcr_version: see <pmcr/errors.h>. */

#ifdef __cplusplus
}
#endif

#endif /* PMCR_PMCR_H */
