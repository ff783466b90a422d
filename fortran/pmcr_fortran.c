/* The one thing module pmcr cannot do in Fortran: turn a Fortran
 * communicator handle (type(MPI_Comm)'s MPI_VAL) into a C MPI_Comm. */
#include <mpi.h>
#include <pmcr/pmcr.h>

int pmcr_fortran_init(MPI_Fint comm, const char *config_path);

int pmcr_fortran_init(MPI_Fint comm, const char *config_path) {
  const char *path = config_path[0] ? config_path : NULL;
  int up = 0;
  MPI_Initialized(&up);
  /* MPI_Comm_f2c needs MPI; pmcr_init itself says that it is missing. */
  return pmcr_init(up ? MPI_Comm_f2c(comm) : MPI_COMM_NULL, path);
}
