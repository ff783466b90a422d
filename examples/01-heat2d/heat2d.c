/*
 * heat2d: 2-D heat diffusion (Jacobi iteration) on an NX x NY grid split by
 * rows over the ranks, checkpointed with pmcr every K steps.
 *
 * Each rank protects two buffers: id 0 is the step counter, id 1 its rows of
 * the grid (with the two halo rows). On start it asks pmcr for the latest
 * complete checkpoint and, if there is one, resumes from it. At the end it
 * prints a checksum of the final grid: a run that was killed and restarted
 * any number of times prints the same checksum as one that never failed.
 *
 *   mpirun -np 4 heat2d [--nx N] [--ny N] [--steps N] [--every K]
 *                       [--sleep-ms MS] [--config FILE]
 */
#include <mpi.h>
#include <pmcr/pmcr.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct options {
  int nx, ny, steps, every, sleep_ms;
  const char *config;
};

static int parse(int argc, char **argv, struct options *o) {
  *o = (struct options){.nx = 512, .ny = 512, .steps = 1000, .every = 100, .sleep_ms = 0, .config = NULL};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    int *target = !strcmp(a, "--nx")         ? &o->nx
                  : !strcmp(a, "--ny")       ? &o->ny
                  : !strcmp(a, "--steps")    ? &o->steps
                  : !strcmp(a, "--every")    ? &o->every
                  : !strcmp(a, "--sleep-ms") ? &o->sleep_ms
                                             : NULL;
    if (!strcmp(a, "--config") && v) {
      o->config = v;
      i++;
    } else if (target && v) {
      char *end;
      long n = strtol(v, &end, 10);
      if (*end || n < 0 || n > 1 << 24) return fprintf(stderr, "heat2d: %s needs a number, got '%s'\n", a, v), -1;
      *target = (int)n;
      i++;
    } else {
      return fprintf(stderr, "usage: heat2d [--nx N] [--ny N] [--steps N] [--every K] [--sleep-ms MS] [--config FILE]\n"), -1;
    }
  }
  if (o->nx < 3 || o->ny < 3 || o->every < 1) return fprintf(stderr, "heat2d: need nx, ny >= 3 and every >= 1\n"), -1;
  return 0;
}

/* FNV-1a, 64-bit: the checksum printed at the end. */
static uint64_t fnv1a(const void *data, size_t n, uint64_t h) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

static int fail(int rank, const char *call, int rc) {
  fprintf(stderr, "heat2d: rank %d: %s failed: %s: %s\n", rank, call, pmcr_strerror(rc), pmcr_last_error());
  return rc;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  struct options o;
  if (parse(argc, argv, &o)) {
    MPI_Finalize();
    return 2;
  }
  if (o.ny < size) {
    if (rank == 0) fprintf(stderr, "heat2d: ny (%d) must be at least the number of ranks (%d)\n", o.ny, size);
    MPI_Finalize();
    return 2;
  }

  /* Rows [first, first + rows) of the global grid, plus a halo row on each side. */
  const int rows = o.ny / size + (rank < o.ny % size);
  const int first = rank * (o.ny / size) + (rank < o.ny % size ? rank : o.ny % size);
  const size_t cells = (size_t)(rows + 2) * (size_t)o.nx;
  double *cur = calloc(cells, sizeof *cur), *next = calloc(cells, sizeof *next);
  if (!cur || !next) {
    fprintf(stderr, "heat2d: rank %d: out of memory\n", rank);
    MPI_Abort(MPI_COMM_WORLD, 3);
  }
  const int up = rank > 0 ? rank - 1 : MPI_PROC_NULL, down = rank < size - 1 ? rank + 1 : MPI_PROC_NULL;
  int step = 0, rc = 0;
  const char *what = "pmcr_init";

  if ((rc = pmcr_init(MPI_COMM_WORLD, o.config))) {
    fail(rank, "pmcr_init", rc);
    MPI_Finalize();
    return 1;
  }
  pmcr_protect(0, &step, sizeof step);
  pmcr_protect(1, cur, cells * sizeof *cur);

  int version = -1;
  what = "pmcr_restart_test";
  if ((rc = pmcr_restart_test(&version))) goto out;
  if (version >= 0) {
    what = "pmcr_restart";
    if ((rc = pmcr_restart(version))) goto out;
    if (rank == 0) printf("heat2d: restarted from version %d (step %d)\n", version, step);
  } else {
    /* The top edge of the plate is held at 100 degrees, the rest at 0. */
    if (first == 0)
      for (int j = 0; j < o.nx; j++) cur[(size_t)o.nx + j] = 100.0;
  }
  memcpy(next, cur, cells * sizeof *cur);

  while (step < o.steps) {
    MPI_Sendrecv(cur + o.nx, o.nx, MPI_DOUBLE, up, 0, cur + (size_t)(rows + 1) * o.nx, o.nx, MPI_DOUBLE, down, 0,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    MPI_Sendrecv(cur + (size_t)rows * o.nx, o.nx, MPI_DOUBLE, down, 1, cur, o.nx, MPI_DOUBLE, up, 1, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
    for (int i = 1; i <= rows; i++) {
      const int g = first + i - 1; /* global row */
      if (g == 0 || g == o.ny - 1) continue; /* fixed boundary rows */
      for (int j = 1; j < o.nx - 1; j++) {
        const size_t c = (size_t)i * o.nx + j;
        next[c] = 0.25 * (cur[c - o.nx] + cur[c + o.nx] + cur[c - 1] + cur[c + 1]);
      }
    }
    double *t = cur;
    cur = next;
    next = t;
    step++;
    if (o.sleep_ms) nanosleep(&(struct timespec){o.sleep_ms / 1000, (o.sleep_ms % 1000) * 1000000L}, NULL);
    if (step % o.every == 0 || step == o.steps) {
      /* The grid moved to the other buffer: protect replaces id 1's pointer. */
      pmcr_protect(1, cur, cells * sizeof *cur);
      what = "pmcr_checkpoint";
      if ((rc = pmcr_checkpoint(step))) goto out;
    }
  }

  /* Checksum of every rank's own rows, combined in rank order on rank 0. */
  uint64_t mine = fnv1a(cur + o.nx, (size_t)rows * o.nx * sizeof *cur, 0xcbf29ce484222325ull), *all = NULL;
  double sum = 0, total = 0;
  for (size_t c = (size_t)o.nx; c < (size_t)(rows + 1) * o.nx; c++) sum += cur[c];
  if (rank == 0) all = malloc((size_t)size * sizeof *all);
  MPI_Gather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  MPI_Reduce(&sum, &total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    printf("heat2d: final checksum %016llx after %d steps on %d ranks (mean temperature %.6f)\n",
           (unsigned long long)fnv1a(all, (size_t)size * sizeof *all, 0xcbf29ce484222325ull), step, size,
           total / ((double)o.nx * o.ny));
    free(all);
  }

out:
  if (rc) fail(rank, what, rc);
  pmcr_finalize();
  free(cur);
  free(next);
  MPI_Finalize();
  return rc ? 1 : 0;
}
