/* lsn.h: PostgreSQL WAL positions (XLogRecPtr) and time conversions. */
#ifndef XR_LSN_H
#define XR_LSN_H

#include <stddef.h>
#include <stdint.h>

typedef uint64_t xr_lsn_t;

#define XR_INVALID_LSN ((xr_lsn_t)0)
/* Text form "XXXXXXXX/XXXXXXXX" needs at most this many bytes with NUL. */
#define XR_LSN_STRLEN 18

/* Writes "hi/lo" in PostgreSQL's %X/%X form; returns buf. */
char *xr_lsn_format(xr_lsn_t lsn, char buf[XR_LSN_STRLEN]);
/* Parses "hi/lo"; returns 0 on success, -1 on malformed text. */
int   xr_lsn_parse(const char *s, xr_lsn_t *out) __attribute__((warn_unused_result));

/* Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC). */
#define XR_PG_EPOCH_OFFSET_US INT64_C(946684800000000)

/* Current time in PostgreSQL's epoch (microseconds since 2000-01-01 UTC). */
int64_t xr_pg_now_us(void);
/* Current time in microseconds since the Unix epoch. */
int64_t xr_unix_now_us(void);

/* A monotonic clock, µs from an arbitrary start: for timeouts and rates. */
int64_t xr_mono_us(void);

#endif
