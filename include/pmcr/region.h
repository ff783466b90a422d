/*
 * pmcr regions: named, versioned byte arrays in a pmserver's persistent
 * memory, for any program (no MPI needed: link libpmcr-region, pkg-config
 * pmcr-region, CMake pmcr::region).
 *
 * A region is (job, name). One writer at a time changes it: overwrite
 * (pmcr_region_write), append, clear; none of that is visible until
 * pmcr_region_commit publishes it, atomically, as the next generation
 * (1, 2, ...). Readers see whole committed generations only, never a mix,
 * and survive crashes of the writer and of the server: a committed
 * generation is durable; an uncommitted one vanishes.
 *
 * Storage is copy-on-write in blocks (the region's block size, PMCR_BLOCK_SIZE
 * when it is created, default 1 MiB): a generation shares every block it did
 * not change with the one before, so an unchanged block costs no bytes on
 * the wire and no pool space. A region keeps its newest generations
 * (PMCR_GENERATIONS when it is created, default 2); an older one is gone
 * (PMCR_E_NOT_FOUND), except that a reader's handle also holds the last two
 * generations pmcr_region_open and pmcr_region_stat reported to it, so a
 * follower can always fetch what changed between them
 * (pmcr_region_changed).
 *
 * Every function returns 0 or a negative PMCR_E_* code (<pmcr/errors.h>);
 * pmcr_last_error() says what went wrong and what to do. Output parameters
 * are written only on success. A handle is used by one thread at a time.
 * The connection's settings (PMCR_SERVERS, PMCR_AUTH, PMCR_KEY_FILE,
 * PMCR_TIMEOUT, ...) are those of the rank API (README, "Configuration").
 */
#ifndef PMCR_REGION_H
#define PMCR_REGION_H

#include <stddef.h>
#include <stdint.h>

#include <pmcr/errors.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pmcr_client pmcr_client; /* one connection to a pmserver */
typedef struct pmcr_region pmcr_region; /* one open region */
typedef struct {
  uint64_t offset, length;
} pmcr_range;

/*
 * pmcr_connect -- connect and authenticate to a pmserver
 *
 * server is "HOST:PORT", or NULL for the first of PMCR_SERVERS (default
 * 127.0.0.1:13790). Returns PMCR_E_UNREACHABLE, PMCR_E_AUTH, PMCR_E_CONFIG.
 */
PMCR_EXPORT int pmcr_connect(const char *server, pmcr_client **client);

/* pmcr_disconnect -- close the connection; its regions must be closed first
 * (PMCR_E_BUSY otherwise). NULL is accepted. */
PMCR_EXPORT int pmcr_disconnect(pmcr_client *client);

/*
 * pmcr_region_create -- open a region for writing, creating it if need be
 *
 * The writer starts from the latest committed generation (empty for a new
 * region). Returns PMCR_E_BUSY while another writer has it open,
 * PMCR_E_PERM if the job belongs to another owner, PMCR_E_INVAL for a bad
 * job or name (names: 1 to 255 of A-Z a-z 0-9 . _ : + = @ - /).
 */
PMCR_EXPORT int pmcr_region_create(pmcr_client *c, const char *job, const char *name, pmcr_region **r);

/* pmcr_region_open -- open an existing region for reading (PMCR_E_NOT_FOUND
 * if it does not exist). A reader can stat, read and ask what changed. */
PMCR_EXPORT int pmcr_region_open(pmcr_client *c, const char *job, const char *name, pmcr_region **r);

/*
 * pmcr_region_write -- overwrite len bytes at offset in the next generation
 *
 * offset may be at most the current size (PMCR_E_RANGE past it: regions have
 * no holes); a write that runs past the end grows the region. When it
 * returns, buf may be reused. PMCR_E_PERM on a reader's handle.
 */
PMCR_EXPORT int pmcr_region_write(pmcr_region *r, uint64_t offset, const void *buf, size_t len);

/* pmcr_region_append -- write len bytes at the end of the next generation. */
PMCR_EXPORT int pmcr_region_append(pmcr_region *r, const void *buf, size_t len);

/* pmcr_region_clear -- the next generation starts empty (size 0). */
PMCR_EXPORT int pmcr_region_clear(pmcr_region *r);

/*
 * pmcr_region_commit -- publish the writer's changes as the next generation
 *
 * Durable when it returns; *generation (may be NULL) is its number. A write
 * that failed makes the commit fail (PMCR_E_IO): close the region and write
 * the changes again. PMCR_E_PERM on a reader's handle.
 */
PMCR_EXPORT int pmcr_region_commit(pmcr_region *r, uint64_t *generation);

/* pmcr_region_stat -- the latest committed generation (0: none yet) and its
 * size; a reader's handle now holds that generation. Either pointer may be
 * NULL. PMCR_E_NOT_FOUND once the region was removed. */
PMCR_EXPORT int pmcr_region_stat(pmcr_region *r, uint64_t *generation, uint64_t *size);

/* pmcr_region_read -- len bytes at offset of a committed generation that is
 * kept or held (PMCR_E_NOT_FOUND otherwise; PMCR_E_RANGE past its end). */
PMCR_EXPORT int pmcr_region_read(pmcr_region *r, uint64_t generation, uint64_t offset, void *buf, size_t len);

/*
 * pmcr_region_changed -- the byte ranges of generation that differ from since
 *
 * Block by block (adjacent blocks merged), so a reader holding generation
 * since fetches only these; since = 0 means everything. On entry *count is
 * the capacity of ranges; on return the number filled. A too-small array
 * gives PMCR_E_RANGE with *count set to the number needed.
 */
PMCR_EXPORT int pmcr_region_changed(pmcr_region *r, uint64_t since, uint64_t generation, pmcr_range *ranges,
                                    size_t *count);

/* pmcr_region_close -- end the handle; a writer's uncommitted changes are
 * dropped. Frees r even when it fails. NULL is accepted. */
PMCR_EXPORT int pmcr_region_close(pmcr_region *r);

/* pmcr_region_remove -- remove a region and all its generations. Readers
 * that have it open keep reading what they hold until they close. */
PMCR_EXPORT int pmcr_region_remove(pmcr_client *c, const char *job, const char *name);

#ifdef __cplusplus
}
#endif

#endif /* PMCR_REGION_H */
