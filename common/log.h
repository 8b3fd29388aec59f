/* log.h: leveled logging to stderr, one line per event. */
#ifndef XR_LOG_H
#define XR_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
	XR_LOG_ERROR = 0,
	XR_LOG_WARN  = 1,
	XR_LOG_INFO  = 2,
	XR_LOG_DEBUG = 3
} xr_log_level_t;

/* Process-wide settings, set once by main() before any thread starts. */
void xr_log_set_level(xr_log_level_t level);
void xr_log_set_tag(const char *tag);  /* e.g. the region; copied */
/* Parses "error", "warn", "info", "debug"; returns -1 if unknown. */
int  xr_log_level_parse(const char *s);

/* Thread-safe: one fprintf per line, so lines from threads never interleave. */
void xr_log(xr_log_level_t level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * The last ERROR line logged by this process (without its stamp) into buf,
 * and when, in µs since the Unix epoch, in *at_us.  Returns false if none
 * was.  Thread-safe.
 */
bool xr_log_last_error(char *buf, size_t size, int64_t *at_us);

#define xr_error(...) xr_log(XR_LOG_ERROR, __VA_ARGS__)
#define xr_warn(...)  xr_log(XR_LOG_WARN, __VA_ARGS__)
#define xr_info(...)  xr_log(XR_LOG_INFO, __VA_ARGS__)
#define xr_debug(...) xr_log(XR_LOG_DEBUG, __VA_ARGS__)

#endif
