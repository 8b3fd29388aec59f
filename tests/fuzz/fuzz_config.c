/*
 * fuzz_config.c: libFuzzer harness for common/config.c, the YAML
 * configuration loader (libyaml's event pass, then its document walked and
 * validated key by key), through xr_config_load_mem: the same code as
 * xr_config_load without the file.
 *
 * The XREGION_* variables are removed first, so that only the input
 * decides.  What it checks, beyond ASan/UBSan and LeakSanitizer: the input
 * is read from a heap copy of its exact size (not NUL-terminated); a
 * failure sets errstr; a config that loads has its required keys and
 * derived names, and each table's versions table name is either refused
 * or fits its limit.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"

extern char **environ;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char **e;

	(void)argc;
	(void)argv;
	/* Restart after each unset: unsetenv moves the entries. */
	for (e = environ; e && *e; ) {
		const char *eq = strchr(*e, '=');

		if (strncmp(*e, "XREGION_", 8) == 0 && eq) {
			char name[256];

			if ((size_t)(eq - *e) >= sizeof(name))
				abort();
			memcpy(name, *e, (size_t)(eq - *e));
			name[eq - *e] = '\0';
			if (unsetenv(name) != 0)
				abort();
			e = environ;
		} else {
			e++;
		}
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	xr_config_t *conf;
	char         err[1024], vt[XR_CONFIG_MAX_VTNAME + 1];
	char        *buf;
	size_t       i;

	buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	if (size)
		memcpy(buf, data, size);

	err[0] = '\0';
	conf = xr_config_load_mem("fuzz.yaml", buf, size, err, sizeof(err));
	if (!conf) {
		if (err[0] == '\0')
			abort();
		free(buf);
		return 0;
	}
	if (!conf->region || !conf->pg_dsn || !conf->brokers || !conf->slot ||
	    !conf->schemas_topic || !conf->group_id)
		abort();
	for (i = 0; i < conf->n_tables; i++) {
		const xr_table_conf_t *t = &conf->tables[i];

		if (!t->schema || !t->name)
			abort();
		if (xr_config_versions_name(t->schema, t->name, vt, sizeof(vt)) == 0 &&
		    strlen(vt) > XR_CONFIG_MAX_VTNAME)
			abort();
		if (xr_config_table(conf, t->schema, t->name) == NULL)
			abort();
		(void)xr_config_publishes(conf, t->schema, t->name);
	}
	xr_config_destroy(conf);
	free(buf);
	return 0;
}
