/* schema_registry.c: a Confluent-compatible registry client (see .h). */
#include "common/schema_registry.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "common/buf.h"
#include "common/log.h"

/* A registered schema or a fetched one. */
typedef struct sr_entry_s {
	char   *subject;   /* NULL for a fetched one */
	char   *json;
	int32_t id;
} sr_entry_t;

struct xr_sr_s {
	const xr_config_t *conf;
	CURL              *curl;
	struct curl_slist *headers;
	char              *base;      /* url without a trailing '/' */
	sr_entry_t        *entries;
	size_t             n;
	xr_buf_t           body;      /* the last answer */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode       curl_init_rc;

static void
curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t
on_body(char *p, size_t size, size_t n, void *opaque)
{
	xr_buf_append(opaque, p, size * n);
	return size * n;
}

xr_sr_t *
xr_sr_new(const xr_config_t *conf, char *errstr, size_t errstr_size)
{
	xr_sr_t *sr;
	size_t   len;

	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK || !conf->registry_url) {
		snprintf(errstr, errstr_size, "schema registry: %s",
		         conf->registry_url ? curl_easy_strerror(curl_init_rc)
		                            : "kafka.schema_registry.url is not set");
		return NULL;
	}
	sr = calloc(1, sizeof(*sr));
	if (!sr)
		abort();
	sr->conf = conf;
	xr_buf_init(&sr->body);
	sr->base = strdup(conf->registry_url);
	if (!sr->base)
		abort();
	len = strlen(sr->base);
	while (len > 0 && sr->base[len - 1] == '/')
		sr->base[--len] = '\0';
	sr->curl = curl_easy_init();
	if (!sr->curl) {
		snprintf(errstr, errstr_size, "schema registry: cannot make a "
		         "libcurl handle");
		xr_sr_destroy(sr);
		return NULL;
	}
	sr->headers = curl_slist_append(NULL, "Content-Type: "
	                                "application/vnd.schemaregistry.v1+json");
	sr->headers = curl_slist_append(sr->headers, "Accept: "
	                                "application/vnd.schemaregistry.v1+json, "
	                                "application/json");
	curl_easy_setopt(sr->curl, CURLOPT_HTTPHEADER, sr->headers);
	curl_easy_setopt(sr->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(sr->curl, CURLOPT_WRITEDATA, &sr->body);
	curl_easy_setopt(sr->curl, CURLOPT_TIMEOUT_MS,
	                 (long)conf->registry_timeout_ms);
	curl_easy_setopt(sr->curl, CURLOPT_CONNECTTIMEOUT_MS,
	                 (long)conf->registry_timeout_ms);
	curl_easy_setopt(sr->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(sr->curl, CURLOPT_USERAGENT, "xregion");
	if (conf->registry_username) {
		curl_easy_setopt(sr->curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
		curl_easy_setopt(sr->curl, CURLOPT_USERNAME, conf->registry_username);
		curl_easy_setopt(sr->curl, CURLOPT_PASSWORD,
		                 conf->registry_password ? conf->registry_password
		                                         : "");
	}
	if (conf->registry_ca)
		curl_easy_setopt(sr->curl, CURLOPT_CAINFO, conf->registry_ca);
	return sr;
}

void
xr_sr_destroy(xr_sr_t *sr)
{
	size_t i;

	if (!sr)
		return;
	for (i = 0; i < sr->n; i++) {
		free(sr->entries[i].subject);
		free(sr->entries[i].json);
	}
	free(sr->entries);
	if (sr->curl)
		curl_easy_cleanup(sr->curl);
	curl_slist_free_all(sr->headers);
	free(sr->base);
	xr_buf_term(&sr->body);
	free(sr);
}

static void
remember(xr_sr_t *sr, const char *subject, const char *json, int32_t id)
{
	sr_entry_t *n = realloc(sr->entries, (sr->n + 1) * sizeof(*n));

	if (!n)
		abort();
	sr->entries = n;
	n = &sr->entries[sr->n++];
	n->subject = subject ? strdup(subject) : NULL;
	n->json = strdup(json);
	n->id = id;
	if ((subject && !n->subject) || !n->json)
		abort();
}

/*
 * One request: GET path, or POST body to it.  Returns the HTTP status, or
 * -1 with errstr when there was no answer.  The answer is in sr->body.
 */
static long
request(xr_sr_t *sr, const char *path, const char *post, char *errstr,
        size_t errstr_size)
{
	xr_buf_t url;
	CURLcode rc;
	long     status = 0;

	xr_buf_init(&url);
	xr_buf_printf(&url, "%s%s", sr->base, path);
	xr_buf_reset(&sr->body);
	curl_easy_setopt(sr->curl, CURLOPT_URL, url.data);
	if (post) {
		curl_easy_setopt(sr->curl, CURLOPT_POSTFIELDS, post);
	} else {
		curl_easy_setopt(sr->curl, CURLOPT_HTTPGET, 1L);
	}
	rc = curl_easy_perform(sr->curl);
	if (rc != CURLE_OK) {
		/* The path only: the URL may carry credentials. */
		snprintf(errstr, errstr_size, "schema registry: %s %s: %s",
		         post ? "POST" : "GET", path, curl_easy_strerror(rc));
		xr_buf_term(&url);
		return -1;
	}
	curl_easy_getinfo(sr->curl, CURLINFO_RESPONSE_CODE, &status);
	xr_buf_term(&url);
	return status;
}

void
xr_sr_answer_error(const char *what, long status, const char *body,
                   size_t len, char *errstr, size_t errstr_size)
{
	json_error_t je;
	json_t      *a = json_loadb(body, len, 0, &je);
	const char  *msg = a ? json_string_value(json_object_get(a, "message"))
	                     : NULL;

	if (msg)
		snprintf(errstr, errstr_size, "schema registry: %s: HTTP %ld: %.300s",
		         what, status, msg);
	else if (len)
		snprintf(errstr, errstr_size, "schema registry: %s: HTTP %ld: %.*s",
		         what, status, (int)(len < 300 ? len : 300), body);
	else
		snprintf(errstr, errstr_size, "schema registry: %s: HTTP %ld: "
		         "(no message)", what, status);
	json_decref(a);
}

int
xr_sr_parse_id(const char *what, const char *body, size_t len, int32_t *id,
               char *errstr, size_t errstr_size)
{
	json_error_t je;
	json_t      *ans = json_loadb(body, len, 0, &je);
	json_t      *jid = ans ? json_object_get(ans, "id") : NULL;

	if (!json_is_integer(jid) || json_integer_value(jid) < 0 ||
	    json_integer_value(jid) > INT32_MAX) {
		snprintf(errstr, errstr_size, "schema registry: %s: no id in the "
		         "answer: %.*s", what, (int)(len < 200 ? len : 200), body);
		json_decref(ans);
		return -1;
	}
	*id = (int32_t)json_integer_value(jid);
	json_decref(ans);
	return 0;
}

char *
xr_sr_parse_schema(const char *what, const char *body, size_t len,
                   char *errstr, size_t errstr_size)
{
	json_error_t je;
	json_t      *ans = json_loadb(body, len, 0, &je);
	const char  *js = ans ? json_string_value(json_object_get(ans, "schema"))
	                      : NULL;
	char        *copy;

	if (!js) {
		snprintf(errstr, errstr_size, "schema registry: %s: no schema in the "
		         "answer", what);
		json_decref(ans);
		return NULL;
	}
	copy = strdup(js);
	json_decref(ans);
	if (!copy)
		abort();
	return copy;
}

int
xr_sr_register(xr_sr_t *sr, const char *subject, const char *json,
               int32_t *id, bool *transient, char *errstr,
               size_t errstr_size)
{
	json_t      *req;
	char        *body;
	xr_buf_t     path;
	size_t       i;
	long         status;
	int          rc = -1;

	*transient = false;
	for (i = 0; i < sr->n; i++)
		if (sr->entries[i].subject &&
		    strcmp(sr->entries[i].subject, subject) == 0 &&
		    strcmp(sr->entries[i].json, json) == 0) {
			*id = sr->entries[i].id;
			return 0;
		}
	req = json_pack("{s:s}", "schema", json);
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!body)
		abort();
	xr_buf_init(&path);
	xr_buf_printf(&path, "/subjects/%s/versions", subject);
	status = request(sr, path.data, body, errstr, errstr_size);
	free(body);
	if (status < 0 || status >= 500 || status == 429 ||
	    status == 408) {
		if (status >= 0)
			xr_sr_answer_error(path.data, status, sr->body.data,
			                   sr->body.len, errstr, errstr_size);
		*transient = true;
		goto out;
	}
	if (status != 200) {
		xr_sr_answer_error(path.data, status, sr->body.data, sr->body.len,
		                   errstr, errstr_size);
		goto out;
	}
	if (xr_sr_parse_id(path.data, sr->body.data, sr->body.len, id, errstr,
	                   errstr_size))
		goto out;
	remember(sr, subject, json, *id);
	rc = 0;
out:
	xr_buf_term(&path);
	return rc;
}

const char *
xr_sr_schema(xr_sr_t *sr, int32_t id, bool *transient, char *errstr,
             size_t errstr_size)
{
	char        *js;
	char         path[64];
	size_t       i;
	long         status;

	*transient = false;
	for (i = 0; i < sr->n; i++)
		if (sr->entries[i].id == id)
			return sr->entries[i].json;
	snprintf(path, sizeof(path), "/schemas/ids/%" PRId32, id);
	status = request(sr, path, NULL, errstr, errstr_size);
	if (status < 0 || status >= 500 || status == 429 ||
	    status == 408) {
		if (status >= 0)
			xr_sr_answer_error(path, status, sr->body.data, sr->body.len,
			                   errstr, errstr_size);
		*transient = true;
		return NULL;
	}
	if (status != 200) {
		xr_sr_answer_error(path, status, sr->body.data, sr->body.len,
		                   errstr, errstr_size);
		return NULL;
	}
	js = xr_sr_parse_schema(path, sr->body.data, sr->body.len, errstr,
	                        errstr_size);
	if (!js)
		return NULL;
	remember(sr, NULL, js, id);
	free(js);
	return sr->entries[sr->n - 1].json;
}

int
xr_confluent_header(const void *msg, size_t len, int32_t *id,
                    const void **body, size_t *body_len)
{
	const unsigned char *p = msg;

	if (!msg || len < XR_CONFLUENT_HEADER_LEN || p[0] != XR_CONFLUENT_MAGIC)
		return -1;
	*id = (int32_t)(((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) |
	                ((uint32_t)p[3] << 8) | (uint32_t)p[4]);
	*body = p + XR_CONFLUENT_HEADER_LEN;
	*body_len = len - XR_CONFLUENT_HEADER_LEN;
	return 0;
}
