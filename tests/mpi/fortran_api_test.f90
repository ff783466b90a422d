! Every subroutine of module pmcr against a real pmserver, on a duplicated
! communicator (its handle is not MPI_COMM_WORLD's): what each returns,
! the errors the C API documents, and the data back after a restart. Rank
! 0 prints "fortran api: ok" if every rank passed, else each failure.
program fortran_api_test
  use, intrinsic :: iso_c_binding, only: c_loc, c_size_t, c_sizeof
  use, intrinsic :: iso_fortran_env, only: int64, real64, output_unit, error_unit
  use mpi_f08
  use pmcr
  implicit none

  type(MPI_Comm) :: comm
  integer :: rank, nranks, ierr, version, failures, total, k
  integer(c_size_t) :: nbytes
  integer(int64), allocatable, target :: counts(:)
  real(real64), allocatable, target :: field(:, :)
  real(real64), allocatable :: field0(:, :)

  call MPI_Init()
  call MPI_Comm_dup(MPI_COMM_WORLD, comm)
  call MPI_Comm_rank(comm, rank)
  call MPI_Comm_size(comm, nranks)
  failures = 0
  allocate (counts(1000), field(64, 32))
  counts = [(int(k, int64) * 1000 + rank, k = 1, 1000)]
  field = reshape([(real(k, real64) / 7 + rank, k = 1, size(field))], shape(field))
  field0 = field

  ! Before pmcr_init, and with a configuration file that is not there.
  call pmcr_checkpoint(1, ierr)
  call expect(ierr == PMCR_E_NOT_INIT, 'pmcr_checkpoint before pmcr_init', ierr)
  if (rank == 0) write (output_unit, '(a,a)') 'strerror(PMCR_E_NOT_INIT): ', pmcr_strerror(PMCR_E_NOT_INIT)
  if (rank == 0) write (output_unit, '(a,a)') 'strerror(0): ', pmcr_strerror(0)
  call pmcr_init(comm, '/nonexistent/pmcr.toml', ierr)
  call expect(ierr == PMCR_E_CONFIG, 'pmcr_init with a missing configuration file', ierr)

  call pmcr_init(comm, '', ierr)
  call expect(ierr == PMCR_OK, 'pmcr_init', ierr)
  call pmcr_init(comm, '', ierr)
  call expect(ierr == PMCR_E_STATE, 'pmcr_init twice', ierr)

  call pmcr_protect(0, c_loc(counts), size(counts, kind=c_size_t) * c_sizeof(counts(1)), ierr)
  call expect(ierr == 0, 'pmcr_protect(0)', ierr)
  call pmcr_protect(1, c_loc(field), size(field, kind=c_size_t) * c_sizeof(field(1, 1)), ierr)
  call expect(ierr == 0, 'pmcr_protect(1)', ierr)
  call pmcr_protect(-1, c_loc(field), 8_c_size_t, ierr)
  call expect(ierr == PMCR_E_INVAL, 'pmcr_protect with id -1', ierr)
  call pmcr_protect(2, c_loc(field(2, 1)), 8_c_size_t, ierr)
  call expect(ierr == PMCR_E_EXISTS, 'pmcr_protect overlapping id 1', ierr)
  call pmcr_unprotect(7, ierr)
  call expect(ierr == PMCR_E_NOT_FOUND, 'pmcr_unprotect of an id never protected', ierr)

  call pmcr_restart_test(version, ierr)
  call expect(ierr == 0 .and. version == -1, 'pmcr_restart_test of a new job gives -1', ierr)

  call pmcr_checkpoint(5, ierr)
  call expect(ierr == 0, 'pmcr_checkpoint(5)', ierr)
  call pmcr_checkpoint(5, ierr)
  call expect(ierr == PMCR_E_INVAL, 'pmcr_checkpoint(5) again (versions grow)', ierr)

  call pmcr_recover_size(5, 0, nbytes, ierr)
  call expect(ierr == 0 .and. nbytes == 8000, 'pmcr_recover_size(5, 0) is 8000', ierr)
  call pmcr_recover_size(5, 1, nbytes, ierr)
  call expect(ierr == 0 .and. nbytes == 64 * 32 * 8, 'pmcr_recover_size(5, 1) is 16384', ierr)
  call pmcr_recover_size(5, 9, nbytes, ierr)
  call expect(ierr == PMCR_E_NOT_FOUND, 'pmcr_recover_size of an id not in the version', ierr)

  ! Lose the data, then get it back.
  counts = -1
  field = -1
  call pmcr_restart_test(version, ierr)
  call expect(ierr == 0 .and. version == 5, 'pmcr_restart_test finds version 5', ierr)
  call pmcr_restart(version, ierr)
  call expect(ierr == 0, 'pmcr_restart(5)', ierr)
  call expect(all(counts == [(int(k, int64) * 1000 + rank, k = 1, 1000)]), 'id 0 restored bit for bit', ierr)
  call expect(all(transfer(field, 0_int64, size(field)) == transfer(field0, 0_int64, size(field0))), &
              'id 1 restored bit for bit', ierr)
  call pmcr_restart(3, ierr)
  call expect(ierr == PMCR_E_NOT_FOUND, 'pmcr_restart of a version never written', ierr)

  call pmcr_unprotect(1, ierr)
  call expect(ierr == 0, 'pmcr_unprotect(1)', ierr)
  call pmcr_checkpoint(6, ierr)
  call expect(ierr == 0, 'pmcr_checkpoint(6) of id 0 alone', ierr)
  call pmcr_recover_size(6, 1, nbytes, ierr)
  call expect(ierr == PMCR_E_NOT_FOUND, 'an unprotected id is not in the next version', ierr)

  call pmcr_finalize(ierr)
  call expect(ierr == 0, 'pmcr_finalize', ierr)
  call pmcr_finalize(ierr)
  call expect(ierr == PMCR_E_NOT_INIT, 'pmcr_finalize twice', ierr)

  call MPI_Allreduce(failures, total, 1, MPI_INTEGER, MPI_SUM, comm)
  if (rank == 0 .and. total == 0) write (output_unit, '(a,i0,a)') 'fortran api: ok on ', nranks, ' ranks'
  call MPI_Comm_free(comm)
  call MPI_Finalize()
  if (total /= 0) stop 1

contains

  subroutine expect(ok, what, code)
    logical, intent(in) :: ok
    character(len=*), intent(in) :: what
    integer, intent(in) :: code
    if (ok) return
    failures = failures + 1
    write (error_unit, '(a,i0,a,a,a,i0,a,a,a)') 'rank ', rank, ': FAILED: ', what, ' (ierr ', code, ': ', &
      pmcr_strerror(code), ')'
  end subroutine

end program fortran_api_test
