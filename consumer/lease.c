/*
 * lease.c: source-region leases on the apply session (lease.h).
 */
#include "consumer/lease.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "consumer/apply_int.h"
#include "consumer/meta.h"

int32_t
xr_lease_key(const char *region)
{
	uint32_t h = 2166136261u;          /* FNV-1a */
	const unsigned char *p;

	for (p = (const unsigned char *)region; *p; p++)
		h = (h ^ *p) * 16777619u;
	h &= 0x7fffffffu;
	return h ? (int32_t)h : 1;
}

void
xr_applier_fence(xr_applier_t *a)
{
	a->fenced = true;
}

void
xr_lease_forget(xr_applier_t *a)
{
	size_t i;

	for (i = 0; i < a->nleases; i++)
		free(a->leases[i]);
	free(a->leases);
	a->leases = NULL;
	a->nleases = 0;
	a->joined = false;
}

unsigned long
xr_applier_session(const xr_applier_t *a)
{
	return a->session;
}

bool
xr_applier_holds_lease(const xr_applier_t *a, const char *region)
{
	size_t i;

	for (i = 0; i < a->nleases; i++)
		if (strcmp(a->leases[i], region) == 0)
			return true;
	return false;
}

/*
 * Runs "SELECT fn(class, key)" for one advisory lock function returning
 * boolean.  Returns 0 with *result, or -1 with errstr.
 */
static int
lock_call(xr_applier_t *a, const char *fn, int32_t key, bool *result,
          char *errstr, size_t errstr_size)
{
	char        sql[128], cls[16], k[16];
	const char *vals[2] = { cls, k };
	PGresult   *res;
	int         rc = -1;

	if (!a->conn || PQstatus(a->conn) != CONNECTION_OK) {
		snprintf(errstr, errstr_size, "lease: not connected to PostgreSQL");
		return -1;
	}
	snprintf(sql, sizeof(sql), "SELECT pg_catalog.%s($1::int4, $2::int4)", fn);
	snprintf(cls, sizeof(cls), "%d", XR_LEASE_CLASS);
	snprintf(k, sizeof(k), "%d", (int)key);
	res = PQexecParams(a->conn, sql, 2, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		xr_apply_copy_err(a->conn, fn, errstr, errstr_size);
		goto out;
	}
	*result = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	rc = 0;
out:
	PQclear(res);
	return rc;
}

int
xr_applier_take_lease(xr_applier_t *a, const char *region, bool *got,
                      char *errstr, size_t errstr_size)
{
	*got = xr_applier_holds_lease(a, region);
	if (*got)
		return 0;
	if (lock_call(a, "pg_try_advisory_lock", xr_lease_key(region), got,
	              errstr, errstr_size))
		return -1;
	if (*got) {
		a->leases = xr_reallocarray(a->leases, a->nleases + 1,
		                            sizeof(*a->leases));
		a->leases[a->nleases++] = xr_strdup(region);
	}
	return 0;
}

int
xr_applier_drop_lease(xr_applier_t *a, const char *region, char *errstr,
                      size_t errstr_size)
{
	size_t i;
	bool   was;
	char   origin[sizeof(a->origin)];

	for (i = 0; i < a->nleases; i++)
		if (strcmp(a->leases[i], region) == 0)
			break;
	if (i == a->nleases)
		return 0;
	free(a->leases[i]);
	a->leases[i] = a->leases[--a->nleases];
	/* Not applied from here on, whether or not the unlock gets through. */
	xr_meta_origin_name(a->conf, region, origin, sizeof(origin));
	if (a->conn && strcmp(a->origin, origin) == 0) {
		if (xr_apply_exec(a, "SELECT pg_catalog."
		                  "pg_replication_origin_session_reset()", errstr,
		                  errstr_size))
			goto fail;
		a->origin[0] = '\0';
	}
	if (lock_call(a, "pg_advisory_unlock", xr_lease_key(region), &was, errstr,
	              errstr_size) == 0)
		return 0;
fail:
	/* Ending the session lets go of everything it held, for certain. */
	PQfinish(a->conn);
	a->conn = NULL;
	xr_lease_forget(a);
	a->origin[0] = '\0';
	return -1;
}

int
xr_applier_members(xr_applier_t *a, int *members, char *errstr,
                   size_t errstr_size)
{
	char        cls[16];
	const char *vals[1] = { cls };
	PGresult   *res;
	bool        got;
	int         rc = -1;

	if (!a->joined) {
		if (lock_call(a, "pg_try_advisory_lock_shared", 0, &got, errstr,
		              errstr_size))
			return -1;
		/* (A shared lock is refused only while one holds it exclusively.) */
		a->joined = got;
	}
	snprintf(cls, sizeof(cls), "%d", XR_LEASE_CLASS);
	res = PQexecParams(a->conn,
	                   "SELECT count(*) FROM pg_catalog.pg_locks "
	                   "WHERE locktype = 'advisory' AND granted "
	                   "AND database = (SELECT oid FROM pg_catalog.pg_database "
	                   "WHERE datname = pg_catalog.current_database()) "
	                   "AND classid = $1::int4::oid AND objid = 0 "
	                   "AND objsubid = 2",
	                   1, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		xr_apply_copy_err(a->conn, "counting the consumers of this region",
		                  errstr, errstr_size);
		goto out;
	}
	*members = atoi(PQgetvalue(res, 0, 0));
	if (*members < 1)
		*members = 1;
	rc = 0;
out:
	PQclear(res);
	return rc;
}

/* Whether topic <prefix>.<region>.… belongs to a region a holds. */
static bool
holds_topic(const xr_applier_t *a, const char *topic)
{
	const char *prefix = a->conf->topic_prefix;
	size_t      plen = strlen(prefix), i;
	const char *r;

	if (strncmp(topic, prefix, plen) != 0 || topic[plen] != '.')
		return false;
	r = topic + plen + 1;
	for (i = 0; i < a->nleases; i++) {
		size_t n = strlen(a->leases[i]);

		if (strncmp(r, a->leases[i], n) == 0 && r[n] == '.')
			return true;
	}
	return false;
}

int
xr_lease_fence(const xr_applier_t *a, const char *src, const xr_offset_t *o,
               size_t n, char *errstr, size_t errstr_size)
{
	const char *lost = NULL;
	size_t      i;

	if (!a->fenced)
		return 0;
	if (src && !xr_applier_holds_lease(a, src))
		lost = src;
	for (i = 0; !lost && i < a->npos; i++)
		if (!xr_applier_holds_lease(a, a->pos[i].region))
			lost = a->pos[i].region;
	for (i = 0; !lost && i < n; i++)
		if (!holds_topic(a, o[i].topic))
			lost = o[i].topic;
	if (!lost)
		return 0;
	snprintf(errstr, errstr_size,
	         "not applied: this consumer's database session does not hold the "
	         "lease of %s (another consumer of the region applies it now, or "
	         "the session ended)", lost);
	return -1;
}

long
xr_lease_plan(const bool *held, size_t n, int members, size_t *want)
{
	size_t share, count = 0, i;

	if (members < 1)
		members = 1;
	share = (n + (size_t)members - 1) / (size_t)members;
	for (i = 0; i < n; i++)
		count += held[i];
	*want = count < share ? share - count : 0;
	if (count <= share)
		return -1;
	for (i = n; i-- > 0;)
		if (held[i])
			return (long)i;
	return -1;
}
