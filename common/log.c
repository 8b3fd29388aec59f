/* log.c: leveled logging to stderr (see log.h). */
#include "common/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static xr_log_level_t log_level = XR_LOG_INFO;
static char log_tag[64] = "xregion";

/* The last ERROR line, for /status (metrics.h). */
static pthread_mutex_t last_lock = PTHREAD_MUTEX_INITIALIZER;
static char            last_error[512];
static int64_t         last_error_us;

void
xr_log_set_level(xr_log_level_t level)
{
	log_level = level;
}

void
xr_log_set_tag(const char *tag)
{
	snprintf(log_tag, sizeof(log_tag), "%s", tag);
}

int
xr_log_level_parse(const char *s)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	int i;

	for (i = 0; i < 4; i++)
		if (strcasecmp(s, names[i]) == 0)
			return i;
	return -1;
}

void
xr_log(xr_log_level_t level, const char *fmt, ...)
{
	static const char *names[] = { "ERROR", "WARN", "INFO", "DEBUG" };
	char           line[2048];
	char           stamp[32];
	struct timeval tv;
	struct tm      tm;
	va_list        ap;
	int            n;

	if (level > log_level)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	/* A log line longer than the buffer is cut visibly, never silently. */
	if ((size_t)n >= sizeof(line))
		memcpy(line + sizeof(line) - 5, "...", 4);
	fprintf(stderr, "%s.%03dZ %s [%s] %s\n", stamp, (int)(tv.tv_usec / 1000),
	        names[level], log_tag, line);
	if (level == XR_LOG_ERROR) {
		/*
		 * Its first line only: a server's DETAIL may quote row values,
		 * and /status is served to whoever reaches metrics_listen.  Cut
		 * on a UTF-8 character boundary.
		 */
		size_t len = strcspn(line, "\n");

		if (len >= sizeof(last_error))
			len = sizeof(last_error) - 1;
		while (len > 0 && len < strlen(line) &&
		       ((unsigned char)line[len] & 0xC0) == 0x80)
			len--;
		pthread_mutex_lock(&last_lock);
		memcpy(last_error, line, len);
		last_error[len] = '\0';
		last_error_us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
		pthread_mutex_unlock(&last_lock);
	}
}

bool
xr_log_last_error(char *buf, size_t size, int64_t *at_us)
{
	bool any;

	pthread_mutex_lock(&last_lock);
	any = last_error_us != 0;
	snprintf(buf, size, "%s", last_error);
	*at_us = last_error_us;
	pthread_mutex_unlock(&last_lock);
	return any;
}
