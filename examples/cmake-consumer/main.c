/*
 * An MPI program outside the pmcr tree, built against the installed package
 * (find_package(pmcr) or pkg-config). It counts to N, checkpointing every
 * iteration, and resumes from the last checkpoint when run again:
 *
 *   pmcr-run --local-pool /dev/shm/consumer.pool -- mpiexec -n 2 ./pmcr_consumer 3
 *   pmcr-run --local-pool /dev/shm/consumer.pool -- mpiexec -n 2 ./pmcr_consumer 5
 */
#include <mpi.h>
#include <pmcr/pmcr.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, rc, version = -1, iteration = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const int target = argc > 1 ? atoi(argv[1]) : 3;
  double state[512];
  for (int i = 0; i < 512; i++) state[i] = rank;

  if ((rc = pmcr_init(MPI_COMM_WORLD, NULL)) || (rc = pmcr_protect(0, &iteration, sizeof iteration)) ||
      (rc = pmcr_protect(1, state, sizeof state)) || (rc = pmcr_restart_test(&version)) ||
      (version >= 0 && (rc = pmcr_restart(version))))
    goto out;
  while (iteration < target) {
    iteration++;
    for (int i = 0; i < 512; i++) state[i] += iteration;
    if ((rc = pmcr_checkpoint(iteration))) goto out;
  }
  if (rank == 0)
    printf("pmcr_consumer (libpmcr %s): at iteration %d, restarted from version %d, state[0] = %g\n", pmcr_version(),
           iteration, version, state[0]);
out:
  if (rc) fprintf(stderr, "pmcr_consumer: rank %d: %s: %s\n", rank, pmcr_strerror(rc), pmcr_last_error());
  pmcr_finalize();
  MPI_Finalize();
  return rc ? 1 : 0;
}
