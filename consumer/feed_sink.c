/* feed_sink.c: the exactly-once files of `xregion feed` (feed_sink.h). */
#include "consumer/feed_sink.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <avro.h>
#include <uuid/uuid.h>

#include "common/avro_codec.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/lsn.h"

#define STATE_MAGIC     "xregion-feed-state 1"
#define BLOCK_SIZE      (256 * 1024)

/* One file of a generation: open (w set) or closed, not yet committed. */
typedef struct sfile_s {
	char              *reldir;    /* its directory, relative to out */
	char              *name;      /* topic+partition+offset.avro */
	uint64_t           fp;        /* its schema's fingerprint */
	avro_file_writer_t w;         /* NULL once closed */
	size_t             bs;        /* avro-c block size */
	uint64_t           bytes;     /* encoded bytes appended */
	int64_t            first_ts;  /* commit time of its first row */
} sfile_t;

/* One Kafka partition. */
typedef struct stp_s {
	char    *topic;
	int32_t  partition;
	int64_t  next;        /* next offset to read (-1: nothing read yet) */
	int64_t  committed;   /* next offset of the last committed record */
	sfile_t *files;       /* the generation */
	size_t   nfiles;
	int64_t  last_off;    /* offset of the last row appended */
	int64_t  gen_start;   /* monotonic µs of the generation's first row */
	int64_t  last_row;    /* monotonic µs of its last row */
} stp_t;

struct xr_sink_s {
	xr_sink_conf_t  conf;
	char           *out;
	char           *tmpdir;     /* out/_xregion/tmp */
	char           *statedir;   /* out/_xregion/state */
	int             lock_fd;    /* out/_xregion/lock, locked while open */
	stp_t          *tps;
	size_t          ntps;
	xr_sink_stats_t stats;
};

static char *
path_join(const char *a, const char *b)
{
	xr_buf_t p;

	xr_buf_init(&p);
	xr_buf_printf(&p, "%s/%s", a, b);
	return p.data;
}

