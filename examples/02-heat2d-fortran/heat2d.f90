! heat2d in Fortran 2008 (mpi_f08 and module pmcr): the same 2-D heat
! diffusion as ../01-heat2d/heat2d.c, on an NX x NY grid split by rows over
! the ranks, checkpointed with pmcr every K steps.
!
! Each rank protects two buffers: id 0 the step counter, id 1 its rows of
! the grid with the two halo rows (grid(0:nx-1, 0:rows+1), a row per
! column, so that the bytes are laid out as the C program's). On start it
! asks pmcr for the latest complete checkpoint and resumes from it. At the
! end rank 0 prints an FNV-1a checksum of the final grid: a run that was
! killed and restarted prints the same checksum as one that never failed,
! and the same as the C heat2d on the same grid.
!
!   mpirun -np 4 heat2d_fortran [--nx N] [--ny N] [--steps N] [--every K]
!                               [--sleep-ms MS] [--config FILE]
program heat2d
  use, intrinsic :: iso_c_binding, only: c_int, c_loc, c_size_t, c_sizeof
  use, intrinsic :: iso_fortran_env, only: int8, int64, real64, error_unit, output_unit
  use mpi_f08
  use pmcr
  implicit none

  interface
    function usleep(us) bind(C, name="usleep") result(rc)
      import :: c_int
      integer(c_int), value :: us
      integer(c_int) :: rc
    end function
  end interface

  integer(int64), parameter :: fnv_basis = -3750763034362895579_int64  ! 0xcbf29ce484222325
  integer :: nx = 512, ny = 512, steps = 1000, every = 100, sleep_ms = 0
  character(len=:), allocatable :: config
  integer :: rank, nranks, rows, first, up, down, version, ierr, i, j, g, rc
  integer(c_int), target :: step
  real(real64), allocatable, target :: a(:, :), b(:, :)
  real(real64), pointer, contiguous :: cur(:, :), nxt(:, :), swap(:, :)
  integer(int64) :: mine
  integer(int64), allocatable :: all(:)
  real(real64) :: total, sum_mine
  character(len=16) :: hex
  character(len=32) :: what

  call MPI_Init()
  call MPI_Comm_rank(MPI_COMM_WORLD, rank)
  call MPI_Comm_size(MPI_COMM_WORLD, nranks)
  config = ''
  if (.not. parse_args()) then
    call MPI_Finalize()
    stop 2
  end if
  if (ny < nranks) then
    if (rank == 0) write (error_unit, '(a,i0,a,i0,a)') 'heat2d: ny (', ny, ') must be at least the number of ranks (', &
                                                       nranks, ')'
    call MPI_Finalize()
    stop 2
  end if

  ! Rows [first, first + rows) of the global grid, plus a halo row on each side.
  rows = ny / nranks
  first = rank * rows + min(rank, mod(ny, nranks))
  if (rank < mod(ny, nranks)) rows = rows + 1
  allocate (a(0:nx - 1, 0:rows + 1), b(0:nx - 1, 0:rows + 1))
  a = 0
  b = 0
  cur => a
  nxt => b
  up = merge(rank - 1, MPI_PROC_NULL, rank > 0)
  down = merge(rank + 1, MPI_PROC_NULL, rank < nranks - 1)
  step = 0
  rc = 0

  call pmcr_init(MPI_COMM_WORLD, config, ierr)
  if (ierr /= 0) then
    call fail('pmcr_init', ierr)
    call MPI_Finalize()
    stop 1
  end if
  call pmcr_protect(0, c_loc(step), c_sizeof(step), ierr)
  call pmcr_protect(1, c_loc(cur(0, 0)), grid_bytes(), ierr)

  what = 'pmcr_restart_test'
  call pmcr_restart_test(version, rc)
  if (rc == 0 .and. version >= 0) then
    what = 'pmcr_restart'
    call pmcr_restart(version, rc)
    if (rc == 0 .and. rank == 0) write (output_unit, '(a,i0,a,i0,a)') 'heat2d: restarted from version ', version, &
                                                                      ' (step ', step, ')'
  else if (rc == 0) then
    ! The top edge of the plate is held at 100 degrees, the rest at 0.
    if (first == 0) cur(:, 1) = 100
  end if

  if (rc == 0) then
    nxt = cur
    do while (step < steps)
      call MPI_Sendrecv(cur(:, 1), nx, MPI_DOUBLE_PRECISION, up, 0, cur(:, rows + 1), nx, MPI_DOUBLE_PRECISION, &
                        down, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE)
      call MPI_Sendrecv(cur(:, rows), nx, MPI_DOUBLE_PRECISION, down, 1, cur(:, 0), nx, MPI_DOUBLE_PRECISION, &
                        up, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE)
      do i = 1, rows
        g = first + i - 1  ! global row
        if (g == 0 .or. g == ny - 1) cycle  ! fixed boundary rows
        do j = 1, nx - 2
          nxt(j, i) = 0.25_real64 * (cur(j, i - 1) + cur(j, i + 1) + cur(j - 1, i) + cur(j + 1, i))
        end do
      end do
      swap => cur
      cur => nxt
      nxt => swap
      step = step + 1
      if (sleep_ms > 0) call sleep_ms_for(sleep_ms)
      if (mod(step, every) == 0 .or. step == steps) then
        ! The grid moved to the other array: protect replaces id 1's address.
        call pmcr_protect(1, c_loc(cur(0, 0)), grid_bytes(), ierr)
        what = 'pmcr_checkpoint'
        call pmcr_checkpoint(step, rc)
        if (rc /= 0) exit
      end if
    end do
  end if

  if (rc == 0) then
    ! Checksum of every rank's own rows, combined in rank order on rank 0.
    mine = fnv1a(transfer(cur(:, 1:rows), [0_int8]), fnv_basis)
    sum_mine = sum(cur(:, 1:rows))
    allocate (all(0:nranks - 1))
    call MPI_Gather(mine, 1, MPI_INTEGER8, all, 1, MPI_INTEGER8, 0, MPI_COMM_WORLD)
    call MPI_Reduce(sum_mine, total, 1, MPI_DOUBLE_PRECISION, MPI_SUM, 0, MPI_COMM_WORLD)
    if (rank == 0) then
      write (hex, '(z16.16)') fnv1a(transfer(all, [0_int8]), fnv_basis)
      write (output_unit, '(a,a,a,i0,a,i0,a,f0.6,a)') 'heat2d: final checksum ', lower(hex), ' after ', step, &
        ' steps on ', nranks, ' ranks (mean temperature ', total / (real(nx, real64) * ny), ')'
    end if
  else
    call fail(trim(what), rc)
  end if

  call pmcr_finalize(ierr)
  call MPI_Finalize()
  if (rc /= 0) stop 1

contains

  ! usleep takes less than a second at a time.
  subroutine sleep_ms_for(ms)
    integer, intent(in) :: ms
    integer(int64) :: us
    integer(c_int) :: status
    us = int(ms, int64) * 1000
    do while (us > 0)
      status = usleep(int(min(us, 999999_int64), c_int))
      us = us - min(us, 999999_int64)
    end do
  end subroutine

  integer(c_size_t) function grid_bytes()
    grid_bytes = int(size(cur, kind=int64) * c_sizeof(cur(0, 0)), c_size_t)
  end function

  ! FNV-1a, 64-bit, over BYTES (compiled with -fwrapv: the multiplication
  ! wraps as C's unsigned one does).
  integer(int64) function fnv1a(bytes, basis) result(h)
    integer(int8), intent(in) :: bytes(:)
    integer(int64), intent(in) :: basis
    integer(int64) :: k
    h = basis
    do k = 1, size(bytes, kind=int64)
      h = ieor(h, iand(int(bytes(k), int64), 255_int64)) * 1099511628211_int64
    end do
  end function

  function lower(text) result(out)
    character(len=*), intent(in) :: text
    character(len=len(text)) :: out
    integer :: k
    out = text
    do k = 1, len(out)
      if (out(k:k) >= 'A' .and. out(k:k) <= 'F') out(k:k) = achar(iachar(out(k:k)) + 32)
    end do
  end function

  subroutine fail(call_name, code)
    character(len=*), intent(in) :: call_name
    integer, intent(in) :: code
    write (error_unit, '(a,i0,a,a,a,a)') 'heat2d: rank ', rank, ': ', call_name, ' failed: ', pmcr_strerror(code)
  end subroutine

  logical function parse_args() result(ok)
    character(len=4096) :: arg, val
    integer :: k, n, stat
    ok = .true.
    k = 1
    do while (k <= command_argument_count())
      call get_command_argument(k, arg)
      val = ''
      if (k < command_argument_count()) call get_command_argument(k + 1, val)
      if (trim(arg) == '--config' .and. k < command_argument_count()) then
        config = trim(val)
      else if (any(trim(arg) == [character(len=10) :: '--nx', '--ny', '--steps', '--every', '--sleep-ms']) &
               .and. k < command_argument_count()) then
        read (val, *, iostat=stat) n
        if (stat /= 0 .or. n < 0 .or. n > 2**24) then
          if (rank == 0) write (error_unit, '(a,a,a,a,a)') 'heat2d: ', trim(arg), " needs a number from 0 to 16777216, got '", &
                                                           trim(val), "'"
          ok = .false.
          return
        end if
        select case (trim(arg))
        case ('--nx'); nx = n
        case ('--ny'); ny = n
        case ('--steps'); steps = n
        case ('--every'); every = n
        case ('--sleep-ms'); sleep_ms = n
        end select
      else
        if (rank == 0) write (error_unit, '(a)') 'usage: heat2d_fortran [--nx N] [--ny N] [--steps N] [--every K] ' // &
                                                 '[--sleep-ms MS] [--config FILE]'
        ok = .false.
        return
      end if
      k = k + 2
    end do
    if (nx < 3 .or. ny < 3 .or. every < 1) then
      if (rank == 0) write (error_unit, '(a)') 'heat2d: need nx, ny >= 3 and every >= 1'
      ok = .false.
    end if
  end function

end program heat2d
