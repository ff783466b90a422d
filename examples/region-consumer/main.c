/*
 * A writer and a follower of one region, through <pmcr/region.h> alone (no
 * MPI): the writer changes a few blocks per generation, the follower keeps
 * a copy and fetches only the ranges that changed since the generation it
 * holds.
 *
 *   region_consumer HOST:PORT [GENERATIONS]
 */
#include <pmcr/region.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIZE (8u << 20)
#define CHECK(call)                                                                  \
  do {                                                                               \
    int rc_ = (call);                                                                \
    if (rc_) {                                                                       \
      fprintf(stderr, "%s: %s: %s\n", #call, pmcr_strerror(rc_), pmcr_last_error()); \
      return 1;                                                                      \
    }                                                                                \
  } while (0)

/* The follower: reads into COPY whatever of the latest generation changed
 * since the generation *HELD, which it then holds; adds the bytes to *FETCHED. */
static int follow(pmcr_region *r, unsigned char *copy, uint64_t *held, uint64_t *fetched) {
  pmcr_range ranges[64];
  uint64_t g, size;
  size_t n = 64;
  CHECK(pmcr_region_stat(r, &g, &size));
  CHECK(pmcr_region_changed(r, *held, g, ranges, &n));
  for (size_t k = 0; k < n; k++) {
    CHECK(pmcr_region_read(r, g, ranges[k].offset, copy + ranges[k].offset, ranges[k].length));
    *fetched += ranges[k].length;
  }
  *held = g;
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s HOST:PORT [GENERATIONS]\n", argv[0]);
    return 2;
  }
  const int generations = argc > 2 ? atoi(argv[2]) : 5;
  unsigned char *state = calloc(SIZE, 1), *copy = calloc(SIZE, 1);
  pmcr_client *c;
  pmcr_region *w, *r;
  CHECK(pmcr_connect(argv[1], &c));
  CHECK(pmcr_region_create(c, "example", "state", &w));
  CHECK(pmcr_region_clear(w));
  CHECK(pmcr_region_write(w, 0, state, SIZE));
  uint64_t g, held = 0, fetched = 0;
  CHECK(pmcr_region_commit(w, &g));
  CHECK(pmcr_region_open(c, "example", "state", &r));
  for (int i = 0; i < generations; i++) {
    if (follow(r, copy, &held, &fetched)) return 1;
    /* The writer: a few bytes in a few places, then the next generation. */
    for (int k = 0; k < 3; k++) {
      const uint64_t at = (uint64_t)rand() % (SIZE - 16);
      memset(state + at, i + 1, 16);
      CHECK(pmcr_region_write(w, at, state + at, 16));
    }
    CHECK(pmcr_region_commit(w, &g));
  }
  if (follow(r, copy, &held, &fetched)) return 1;
  g = held;
  const int same = memcmp(state, copy, SIZE) == 0;
  printf("generation %llu: the follower's copy is %s; it fetched %llu bytes for %d generations of %u bytes\n",
         (unsigned long long)g, same ? "identical" : "DIFFERENT", (unsigned long long)fetched, generations + 1, SIZE);
  CHECK(pmcr_region_close(r));
  CHECK(pmcr_region_close(w));
  CHECK(pmcr_region_remove(c, "example", "state"));
  CHECK(pmcr_disconnect(c));
  free(state);
  free(copy);
  return same ? 0 : 1;
}