/* fsync of a file or directory by path. */
static int
fsync_path(const char *path, bool dir, char *errstr, size_t errstr_size)
{
	int fd = open(path, (dir ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fsync(fd) != 0) {
		snprintf(errstr, errstr_size, "fsync %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/*
 * mkdir -p of path, fsyncing the parent of every directory it creates so
 * that the new entries survive a crash.
 */
static int
mkdir_durable(const char *path, char *errstr, size_t errstr_size)
{
	char  *p = strdup(path), *slash;
	int    rc = -1;

	if (!p) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	for (slash = p + 1;; slash++) {
		bool end = *slash == '\0';

		if (!end && *slash != '/')
			continue;
		*slash = '\0';
		if (mkdir(p, 0777) == 0) {
			char *parent = strdup(p), *ls = parent ? strrchr(parent, '/') : NULL;

			if (ls && ls != parent)
				*ls = '\0';
			else if (parent)
				strcpy(parent, ls ? "/" : ".");
			if (!parent || fsync_path(parent, true, errstr, errstr_size)) {
				free(parent);
				goto out;
			}
			free(parent);
		} else if (errno != EEXIST) {
			snprintf(errstr, errstr_size, "mkdir %s: %s", p, strerror(errno));
			goto out;
		}
		if (end)
			break;
		*slash = '/';
	}
	rc = 0;
out:
	free(p);
	return rc;
}

static stp_t *
find_tp(xr_sink_t *s, const char *topic, int32_t partition, bool add)
{
	size_t i;
	stp_t *n;

	for (i = 0; i < s->ntps; i++)
		if (s->tps[i].partition == partition &&
		    strcmp(s->tps[i].topic, topic) == 0)
			return &s->tps[i];
	if (!add)
		return NULL;
	n = realloc(s->tps, (s->ntps + 1) * sizeof(*n));
	if (!n)
		abort();
	s->tps = n;
	n = &s->tps[s->ntps++];
	memset(n, 0, sizeof(*n));
	n->topic = strdup(topic);
	if (!n->topic)
		abort();
	n->partition = partition;
	n->next = -1;
	n->committed = -1;
	n->last_off = -1;
	return n;
}

/* ---- recovery ---------------------------------------------------------- */

/*
 * Finishes one committed record: renames each of its files still in tmp
 * into place and fsyncs the directories.  Returns the record's next offset
 * in *next.
 */
static int
recover_record(xr_sink_t *s, const char *path, char *errstr,
               size_t errstr_size)
{
	FILE   *f = fopen(path, "r");
	char   *line = NULL, topic[512] = "";
	size_t  cap = 0;
	long long next = -1;
	int     partition = -1, rc = -1;
	bool    magic = false;

	if (!f) {
		snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (getline(&line, &cap, f) > 0) {
		char name[512], rel[4096];

		line[strcspn(line, "\n")] = '\0';
		if (!magic) {
			if (strcmp(line, STATE_MAGIC) != 0)
				break;
			magic = true;
		} else if (sscanf(line, "topic %511s", topic) == 1 ||
		           sscanf(line, "partition %d", &partition) == 1 ||
		           sscanf(line, "next %lld", &next) == 1) {
			continue;
		} else if (sscanf(line, "file %511s %4095s", name, rel) == 2) {
			char *tmp = path_join(s->tmpdir, name), *dst, *dir, *ls;

			dst = path_join(s->out, rel);
			dir = strdup(dst);
			ls = dir ? strrchr(dir, '/') : NULL;
			if (ls)
				*ls = '\0';
			if (access(tmp, F_OK) == 0) {
				if (!dir || mkdir_durable(dir, errstr, errstr_size) ||
				    rename(tmp, dst) != 0) {
					if (errstr[0] == '\0')
						snprintf(errstr, errstr_size, "rename %s: %s", tmp,
						         strerror(errno));
					free(tmp);
					free(dst);
					free(dir);
					goto out;
				}
				xr_info("feed: finished committing %s", rel);
			}
			if (dir && access(dst, F_OK) == 0 &&
			    fsync_path(dir, true, errstr, errstr_size)) {
				free(tmp);
				free(dst);
				free(dir);
				goto out;
			}
			free(tmp);
			free(dst);
			free(dir);
		}
	}
	if (!magic || !topic[0] || partition < 0 || next < 0) {
		snprintf(errstr, errstr_size, "%s: not a feed state record", path);
		goto out;
	}
	{
		stp_t *tp = find_tp(s, topic, partition, true);

		tp->next = tp->committed = next;
	}
	rc = 0;
out:
	free(line);
	fclose(f);
	return rc;
}

static int
recover(xr_sink_t *s, char *errstr, size_t errstr_size)
{
	DIR           *d;
	struct dirent *de;
	int            rc = 0;

	errstr[0] = '\0';
	d = opendir(s->statedir);
	if (!d) {
		snprintf(errstr, errstr_size, "%s: %s", s->statedir, strerror(errno));
		return -1;
	}
	while (rc == 0 && (de = readdir(d)) != NULL) {
		char  *p;
		size_t len;

		if (de->d_name[0] == '.')
			continue;
		p = path_join(s->statedir, de->d_name);
		len = strlen(de->d_name);
		if (len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0)
			(void)unlink(p);   /* a record never committed */
		else
			rc = recover_record(s, p, errstr, errstr_size);
		free(p);
	}
	closedir(d);
	if (rc)
		return -1;
	/* What is left in tmp belongs to no committed generation. */
	d = opendir(s->tmpdir);
	if (!d) {
		snprintf(errstr, errstr_size, "%s: %s", s->tmpdir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		char *p;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		p = path_join(s->tmpdir, de->d_name);
		if (unlink(p) == 0)
			xr_info("feed: dropped uncommitted %s (its rows are read again)",
			        de->d_name);
		free(p);
	}
	closedir(d);
	return fsync_path(s->tmpdir, true, errstr, errstr_size);
}

xr_sink_t *
xr_sink_open(const xr_sink_conf_t *conf, char *errstr, size_t errstr_size)
{
	xr_sink_t *s = calloc(1, sizeof(*s));
	char      *meta, *lock;

	if (!s) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	s->conf = *conf;
	s->lock_fd = -1;
	s->out = strdup(conf->out);
	meta = path_join(conf->out, "_xregion");
	s->tmpdir = path_join(meta, "tmp");
	s->statedir = path_join(meta, "state");
	lock = path_join(meta, "lock");
	free(meta);
	if (!s->out || mkdir_durable(s->tmpdir, errstr, errstr_size) ||
	    mkdir_durable(s->statedir, errstr, errstr_size))
		goto fail;
	/* One feeder per directory: a second would undo the first's work. */
	s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		snprintf(errstr, errstr_size, "%s: %s", lock,
		         s->lock_fd >= 0 && errno == EWOULDBLOCK
		             ? "another xregion feed writes to this directory"
		             : strerror(errno));
		goto fail;
	}
	if (recover(s, errstr, errstr_size))
		goto fail;
	free(lock);
	return s;
fail:
	free(lock);
	xr_sink_close(s);
	return NULL;
}

static void
file_drop(sfile_t *f)
{
	if (f->w)
		avro_file_writer_close(f->w);
	free(f->reldir);
	free(f->name);
	memset(f, 0, sizeof(*f));
}

void
xr_sink_close(xr_sink_t *s)
{
	size_t i, j;

	if (!s)
		return;
	for (i = 0; i < s->ntps; i++) {
		for (j = 0; j < s->tps[i].nfiles; j++)
			file_drop(&s->tps[i].files[j]);
		free(s->tps[i].files);
		free(s->tps[i].topic);
	}
	free(s->tps);
	if (s->lock_fd >= 0)
		close(s->lock_fd);   /* releases the lock */
	free(s->out);
	free(s->tmpdir);
	free(s->statedir);
	free(s);
}

int64_t
xr_sink_position(xr_sink_t *s, const char *topic, int32_t partition)
{
	stp_t *tp = find_tp(s, topic, partition, false);

	return tp ? tp->committed : -1;
}

void
xr_sink_stats(const xr_sink_t *s, xr_sink_stats_t *out)
{
	*out = s->stats;
}

/* ---- files ------------------------------------------------------------- */

static void
meta_entry(xr_buf_t *b, const char *key, const void *val, size_t len)
{
	xr_avro_put_bytes(b, key, strlen(key));
	xr_avro_put_bytes(b, val, len);
}

/*
 * Writes a container file's header: the magic, the metadata map (the
 * schema with its logical types and attributes, which avro-c's own header
 * writer drops, the codec and xregion's entries) and a random sync marker.
 * avro-c's writer then appends the blocks (avro_file_writer_open reads the
 * schema, codec and marker back from this header).
 */
static int
write_header(const char *path, const char *codec, const xr_sink_schema_t *sch,
             const char *topic, int32_t partition, int64_t offset,
             char *errstr, size_t errstr_size)
{
	xr_buf_t h;
	char     num[32];
	uuid_t   sync;
	FILE    *f;
	int      rc = -1;

	xr_buf_init(&h);
	xr_buf_append(&h, "Obj\x01", 4);
	xr_avro_put_long(&h, 7);
	meta_entry(&h, "avro.schema", sch->json, strlen(sch->json));
	meta_entry(&h, "avro.codec", codec, strlen(codec));
	snprintf(num, sizeof(num), "%016" PRIx64, sch->fingerprint);
	meta_entry(&h, "xr.schema.fingerprint", num, strlen(num));
	meta_entry(&h, "xr.table", sch->table, strlen(sch->table));
	meta_entry(&h, "xr.source.schema", sch->source_schema,
	           strlen(sch->source_schema));
	meta_entry(&h, "xr.topic", topic, strlen(topic));
	snprintf(num, sizeof(num), "%d:%" PRId64, (int)partition, offset);
	meta_entry(&h, "xr.first", num, strlen(num));
	xr_avro_put_long(&h, 0);
	uuid_generate(sync);
	xr_buf_append(&h, sync, 16);
	f = fopen(path, "wbx");
	if (!f || fwrite(h.data, 1, h.len, f) != h.len) {
		snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
		if (f)
			fclose(f);
		goto out;
	}
	if (fclose(f) != 0) {
		snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	xr_buf_term(&h);
	return rc;
}

static int
file_open_writer(xr_sink_t *s, sfile_t *f, char *errstr, size_t errstr_size)
{
	char *tmp = path_join(s->tmpdir, f->name);
	int   rc = avro_file_writer_open_bs(tmp, &f->w, f->bs);

	if (rc) {
		snprintf(errstr, errstr_size, "avro file %s: %s", tmp,
		         avro_strerror());
		f->w = NULL;
	}
	free(tmp);
	return rc ? -1 : 0;
}

static int
file_close(xr_sink_t *s, sfile_t *f, char *errstr, size_t errstr_size)
{
	char *tmp;
	int   rc;

	if (!f->w)
		return 0;
	rc = avro_file_writer_close(f->w);
	f->w = NULL;
	tmp = path_join(s->tmpdir, f->name);
	if (rc)
		snprintf(errstr, errstr_size, "avro file %s: %s", tmp,
		         avro_strerror());
	else
		rc = fsync_path(tmp, false, errstr, errstr_size);
	free(tmp);
	return rc ? -1 : 0;
}

/* Writes tp's state record: the commit point of its generation. */
static int
write_record(xr_sink_t *s, stp_t *tp, char *errstr, size_t errstr_size)
{
	xr_buf_t rec, name;
	char    *path, *tmp;
	size_t   i;
	int      fd = -1, rc = -1;

	xr_buf_init(&rec);
	xr_buf_init(&name);
	xr_buf_printf(&rec, STATE_MAGIC "\ntopic %s\npartition %d\nnext %" PRId64
	              "\n", tp->topic, (int)tp->partition, tp->next);
	for (i = 0; i < tp->nfiles; i++)
		xr_buf_printf(&rec, "file %s %s/%s\n", tp->files[i].name,
		              tp->files[i].reldir, tp->files[i].name);
	xr_buf_printf(&name, "%s+%d", tp->topic, (int)tp->partition);
	path = path_join(s->statedir, name.data);
	xr_buf_puts(&name, ".tmp");
	tmp = path_join(s->statedir, name.data);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0 || write(fd, rec.data, rec.len) != (ssize_t)rec.len ||
	    fsync(fd) != 0) {
		snprintf(errstr, errstr_size, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, path) != 0) {
		snprintf(errstr, errstr_size, "rename %s: %s", tmp, strerror(errno));
		goto out;
	}
	rc = fsync_path(s->statedir, true, errstr, errstr_size);
out:
	if (fd >= 0)
		close(fd);
	free(path);
	free(tmp);
	xr_buf_term(&rec);
	xr_buf_term(&name);
	return rc;
}

/* Commits tp's generation (see feed_sink.h). */
static int
commit_tp(xr_sink_t *s, stp_t *tp, char *errstr, size_t errstr_size)
{
	size_t i;

	if (tp->nfiles == 0 && tp->next == tp->committed)
		return 0;
	for (i = 0; i < tp->nfiles; i++)
		if (file_close(s, &tp->files[i], errstr, errstr_size))
			return -1;
	if (tp->nfiles && fsync_path(s->tmpdir, true, errstr, errstr_size))
		return -1;
	if (write_record(s, tp, errstr, errstr_size))
		return -1;
	for (i = 0; i < tp->nfiles; i++) {
		sfile_t *f = &tp->files[i];
		char    *dir = path_join(s->out, f->reldir);
		char    *tmp = path_join(s->tmpdir, f->name);
		char    *dst = path_join(dir, f->name);
		int      rc = mkdir_durable(dir, errstr, errstr_size);

		if (rc == 0 && rename(tmp, dst) != 0) {
			snprintf(errstr, errstr_size, "rename %s: %s", tmp,
			         strerror(errno));
			rc = -1;
		}
		if (rc == 0)
			rc = fsync_path(dir, true, errstr, errstr_size);
		free(dir);
		free(tmp);
		free(dst);
		if (rc)
			return -1;
		xr_debug("feed: committed %s/%s", f->reldir, f->name);
		file_drop(f);
		s->stats.files++;
	}
	tp->nfiles = 0;
	tp->committed = tp->next;
	s->stats.commits++;
	s->stats.last_commit_us = xr_unix_now_us();
	return 0;
}

int
xr_sink_commit_due(xr_sink_t *s, int64_t now_us, bool all, char *errstr,
                   size_t errstr_size)
{
	size_t i;

	for (i = 0; i < s->ntps; i++) {
		stp_t *tp = &s->tps[i];

		if (!all && tp->nfiles &&
		    now_us - tp->last_row < s->conf.idle_us &&
		    now_us - tp->gen_start < s->conf.rotate_us)
			continue;
		if (!all && tp->nfiles == 0 && tp->next == tp->committed)
			continue;
		if (commit_tp(s, tp, errstr, errstr_size))
			return -1;
	}
	return 0;
}

int
xr_sink_advance(xr_sink_t *s, const char *topic, int32_t partition,
                int64_t offset, char *errstr, size_t errstr_size)
{
	stp_t *tp = find_tp(s, topic, partition, true);
	size_t i;

	if (offset + 1 > tp->next)
		tp->next = offset + 1;
	/* Rotation by size, between messages (never inside one). */
	for (i = 0; i < tp->nfiles; i++)
		if (tp->files[i].bytes >= s->conf.rotate_bytes)
			return commit_tp(s, tp, errstr, errstr_size);
	return 0;
}

int
xr_sink_append(xr_sink_t *s, const char *topic, int32_t partition,
               int64_t offset, const char *reldir, const xr_sink_schema_t *sch,
               int64_t ts, const void *datum, size_t len, char *errstr,
               size_t errstr_size)
{
	stp_t   *tp = find_tp(s, topic, partition, true);
	sfile_t *f = NULL;
	size_t   i;
	int64_t  now = xr_mono_us();

	for (i = 0; i < tp->nfiles; i++) {
		sfile_t *c = &tp->files[i];

		if (!c->w || strcmp(c->reldir, reldir) != 0)
			continue;
		if (c->fp != sch->fingerprint) {
			/* A new schema starts a new file. */
			if (file_close(s, c, errstr, errstr_size))
				return -1;
			continue;
		}
		f = c;
	}
	/*
	 * Rotation by commit time, and the bound on open files: only before
	 * the first row of a message, so that a commit never splits one.
	 */
	if (offset > tp->last_off &&
	    ((f && ts - f->first_ts >= s->conf.rotate_us) ||
	     (!f && (int)tp->nfiles >= s->conf.max_open))) {
		if (commit_tp(s, tp, errstr, errstr_size))
			return -1;
		f = NULL;
	}
	if (!f) {
		sfile_t *n = realloc(tp->files, (tp->nfiles + 1) * sizeof(*n));
		xr_buf_t name;
		char    *tmp;

		if (!n)
			abort();
		tp->files = n;
		f = &tp->files[tp->nfiles];
		memset(f, 0, sizeof(*f));
		xr_buf_init(&name);
		xr_buf_printf(&name, "%s+%d+%010" PRId64 ".avro", topic,
		              (int)partition, offset);
		/* A second file of this offset (a new schema mid-transaction). */
		for (i = 0; i < tp->nfiles; i++)
			if (strcmp(tp->files[i].name, name.data) == 0) {
				xr_buf_reset(&name);
				xr_buf_printf(&name, "%s+%d+%010" PRId64 "-%zu.avro", topic,
				              (int)partition, offset, tp->nfiles);
			}
		f->name = name.data;
		f->reldir = strdup(reldir);
		f->fp = sch->fingerprint;
		f->bs = BLOCK_SIZE;
		f->first_ts = ts;
		if (!f->reldir)
			abort();
		tmp = path_join(s->tmpdir, f->name);
		if (write_header(tmp, s->conf.codec, sch, topic, partition, offset,
		                 errstr, errstr_size) ||
		    file_open_writer(s, f, errstr, errstr_size)) {
			(void)unlink(tmp);
			free(tmp);
			file_drop(f);
			return -1;
		}
		free(tmp);
		if (tp->nfiles == 0)
			tp->gen_start = now;
		tp->nfiles++;
	}
	if (avro_file_writer_append_encoded(f->w, datum, (int64_t)len) != 0) {
		/* Larger than a block: reopen with blocks that hold it. */
		if (file_close(s, f, errstr, errstr_size))
			return -1;
		f->bs = len + 1024 > 2 * f->bs ? len + 1024 : 2 * f->bs;
		if (file_open_writer(s, f, errstr, errstr_size))
			return -1;
		if (avro_file_writer_append_encoded(f->w, datum, (int64_t)len)) {
			snprintf(errstr, errstr_size, "avro file %s: %s", f->name,
			         avro_strerror());
			return -1;
		}
	}
	f->bytes += len;
	tp->last_row = now;
	tp->last_off = offset;
	s->stats.rows++;
	s->stats.bytes += len;
	return 0;
}
