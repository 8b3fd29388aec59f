/* kafka_conf.c: librdkafka configuration from xregion's config. */
#include "common/kafka_conf.h"

#include <stdio.h>
#include <string.h>

static int
set(rd_kafka_conf_t *kc, const char *what, const char *key, const char *value,
    char *errstr, size_t errstr_size)
{
	char kerr[512];

	if (rd_kafka_conf_set(kc, key, value, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
		snprintf(errstr, errstr_size, "%s%s: %s", what, key, kerr);
		return -1;
	}
	return 0;
}

rd_kafka_t *
xr_kafka_query_new(const xr_config_t *conf, char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *kc;
	rd_kafka_t      *rk;
	char             err[1024];

	kc = xr_kafka_conf_new(conf, NULL, NULL, err, sizeof(err));
	if (!kc) {
		snprintf(errstr, errstr_size, "%s", err);
		return NULL;
	}
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
	if (!rk) {
		snprintf(errstr, errstr_size, "kafka: %s", err);
		rd_kafka_conf_destroy(kc);
		return NULL;
	}
	return rk;
}

rd_kafka_conf_t *
xr_kafka_conf_new(const xr_config_t *conf, const char *const *defaults,
                  const char *const *locked, char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *kc = rd_kafka_conf_new();
	size_t           i;

	for (i = 0; defaults && defaults[i]; i += 2)
		if (set(kc, "default ", defaults[i], defaults[i + 1], errstr,
		        errstr_size))
			goto fail;
	for (i = 0; locked && locked[i]; i += 2)
		if (set(kc, "default ", locked[i], locked[i + 1], errstr,
		        errstr_size))
			goto fail;
	if (set(kc, "kafka.", "bootstrap.servers", conf->brokers, errstr,
	        errstr_size))
		goto fail;
	for (i = 0; i < conf->n_kafka_props; i++) {
		const xr_kv_t *kv = &conf->kafka_props[i];
		size_t         j;

		for (j = 0; locked && locked[j]; j += 2) {
			if (strcmp(kv->key, locked[j]) == 0 &&
			    strcmp(kv->value, locked[j + 1]) != 0) {
				snprintf(errstr, errstr_size,
				         "kafka.properties.%s: xregion requires \"%s\" "
				         "(its delivery guarantee depends on it)",
				         kv->key, locked[j + 1]);
				goto fail;
			}
		}
		if (set(kc, "kafka.properties.", kv->key, kv->value, errstr,
		        errstr_size))
			goto fail;
	}
	return kc;

fail:
	rd_kafka_conf_destroy(kc);
	return NULL;
}

bool
xr_kafka_header(const rd_kafka_message_t *m, const char *name, char *buf,
                size_t size)
{
	rd_kafka_headers_t *h;
	const void         *v;
	size_t              n;

	if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    rd_kafka_header_get_last(h, name, &v, &n) !=
	        RD_KAFKA_RESP_ERR_NO_ERROR || !v || n >= size)
		return false;
	memcpy(buf, v, n);
	buf[n] = '\0';
	return true;
}

bool
xr_kafka_refused(int err, const char *reason, char *buf, size_t size)
{
	/*
	 * librdkafka reports any failed SASL handshake as an authentication
	 * error, a connection lost in the middle of one too ("mechanism
	 * handshake failed: Local: Broker transport failure"): only the
	 * broker's own refusal ("SASL authentication error: ...", with its
	 * message) says that the credentials are wrong.
	 */
	if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION && reason &&
	    strstr(reason, "SASL authentication error") &&
	    !strstr(reason, "Local:")) {
		int n = snprintf(buf, size, "kafka: %s: the broker refuses these "
		                 "credentials (kafka.properties sasl.*, "
		                 "XREGION_KAFKA_PROP_SASL_PASSWORD); retrying cannot "
		                 "help", reason);

		/*
		 * Before 2.6.1 librdkafka put the client nonce twice in its SCRAM
		 * final message; Kafka 4.0 and later compare the nonce strictly
		 * and refuse every SCRAM sign-in from it, right password or not.
		 */
		if (strstr(reason, "SCRAM") && rd_kafka_version() < 0x020601ff &&
		    n > 0 && (size_t)n < size)
			snprintf(buf + n, size - (size_t)n, ". Note: this xregion "
			         "runs librdkafka %s, whose SCRAM sign-in Kafka 4.0 "
			         "and later brokers refuse whatever the password "
			         "(fixed in librdkafka 2.6.1): use SASL PLAIN over TLS, "
			         "or build xregion with librdkafka 2.6.1 or later "
			         "(docs/security.md)", rd_kafka_version_str());
		return true;
	}
	/* (librdkafka reads ssl.ca.location once: a retry sees the same.) */
	if (err == RD_KAFKA_RESP_ERR__SSL && reason &&
	    strstr(reason, "certificate verify failed")) {
		snprintf(buf, size, "kafka: %s: the broker's certificate did not "
		         "verify (kafka.properties ssl.ca.location, the "
		         "certificate's dates and names); retrying cannot help",
		         reason);
		return true;
	}
	return false;
}

bool
xr_kafka_fatal_renewable(rd_kafka_t *rk)
{
	switch (rd_kafka_fatal_error(rk, NULL, 0)) {
	case RD_KAFKA_RESP_ERR_NO_ERROR:
	case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
	case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
		return false;
	default:
		return true;
	}
}

rd_kafka_t *
xr_kafka_dlq_new(const xr_config_t *conf, const char *client_id,
                 void (*dr_cb)(rd_kafka_t *, const rd_kafka_message_t *,
                               void *),
                 void (*error_cb)(rd_kafka_t *, int, const char *, void *),
                 void *opaque, char *errstr, size_t errstr_size)
{
	const char *const defaults[] = {
		"client.id", client_id,
		"enable.idempotence", "true",
		"acks", "all",
		NULL
	};
	rd_kafka_conf_t *kc;
	rd_kafka_t      *rk;

	kc = xr_kafka_conf_new(conf, defaults, NULL, errstr, errstr_size);
	if (!kc)
		return NULL;
	rd_kafka_conf_set_opaque(kc, opaque);
	if (dr_cb)
		rd_kafka_conf_set_dr_msg_cb(kc, dr_cb);
	if (error_cb)
		rd_kafka_conf_set_error_cb(kc, error_cb);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, errstr_size);
	if (!rk)
		rd_kafka_conf_destroy(kc);
	return rk;
}

void
xr_kafka_drop(rd_kafka_t *rk)
{
	rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	rd_kafka_poll(rk, 0);
	rd_kafka_destroy(rk);
}
