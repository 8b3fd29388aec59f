/*
 * lease.h: several consumers of one region share the work by source
 * region.  A source region's transactions span all of its partitions, and
 * its replication origin can be held by one session at a time, so the unit
 * a consumer takes is a whole source region, never a partition.
 *
 * A consumer takes a source region by taking a session-level advisory lock
 * in the region's database on its apply session (its lease), and applies
 * only the regions whose lease that very session holds (the fence): a
 * consumer that died, or whose session ended, has no session left to write
 * with, and its lease is free for the others at once.  The members of the
 * region are the sessions holding a shared membership lock; each takes its
 * share, ceil(source regions / members), and gives up what it holds beyond
 * that.
 *
 * Lock keys (the two-int4 form, pg_locks objsubid 2): class 0x78726567
 * ('xreg'), then 0 for membership, or a 31-bit hash of the source region's
 * name.  An application's own two-key advisory locks on that class would
 * collide with them.
 */
#ifndef XR_LEASE_H
#define XR_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consumer/apply.h"

#define XR_LEASE_CLASS 0x78726567

/* The second lock key of region's lease (never 0: membership's). */
int32_t xr_lease_key(const char *region);

/*
 * From now on a applies, stores offsets of and stores positions for only
 * the source regions whose lease its current session holds; a reconnect
 * (a new session) holds none.
 */
void xr_applier_fence(xr_applier_t *a);

/*
 * Takes region's lease on a's session if no other session holds it: *got
 * says whether this session holds it now.  Returns 0, or -1 with errstr
 * (not connected, or the database refused).
 */
int xr_applier_take_lease(xr_applier_t *a, const char *region, bool *got,
                          char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Gives region's lease up (between transactions), and the session's hold
 * of its replication origin with it (the next holder sets it up).
 * Returns 0, or -1 with errstr; either way the applier no longer applies
 * region.
 */
int xr_applier_drop_lease(xr_applier_t *a, const char *region, char *errstr,
                          size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Which session a is on: it changes with every (re)connect, and with it
 * everything held in memory of what the old one applied may be stale.
 */
unsigned long xr_applier_session(const xr_applier_t *a);

/* Whether a's current session holds region's lease. */
bool xr_applier_holds_lease(const xr_applier_t *a, const char *region);

/*
 * Joins the region's members on a's session (once per session) and counts
 * them into *members (this one included).  Returns 0, or -1 with errstr.
 */
int xr_applier_members(xr_applier_t *a, int *members, char *errstr,
                       size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * The decision, apart from the database: of n source regions, held[i]
 * says whether this consumer holds region i; with members consumers, its
 * share is ceil(n / members).  Returns the index of a region to give up
 * (held beyond the share: the last one held), or -1 when it holds no more
 * than its share; *want is how many more it should try to take (0 when at
 * or over its share).
 */
long xr_lease_plan(const bool *held, size_t n, int members, size_t *want);

#endif
