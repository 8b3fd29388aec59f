/* meta.c: the consumer's objects in schema xregion (see meta.h). */
#include "consumer/meta.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/pqbuf.h"

/*
 * The objects every region shares.  A version is (commit timestamp in µs
 * since the Unix epoch, region, commit LSN, change LSN); versions compare
 * lexicographically, the region in byte order ("C") so that every
 * database, whatever its default collation, breaks ties the same way.  The
 * two LSNs, the write's position in its region's stream, order the writes
 * of one transaction (and of transactions that share a commit time): each
 * write of a region has a version of its own, and a later one is greater.
 * A version without a position (a local write, a tombstone written here)
 * has 0, 0: it is only ever compared with other regions' writes, which the
 * region decides.
 */
static const char common_sql[] =
	"CREATE SCHEMA IF NOT EXISTS xregion;\n"
	"DO $$ BEGIN\n"
	"  IF to_regtype('xregion.version') IS NULL THEN\n"
	"    CREATE TYPE xregion.version AS (ts bigint, region text COLLATE \"C\",\n"
	"                                    clsn bigint, lsn bigint);\n"
	"  END IF;\n"
	/* Versions before the position within the source's stream was kept. */
	"  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attname = 'clsn' AND\n"
	"                 attrelid = (SELECT typrelid FROM pg_type\n"
	"                             WHERE oid = 'xregion.version'::regtype)) THEN\n"
	"    ALTER TYPE xregion.version ADD ATTRIBUTE clsn bigint,\n"
	"                               ADD ATTRIBUTE lsn bigint;\n"
	"  END IF;\n"
	"END $$;\n"
	"CREATE TABLE IF NOT EXISTS xregion.offsets (\n"
	"  topic text NOT NULL, partition int NOT NULL,\n"
	"  next_offset bigint NOT NULL,\n"
	"  updated_at timestamptz NOT NULL DEFAULT now(),\n"
	"  PRIMARY KEY (topic, partition));\n"
	/*
	 * How far each source region's transactions are applied (consumer.
	 * apply_mode atomic): the commit LSN of the last one, in the same
	 * transaction as its rows and offsets.  Events of transactions at or
	 * before it (a producer's restart sends some again) are skipped.
	 */
	"CREATE TABLE IF NOT EXISTS xregion.applied (\n"
	"  region text PRIMARY KEY, commit_lsn bigint NOT NULL,\n"
	"  system_id text NOT NULL, commit_ts timestamptz,\n"
	"  updated_at timestamptz NOT NULL DEFAULT now());\n"
	/*
	 * The slot of this region's one producer, recorded by its setup
	 * (producer/setup.c, claim_producer): a setup with another slot is
	 * refused while this one exists.
	 */
	"CREATE TABLE IF NOT EXISTS xregion.producer (\n"
	"  region text PRIMARY KEY, slot text NOT NULL,\n"
	"  updated_at timestamptz NOT NULL DEFAULT now());\n"
	"CREATE TABLE IF NOT EXISTS xregion.conflicts (\n"
	"  id bigserial PRIMARY KEY,\n"
	"  logged_at timestamptz NOT NULL DEFAULT now(),\n"
	"  table_schema text NOT NULL, table_name text NOT NULL,\n"
	"  key jsonb NOT NULL, kind text NOT NULL, resolution text NOT NULL,\n"
	"  local_ts timestamptz, local_region text,\n"
	"  remote_ts timestamptz NOT NULL, remote_region text NOT NULL,\n"
	"  local_row jsonb, remote_row jsonb,\n"
	"  event_id uuid, topic text, kafka_partition int, kafka_offset bigint);\n"
	/* Version vectors of vclock tables (added after the first release). */
	"ALTER TABLE xregion.conflicts\n"
	"  ADD COLUMN IF NOT EXISTS local_vclock jsonb,\n"
	"  ADD COLUMN IF NOT EXISTS remote_vclock jsonb;\n"
	"CREATE INDEX IF NOT EXISTS conflicts_table_at\n"
	"  ON xregion.conflicts (table_schema, table_name, logged_at);\n"
	/*
	 * Backfill jobs of this region's rows (producer/backfill.h): written by
	 * xregion backfill, run and advanced by this region's producer.
	 */
	"CREATE TABLE IF NOT EXISTS xregion.backfills (\n"
	"  id bigserial PRIMARY KEY,\n"
	"  table_schema text NOT NULL, table_name text NOT NULL,\n"
	"  for_region text,\n"
	"  state text NOT NULL DEFAULT 'pending' CHECK (state IN\n"
	"    ('pending', 'running', 'done', 'cancelled', 'failed')),\n"
	"  chunk_size int NOT NULL DEFAULT 2000 CHECK (chunk_size > 0),\n"
	"  rate int NOT NULL DEFAULT 0 CHECK (rate >= 0),\n"
	"  rows_total bigint, rows_sent bigint NOT NULL DEFAULT 0,\n"
	"  rows_skipped bigint NOT NULL DEFAULT 0,\n"
	"  chunks bigint NOT NULL DEFAULT 0,\n"
	"  last_key jsonb, error text,\n"
	"  created_at timestamptz NOT NULL DEFAULT now(),\n"
	"  started_at timestamptz, updated_at timestamptz,\n"
	"  finished_at timestamptz);\n"
	"ALTER TABLE xregion.backfills\n"
	"  ADD COLUMN IF NOT EXISTS phase text NOT NULL DEFAULT 'rows',\n"
	"  ADD COLUMN IF NOT EXISTS tombstones_sent bigint NOT NULL DEFAULT 0;\n"
	"CREATE TABLE IF NOT EXISTS xregion.truncations (\n"
	"  table_schema text NOT NULL, table_name text NOT NULL,\n"
	"  ts bigint, region text COLLATE \"C\" NOT NULL, xid xid8,\n"
	"  PRIMARY KEY (table_schema, table_name));\n"
	"ALTER TABLE xregion.truncations ADD COLUMN IF NOT EXISTS clsn bigint,\n"
	"  ADD COLUMN IF NOT EXISTS lsn bigint;\n"
	/*
	 * The version of each transaction whose rows have no entries of their
	 * own: an apply of the fast insert path, or a large local transaction
	 * (the producer records those whole, see producer/stamp.c).  Found by
	 * the rows' xmin once PostgreSQL has truncated the commit timestamps.
	 */
	"CREATE TABLE IF NOT EXISTS xregion.xact_versions (\n"
	"  xid xid8 PRIMARY KEY, ts bigint NOT NULL,\n"
	"  region text COLLATE \"C\" NOT NULL);\n"
	"CREATE INDEX IF NOT EXISTS xact_versions_xid32\n"
	"  ON xregion.xact_versions USING hash ((xid(xid)));\n"
	/*
	 * The version of a tombstone or truncation: given, or (for a local
	 * one, recorded by a trigger that cannot know its commit time) the
	 * commit timestamp of the transaction that wrote it.
	 */
	/* A version's timestamp as timestamptz; NULL for "no timestamp known". */
	/*
	 * The full id of a transaction id seen lately (a row's xmin): within
	 * 2^31 of the next one to be assigned.
	 */
	"CREATE OR REPLACE FUNCTION xregion.xid8_of(x xid) RETURNS xid8\n"
	"LANGUAGE sql STABLE AS $$\n"
	"  SELECT (CASE WHEN x::text::bigint >= n % 4294967296\n"
	"                AND n >= 4294967296\n"
	"    THEN (n / 4294967296 - 1) * 4294967296 + x::text::bigint\n"
	"    ELSE (n / 4294967296) * 4294967296 + x::text::bigint END)::text::xid8\n"
	"  FROM (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint\n"
	"        AS n) s\n"
	"$$;\n"
	"CREATE OR REPLACE FUNCTION xregion.ts_of(us bigint) RETURNS timestamptz\n"
	"LANGUAGE sql IMMUTABLE AS $$\n"
	"  SELECT CASE WHEN us > -9223372036854775808\n"
	"    THEN to_timestamp(us / 1000000.0) END\n"
	"$$;\n"
	"DROP FUNCTION IF EXISTS xregion.tomb_version(bigint, text, xid8);\n"
	"CREATE OR REPLACE FUNCTION xregion.tomb_version(vts bigint, vregion text,\n"
	"    vxid xid8, vclsn bigint DEFAULT NULL, vlsn bigint DEFAULT NULL)\n"
	"RETURNS xregion.version LANGUAGE plpgsql STABLE AS $$\n"
	"DECLARE us bigint;\n"
	"BEGIN\n"
	/* No tombstone: NULL, not a row of NULLs (GREATEST skips NULL). */
	"  IF vts IS NULL AND vxid IS NULL THEN\n"
	"    RETURN NULL;\n"
	"  END IF;\n"
	"  IF vts IS NOT NULL THEN\n"
	"    RETURN ROW(vts, vregion, coalesce(vclsn, 0),\n"
	"               coalesce(vlsn, 0))::xregion.version;\n"
	"  END IF;\n"
	/*
	 * Recorded here by a trigger: its transaction's commit time, or once
	 * that is gone, the one the producer recorded for a large transaction.
	 */
	"  us := (extract(epoch FROM pg_xact_commit_timestamp(xid(vxid)))\n"
	"         * 1000000)::bigint;\n"
	"  IF us IS NULL THEN\n"
	"    SELECT a.ts INTO us FROM xregion.xact_versions a WHERE a.xid = vxid;\n"
	"  END IF;\n"
	"  RETURN ROW(coalesce(us, -9223372036854775808), vregion, 0,\n"
	"             0)::xregion.version;\n"
	"END $$;\n"
	/*
	 * Version vectors ({"region": counter}, a missing entry is 0).
	 * vv_cmp(a, b): 0 equal, 1 a dominates, -1 b dominates, 2 concurrent.
	 */
	"CREATE OR REPLACE FUNCTION xregion.vv_cmp(a jsonb, b jsonb) RETURNS int\n"
	"LANGUAGE sql IMMUTABLE AS $$\n"
	"  SELECT CASE WHEN coalesce(ge, true) AND coalesce(le, true) THEN 0\n"
	"    WHEN coalesce(ge, true) THEN 1 WHEN coalesce(le, true) THEN -1\n"
	"    ELSE 2 END\n"
	"  FROM (SELECT bool_and(coalesce((a->>k)::bigint, 0) >=\n"
	"                        coalesce((b->>k)::bigint, 0)) AS ge,\n"
	"               bool_and(coalesce((a->>k)::bigint, 0) <=\n"
	"                        coalesce((b->>k)::bigint, 0)) AS le\n"
	"        FROM (SELECT jsonb_object_keys(coalesce(a, '{}'))\n"
	"              UNION SELECT jsonb_object_keys(coalesce(b, '{}'))) s(k)) x\n"
	"$$;\n"
	"CREATE OR REPLACE FUNCTION xregion.vv_merge(a jsonb, b jsonb)\n"
	"RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$\n"
	"  SELECT coalesce(jsonb_object_agg(k, GREATEST(\n"
	"           coalesce((a->>k)::bigint, 0), coalesce((b->>k)::bigint, 0))),\n"
	"         '{}')\n"
	"  FROM (SELECT jsonb_object_keys(coalesce(a, '{}'))\n"
	"        UNION SELECT jsonb_object_keys(coalesce(b, '{}'))) s(k)\n"
	"$$;\n"
	/*
	 * Whether a write (rank, hlc, region) beats the row's current winner:
	 * the order every region uses; with keep_local, never when concurrent.
	 */
	"CREATE OR REPLACE FUNCTION xregion.vc_wins(irnk bigint, its bigint,\n"
	"    iregion text, ivv jsonb, lrnk bigint, lts bigint, lregion text,\n"
	"    lvv jsonb, keep_local bool) RETURNS bool\n"
	"LANGUAGE sql IMMUTABLE AS $$\n"
	"  SELECT (ROW(irnk, its) > ROW(coalesce(lrnk, 0),\n"
	"                              coalesce(lts, -9223372036854775808))\n"
	"          OR (ROW(irnk, its) = ROW(coalesce(lrnk, 0),\n"
	"                                  coalesce(lts, -9223372036854775808))\n"
	"              AND iregion COLLATE \"C\" > coalesce(lregion, '') COLLATE \"C\"))\n"
	"     AND NOT (keep_local AND xregion.vv_cmp(ivv, lvv) = 2)\n"
	"$$;\n";

/*
 * The version of a live row: a row the consumer applied (its xmin carries
 * a replication origin, or is this very transaction) has its origin's
 * version in the versions table; any other row was written here, and its
 * version is its commit timestamp, which is exactly the timestamp this
 * region's producer put in the event the other regions compare.
 * A commit timestamp that is gone (frozen or very old rows) counts as the
 * oldest possible.
 *
 * The fast insert path (apply.c) writes no versions entry: its
 * transaction commits with the source's commit timestamp as origin
 * timestamp (pg_replication_origin_xact_setup), so an applied row without
 * an entry has its version in the commit data itself, the region being
 * the one its origin "<slot>_from_<region>" names.
 *
 * %s: a CASE on c.roident giving the region of each origin this setup
 * made (origins keep their ids until teardown drops them); %s: this region
 * as a literal.
 */
static const char version_of_sql[] =
	"DROP FUNCTION IF EXISTS xregion.version_of(xid, bigint, text);\n"
	"DROP FUNCTION IF EXISTS xregion.version_of(xid, bigint, text, bigint,\n"
	"    bigint);\n"
	"CREATE OR REPLACE FUNCTION xregion.version_of(x xid, vts bigint,\n"
	"    vregion text, vclsn bigint DEFAULT NULL, vlsn bigint DEFAULT NULL,\n"
	"    vxid xid8 DEFAULT NULL)\n"
	"RETURNS xregion.version LANGUAGE plpgsql STABLE AS $$\n"
	"DECLARE c record; r text; ats bigint; areg text;\n"
	"BEGIN\n"
	/* An entry written by the row's own writer describes it. */
	"  IF vts IS NOT NULL AND vxid IS NOT NULL AND xid(vxid) = x THEN\n"
	"    RETURN ROW(vts, vregion, coalesce(vclsn, 0),\n"
	"               coalesce(vlsn, 0))::xregion.version;\n"
	"  END IF;\n"
	"  c := pg_xact_commit_timestamp_origin(x);\n"
	"  IF c.roident IS NOT NULL THEN\n"
	"    IF c.roident <> 0 THEN\n"
	/* An entry of a consumer from before entries named their writer. */
	"      IF vts IS NOT NULL AND vxid IS NULL THEN\n"
	"        RETURN ROW(vts, vregion, coalesce(vclsn, 0),\n"
	"                   coalesce(vlsn, 0))::xregion.version;\n"
	"      END IF;\n"
	"      r := %s;\n"
	"      IF r IS NOT NULL THEN\n"
	"        RETURN ROW((extract(epoch FROM c.\"timestamp\") * 1000000)\n"
	"                   ::bigint, r, 0, 0)::xregion.version;\n"
	"      END IF;\n"
	"    END IF;\n"
	"    RETURN ROW((extract(epoch FROM c.\"timestamp\") * 1000000)::bigint,\n"
	"               %s, 0, 0)::xregion.version;\n"
	"  END IF;\n"
	/*
	 * No commit data: the row is this transaction's own (the only
	 * uncommitted rows a statement sees), or PostgreSQL truncated its
	 * commit timestamp (vacuum froze past it).  A fast-path apply recorded
	 * its version in xact_versions; a pre-upgrade entry is the best known.
	 */
	"  SELECT a.ts, a.region INTO ats, areg FROM xregion.xact_versions a\n"
	"    WHERE xid(a.xid) = x ORDER BY a.xid DESC LIMIT 1;\n"
	"  IF FOUND THEN\n"
	"    RETURN ROW(ats, areg, 0, 0)::xregion.version;\n"
	"  END IF;\n"
	/*
	 * Written by a subtransaction of this one (the fast paths write under
	 * a savepoint), in an earlier piece of a large transaction applied in
	 * one target transaction: this transaction's version.
	 */
	"  IF pg_xact_status(xregion.xid8_of(x)) = 'in progress' THEN\n"
	"    SELECT a.ts, a.region INTO ats, areg FROM xregion.xact_versions a\n"
	"      WHERE a.xid = pg_current_xact_id_if_assigned();\n"
	"    IF FOUND THEN\n"
	"      RETURN ROW(ats, areg, 0, 0)::xregion.version;\n"
	"    END IF;\n"
	"  END IF;\n"
	"  IF vts IS NOT NULL AND vxid IS NULL THEN\n"
	"    RETURN ROW(vts, vregion, coalesce(vclsn, 0),\n"
	"               coalesce(vlsn, 0))::xregion.version;\n"
	"  END IF;\n"
	/* A local write whose time is gone: the oldest (see docs/consumer.md). */
	"  RETURN ROW(-9223372036854775808, %s, 0, 0)::xregion.version;\n"
	"END $$;\n"
	"CREATE OR REPLACE FUNCTION xregion.truncated() RETURNS trigger\n"
	"LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp\n"
	"AS $$ BEGIN\n"
	"  INSERT INTO xregion.truncations VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME,\n"
	"      NULL, %s, pg_current_xact_id())\n"
	"  ON CONFLICT (table_schema, table_name) DO UPDATE\n"
	"    SET ts = NULL, region = EXCLUDED.region, xid = EXCLUDED.xid,\n"
	"        clsn = NULL, lsn = NULL;\n"
	"  RETURN NULL;\n"
	"END $$;\n";

/*
 * Secondary unique keys (docs/consumer.md, "Unique keys other than the
 * primary key").  A remote write that would give a unique value to a
 * second key is decided like any conflict, by version, the same way in
 * every region: the row with the greater version keeps the value; the
 * other is hidden.  A hidden row is a tombstone of its key, at the row's
 * own version (so every write rule treats it as deleted), whose image
 * waits in xregion.hidden; unique_unhide brings it back once nothing
 * newer holds its values.  Only plain unique indexes count (no
 * expressions, no predicate, not deferrable).
 *
 * unique_blockers: the other rows that hold a unique value of row image
 * img (jsonb of the table's columns), locked, with their versions.
 */
static const char unique_sql[] =
	"CREATE TABLE IF NOT EXISTS xregion.hidden (\n"
	"  table_schema text NOT NULL, table_name text NOT NULL,\n"
	"  key jsonb NOT NULL, ts bigint NOT NULL,\n"
	"  region text COLLATE \"C\" NOT NULL, clsn bigint NOT NULL,\n"
	"  lsn bigint NOT NULL, image jsonb NOT NULL,\n"
	"  hidden_at timestamptz NOT NULL DEFAULT now(),\n"
	"  PRIMARY KEY (table_schema, table_name, key));\n"
	/* The primary-key columns of rel, in the key's order. */
	"CREATE OR REPLACE FUNCTION xregion.key_columns(rel regclass)\n"
	"RETURNS text[] LANGUAGE sql STABLE AS $$\n"
	"  SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey,\n"
	"                   a.attnum))\n"
	"    FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid\n"
	"     AND a.attnum = ANY (i.indkey)\n"
	"   WHERE i.indrelid = rel AND i.indisprimary $$;\n"
	/*
	 * The version a row of a vclock table holds a unique value with: its
	 * entry's (hybrid clock, region), the order vc_wins uses after the
	 * rank (a row without an entry counts as the oldest).
	 */
	"CREATE OR REPLACE FUNCTION xregion.vc_version(ts bigint, region text)\n"
	"RETURNS xregion.version LANGUAGE sql IMMUTABLE AS $$\n"
	"  SELECT ROW(coalesce(ts, -9223372036854775808), coalesce(region, ''),\n"
	"             0, 0)::xregion.version $$;\n"
	"DROP FUNCTION IF EXISTS xregion.unique_blockers(regclass, text, jsonb);\n"
	"DROP FUNCTION IF EXISTS xregion.unique_blockers(regclass, text, jsonb,\n"
	"    bool);\n"
	"DROP FUNCTION IF EXISTS xregion.unique_blockers(regclass, text, jsonb,\n"
	"    bool, bool);\n"
	"CREATE FUNCTION xregion.unique_blockers(rel regclass,\n"
	"    vt text, image jsonb, locking bool DEFAULT true, vc bool DEFAULT false)\n"
	"RETURNS TABLE (row_tid tid, img jsonb, ver xregion.version)\n"
	"LANGUAGE plpgsql AS $$\n"
	"DECLARE keycols text[]; cond text; kmatch text; kjoin text;\n"
	"BEGIN\n"
	"  keycols := xregion.key_columns(rel);\n"
	"  SELECT string_agg('(' || (SELECT string_agg(format('t.%I %s r.%I',\n"
	"           a.attname, CASE WHEN i.indnullsnotdistinct\n"
	"           THEN 'IS NOT DISTINCT FROM' ELSE '=' END, a.attname), ' AND ')\n"
	"           FROM pg_attribute a WHERE a.attrelid = rel\n"
	"            AND a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1]))\n"
	"         || ')', ' OR ')\n"
	"    INTO cond FROM pg_index i\n"
	"   WHERE i.indrelid = rel AND i.indisunique AND NOT i.indisprimary\n"
	"     AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indimmediate;\n"
	"  IF cond IS NULL THEN\n"
	"    RETURN;\n"
	"  END IF;\n"
	"  SELECT string_agg(format('t.%I = r.%I', k, k), ' AND '),\n"
	"         string_agg(format('v.%I = t.%I', k, k), ' AND ')\n"
	"    INTO kmatch, kjoin FROM unnest(keycols) k;\n"
	"  RETURN QUERY EXECUTE format(\n"
	"    'SELECT t.ctid, to_jsonb(t), %s FROM %s t LEFT JOIN %s v ON %s '\n"
	"    'CROSS JOIN jsonb_populate_record(NULL::%s, $1) r '\n"
	"    'WHERE (%s) AND NOT (%s) %s', CASE WHEN vc THEN\n"
	"    'xregion.vc_version(v.ts, v.region)' ELSE 'xregion.version_of(t.xmin, '\n"
	"    'v.ts, v.region, v.clsn, v.lsn, v.xid)' END, rel, vt, kjoin, rel,\n"
	"    cond, kmatch, CASE WHEN locking THEN 'FOR UPDATE OF t' END)\n"
	"    USING image;\n"
	"END $$;\n"
	/* The key of image img: {"column": "value as text", ...}. */
	"CREATE OR REPLACE FUNCTION xregion.key_of(rel regclass, img jsonb)\n"
	"RETURNS jsonb LANGUAGE sql STABLE AS $$\n"
	"  SELECT jsonb_object_agg(k, img ->> k)\n"
	"    FROM unnest(xregion.key_columns(rel)) k $$;\n"
	/*
	 * Hides the row of image img (whole, as to_jsonb gives it) at version
	 * ver: its image into xregion.hidden, its key's entry a tombstone at
	 * ver, the row (if any, and drop_row: the caller holds its lock)
	 * deleted.  A key that had no row when the caller decided keeps a row
	 * a local insert gave it since: that write is newer.
	 */
	"DROP FUNCTION IF EXISTS xregion.unique_hide(regclass, text, jsonb,\n"
	"    xregion.version);\n"
	"DROP FUNCTION IF EXISTS xregion.unique_hide(regclass, text, jsonb,\n"
	"    xregion.version, bool, jsonb, bigint);\n"
	"CREATE OR REPLACE FUNCTION xregion.unique_hide(rel regclass, vt text,\n"
	"    img jsonb, ver xregion.version, vc bool DEFAULT false,\n"
	"    vv jsonb DEFAULT NULL, rnk bigint DEFAULT NULL,\n"
	"    drop_row bool DEFAULT true) RETURNS void\n"
	"LANGUAGE plpgsql AS $$\n"
	"DECLARE nsp text; tab text; keycols text[]; kl text; rkl text;\n"
	"  kmatch text;\n"
	"BEGIN\n"
	"  SELECT n.nspname, c.relname INTO nsp, tab FROM pg_class c\n"
	"    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;\n"
	"  keycols := xregion.key_columns(rel);\n"
	"  SELECT string_agg(format('%I', k), ', '),\n"
	"         string_agg(format('r.%I', k), ', '),\n"
	"         string_agg(format('t.%I = r.%I', k, k), ' AND ')\n"
	"    INTO kl, rkl, kmatch FROM unnest(keycols) k;\n"
	"  INSERT INTO xregion.hidden AS h (table_schema, table_name, key, ts,\n"
	"      region, clsn, lsn, image)\n"
	"  VALUES (nsp, tab, xregion.key_of(rel, img), (ver).ts, (ver).region,\n"
	"          coalesce((ver).clsn, 0), coalesce((ver).lsn, 0), img)\n"
	"  ON CONFLICT (table_schema, table_name, key) DO UPDATE SET\n"
	"    ts = EXCLUDED.ts, region = EXCLUDED.region, clsn = EXCLUDED.clsn,\n"
	"    lsn = EXCLUDED.lsn, image = EXCLUDED.image, hidden_at = now();\n"
	"  IF vc THEN\n"
	/*
	 * A vclock tombstone at the write's clock, with its vector merged in
	 * (vv NULL: a row hidden in place, whose entry describes it already).
	 */
	"    EXECUTE format('INSERT INTO %s AS v (%s, ts, region, xid, deleted, '\n"
	"      'vv, rnk, clk) SELECT %s, $2, $3, NULL, true, coalesce($4, ''{}''), '\n"
	"      'coalesce($5, 0), $2 FROM jsonb_populate_record(NULL::%s, $1) r '\n"
	"      'ON CONFLICT (%s) DO UPDATE SET ts = EXCLUDED.ts, '\n"
	"      'region = EXCLUDED.region, xid = NULL, deleted = true, '\n"
	"      'vv = xregion.vv_merge(v.vv, EXCLUDED.vv), rnk = CASE WHEN $4 '\n"
	"      'IS NULL THEN v.rnk ELSE EXCLUDED.rnk END, clk = GREATEST('\n"
	"      'coalesce(v.clk, v.ts), EXCLUDED.clk)', vt, kl, rkl, rel, kl)\n"
	"      USING img, (ver).ts, (ver).region, vv, rnk;\n"
	"  ELSE\n"
	"    EXECUTE format('INSERT INTO %s AS v (%s, ts, region, xid, deleted, '\n"
	"      'clsn, lsn) SELECT %s, $2, $3, pg_catalog.pg_current_xact_id(), '\n"
	"      'true, $4, $5 FROM jsonb_populate_record(NULL::%s, $1) r '\n"
	"      'ON CONFLICT (%s) DO UPDATE SET ts = EXCLUDED.ts, '\n"
	"      'region = EXCLUDED.region, xid = EXCLUDED.xid, deleted = true, '\n"
	"      'clsn = EXCLUDED.clsn, lsn = EXCLUDED.lsn', vt, kl, rkl, rel, kl)\n"
	"      USING img, (ver).ts, (ver).region, (ver).clsn, (ver).lsn;\n"
	"  END IF;\n"
	"  IF drop_row THEN\n"
	"    EXECUTE format('DELETE FROM %s t USING jsonb_populate_record('\n"
	"      'NULL::%s, $1) r WHERE %s', rel, rel, kmatch) USING img;\n"
	"  END IF;\n"
	"END $$;\n"
	"CREATE OR REPLACE FUNCTION xregion.unique_log(rel regclass, key jsonb,\n"
	"    resolution text, lrow jsonb, lver xregion.version, rrow jsonb,\n"
	"    rver xregion.version, kind text DEFAULT 'unique_conflict',\n"
	"    event_id uuid DEFAULT NULL, topic text DEFAULT NULL,\n"
	"    part int DEFAULT NULL, koff bigint DEFAULT NULL) RETURNS void\n"
	"LANGUAGE sql AS $$\n"
	"  INSERT INTO xregion.conflicts (table_schema, table_name, key, kind,\n"
	"      resolution, local_ts, local_region, remote_ts, remote_region,\n"
	"      local_row, remote_row, event_id, topic, kafka_partition,\n"
	"      kafka_offset)\n"
	"  SELECT n.nspname, c.relname, key, kind, resolution,\n"
	"         xregion.ts_of((lver).ts), (lver).region, xregion.ts_of((rver).ts),\n"
	"         (rver).region, lrow, rrow, event_id, topic, part, koff\n"
	"    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace\n"
	"   WHERE c.oid = rel $$;\n"
	/*
	 * What img's key holds here: the live row (locked), its version and
	 * image; else the newest of the key's tombstone and the table's
	 * truncation (live false; ver NULL when there is neither).  vc (a
	 * vclock table): ver is the key's entry's, live row or tombstone
	 * (edel), with its vector and rank; truncations are not looked at.
	 */
	"DROP FUNCTION IF EXISTS xregion.unique_beats_key(regclass, text, jsonb,\n"
	"    xregion.version);\n"
	"DROP FUNCTION IF EXISTS xregion.unique_key_state(regclass, text, jsonb);\n"
	"CREATE OR REPLACE FUNCTION xregion.unique_key_state(rel regclass,\n"
	"    vt text, img jsonb, vc bool, OUT ver xregion.version, OUT live bool,\n"
	"    OUT cur jsonb, OUT evv jsonb, OUT ernk bigint, OUT edel bool)\n"
	"LANGUAGE plpgsql AS $$\n"
	"DECLARE kmatch text; kjoin text; vmatch text; tv xregion.version;\n"
	"  nsp text; tab text; r record;\n"
	"BEGIN\n"
	"  SELECT string_agg(format('t.%I = r.%I', k, k), ' AND '),\n"
	"         string_agg(format('v.%I = t.%I', k, k), ' AND '),\n"
	"         string_agg(format('v.%I = r.%I', k, k), ' AND ')\n"
	"    INTO kmatch, kjoin, vmatch\n"
	"    FROM unnest(xregion.key_columns(rel)) k;\n"
	"  EXECUTE format('SELECT xregion.version_of(t.xmin, v.ts, v.region, '\n"
	"    'v.clsn, v.lsn, v.xid) AS ver, to_jsonb(t) AS cur FROM %s t '\n"
	"    'LEFT JOIN %s v ON %s, jsonb_populate_record(NULL::%s, $1) r '\n"
	"    'WHERE %s FOR UPDATE OF t', rel, vt, kjoin, rel, kmatch)\n"
	"    INTO r USING img;\n"
	"  ver := r.ver;\n"
	"  cur := r.cur;\n"
	"  live := cur IS NOT NULL;\n"
	"  IF vc THEN\n"
	"    EXECUTE format('SELECT xregion.vc_version(v.ts, v.region) AS ver, '\n"
	"      'v.vv, v.rnk, v.deleted FROM %s v, jsonb_populate_record(NULL::%s, '\n"
	"      '$1) r WHERE %s FOR UPDATE OF v', vt, rel, vmatch) INTO r USING img;\n"
	"    ver := r.ver;\n"
	"    evv := r.vv;\n"
	"    ernk := r.rnk;\n"
	"    edel := r.deleted;\n"
	"    RETURN;\n"
	"  END IF;\n"
	"  IF live THEN\n"
	"    RETURN;\n"
	"  END IF;\n"
	"  EXECUTE format('SELECT (xregion.tomb_version(v.ts, v.region, v.xid, '\n"
	"    'v.clsn, v.lsn)).* FROM %s v, jsonb_populate_record(NULL::%s, $1) r '\n"
	"    'WHERE %s AND v.deleted FOR UPDATE OF v', vt, rel, vmatch)\n"
	"    INTO ver USING img;\n"
	"  SELECT n.nspname, c.relname INTO nsp, tab FROM pg_class c\n"
	"    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;\n"
	"  SELECT (xregion.tomb_version(x.ts, x.region, x.xid, x.clsn, x.lsn)).*\n"
	"    INTO tv FROM xregion.truncations x\n"
	"   WHERE x.table_schema = nsp AND x.table_name = tab;\n"
	"  IF NOT tv IS NULL AND (ver IS NULL OR tv > ver) THEN\n"
	"    ver := tv;\n"
	"  END IF;\n"
	"END $$;\n"
	/*
	 * A remote write (image img: the event's columns as text; those it
	 * left out are taken from the row at its key) that broke a unique
	 * index other than the primary key.  Returns the number of rows it
	 * hid to win, -2 when it lost (it is hidden itself), or 0 when no
	 * other row holds its unique values.  op: 'i' (insert) or 'u' (update).
	 * A hidden write still beats what its key held here, which is then
	 * logged as the loser of the usual conflict kind (as
	 * consumer/classify.c would have).
	 */
	"DROP FUNCTION IF EXISTS xregion.unique_resolve(regclass, text, jsonb,\n"
	"    xregion.version, uuid, text, int, bigint);\n"
	"DROP FUNCTION IF EXISTS xregion.unique_resolve(regclass, text, jsonb,\n"
	"    xregion.version, uuid, text, int, bigint, text);\n"
	"CREATE OR REPLACE FUNCTION xregion.unique_resolve(rel regclass, vt text,\n"
	"    img jsonb, ver xregion.version, event_id uuid, topic text, part int,\n"
	"    koff bigint, op text, vc bool DEFAULT false, vv jsonb DEFAULT NULL,\n"
	"    rnk bigint DEFAULT 0, keep_local bool DEFAULT false) RETURNS int\n"
	"LANGUAGE plpgsql AS $$\n"
	"DECLARE cur jsonb; whole jsonb; b record; top record; n int := 0;\n"
	"  kmatch text; ks record; kind text; tv xregion.version;\n"
	"BEGIN\n"
	"  SELECT string_agg(format('t.%I = r.%I', k, k),\n"
	"                    ' AND ') INTO kmatch\n"
	"    FROM unnest(xregion.key_columns(rel)) k;\n"
	"  EXECUTE format('SELECT to_jsonb(t) FROM %s t, jsonb_populate_record('\n"
	"    'NULL::%s, $1) r WHERE %s FOR UPDATE OF t', rel, rel, kmatch)\n"
	"    INTO cur USING img;\n"
	"  EXECUTE format('SELECT to_jsonb(jsonb_populate_record(NULL::%s, $1))',\n"
	"    rel) INTO whole USING coalesce(cur, '{}') || img;\n"
	/*
	 * The event must still beat its own key (row, tombstone, truncation):
	 * a local write may have committed since its apply failed.  If not,
	 * -3: apply it again, and the usual rules skip it.
	 */
	"  SELECT * INTO ks FROM xregion.unique_key_state(rel, vt, whole, vc);\n"
	"  IF vc THEN\n"
	"    SELECT (xregion.tomb_version(x.ts, x.region, x.xid, x.clsn, x.lsn)).*\n"
	"      INTO tv FROM xregion.truncations x, pg_class c, pg_namespace s\n"
	"     WHERE c.oid = rel AND s.oid = c.relnamespace\n"
	"       AND x.table_schema = s.nspname AND x.table_name = c.relname;\n"
	"    IF NOT (tv IS NULL OR ver > tv) OR (NOT ks.ver IS NULL AND NOT\n"
	"        xregion.vc_wins(rnk, (ver).ts, (ver).region, vv, ks.ernk,\n"
	"                        (ks.ver).ts, (ks.ver).region, ks.evv, keep_local))\n"
	"    THEN\n"
	"      RETURN -3;\n"
	"    END IF;\n"
	"  ELSIF NOT (ks.ver IS NULL OR ver > ks.ver) THEN\n"
	"    RETURN -3;\n"
	"  END IF;\n"
	"  SELECT * INTO top FROM xregion.unique_blockers(rel, vt, whole, true, vc) x\n"
	"    ORDER BY x.ver DESC LIMIT 1;\n"
	"  IF NOT FOUND THEN\n"
	"    RETURN 0;\n"
	"  END IF;\n"
	"  IF top.ver > ver THEN\n"
	"    IF vc THEN\n"
	/* As classify.c's xr_classify_vc: a write concurrent with the entry. */
	"      kind := CASE WHEN NOT ks.ver IS NULL\n"
	"        AND xregion.vv_cmp(vv, ks.evv) = 2 THEN\n"
	"        CASE WHEN ks.live OR NOT ks.edel THEN op ELSE op || 'd' END END;\n"
	"      kind := CASE kind WHEN 'u' THEN 'update_concurrent'\n"
	"        WHEN 'i' THEN 'insert_concurrent' WHEN 'ud' THEN 'update_deleted'\n"
	"        WHEN 'id' THEN 'insert_deleted' END;\n"
	"    ELSE\n"
	"      kind := CASE WHEN ks.live AND (ks.ver).region <> (ver).region\n"
	"        THEN CASE op WHEN 'u' THEN 'update_origin_differs'\n"
	"             ELSE 'insert_exists' END\n"
	"        WHEN NOT ks.live AND NOT ks.ver IS NULL AND op = 'u'\n"
	"        THEN 'update_deleted' END;\n"
	"    END IF;\n"
	"    IF kind IS NOT NULL THEN\n"
	"      PERFORM xregion.unique_log(rel, xregion.key_of(rel, whole),\n"
	"        'remote_applied', ks.cur, ks.ver, whole, ver, kind, event_id,\n"
	"        topic, part, koff);\n"
	"    END IF;\n"
	"    PERFORM xregion.unique_hide(rel, vt, whole, ver, vc, vv, rnk,\n"
	"                                ks.live);\n"
	"    PERFORM xregion.unique_log(rel, xregion.key_of(rel, whole),\n"
	"      'local_kept', top.img, top.ver, whole, ver, 'unique_conflict',\n"
	"      event_id, topic, part, koff);\n"
	"    RETURN -2;\n"
	"  END IF;\n"
	"  FOR b IN SELECT * FROM xregion.unique_blockers(rel, vt, whole, true, vc)\n"
	"  LOOP\n"
	"    PERFORM xregion.unique_hide(rel, vt, b.img, b.ver, vc);\n"
	"    PERFORM xregion.unique_log(rel, xregion.key_of(rel, b.img),\n"
	"      'remote_applied', b.img, b.ver, whole, ver, 'unique_conflict',\n"
	"      event_id, topic, part, koff);\n"
	"    n := n + 1;\n"
	"  END LOOP;\n"
	"  RETURN n;\n"
	"END $$;\n"
	/*
	 * Brings back, newest first, the hidden rows of rel that are still
	 * their key's latest write and whose unique values no newer row holds
	 * now (older holders are hidden in turn).  Returns how many came back.
	 */
	"DROP FUNCTION IF EXISTS xregion.unique_unhide(regclass, text);\n"
	"CREATE OR REPLACE FUNCTION xregion.unique_unhide(rel regclass, vt text,\n"
	"    vc bool DEFAULT false)\n"
	"RETURNS int LANGUAGE plpgsql AS $$\n"
	"DECLARE nsp text; tab text; h record; e record; b record; n int := 0;\n"
	"  hv xregion.version; tv xregion.version; vmatch text; kmatch text;\n"
	"  kl text; rkl text; cols text; newer bool; live bool;\n"
	"BEGIN\n"
	"  SELECT n2.nspname, c.relname INTO nsp, tab FROM pg_class c\n"
	"    JOIN pg_namespace n2 ON n2.oid = c.relnamespace WHERE c.oid = rel;\n"
	"  SELECT string_agg(format('v.%I = r.%I', k, k), ' AND '),\n"
	"         string_agg(format('t.%I = r.%I', k, k), ' AND '),\n"
	"         string_agg(format('%I', k), ', '),\n"
	"         string_agg(format('r.%I', k), ', ')\n"
	"    INTO vmatch, kmatch, kl, rkl\n"
	"    FROM unnest(xregion.key_columns(rel)) k;\n"
	"  FOR h IN SELECT * FROM xregion.hidden x WHERE x.table_schema = nsp\n"
	"           AND x.table_name = tab\n"
	"           ORDER BY x.ts DESC, x.region DESC, x.clsn DESC, x.lsn DESC\n"
	"           FOR UPDATE LOOP\n"
	"    hv := ROW(h.ts, h.region, h.clsn, h.lsn)::xregion.version;\n"
	"    EXECUTE format('SELECT v.ts, v.region, coalesce(v.clsn, 0) AS clsn, '\n"
	"      'coalesce(v.lsn, 0) AS lsn, v.deleted FROM %s v, '\n"
	"      'jsonb_populate_record(NULL::%s, $1) r WHERE %s FOR UPDATE OF v',\n"
	"      vt, rel, vmatch) INTO e USING h.image;\n"
	"    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s t, '\n"
	"      'jsonb_populate_record(NULL::%s, $1) r WHERE %s)', rel, rel,\n"
	"      kmatch) INTO live USING h.image;\n"
	/* Superseded: a later write of the key (applied, or local). */
	"    IF e IS NULL OR NOT e.deleted OR live OR ROW(e.ts, e.region, e.clsn,\n"
	"       e.lsn)::xregion.version IS DISTINCT FROM hv THEN\n"
	"      DELETE FROM xregion.hidden x WHERE x.table_schema = nsp\n"
	"         AND x.table_name = tab AND x.key = h.key;\n"
	"      CONTINUE;\n"
	"    END IF;\n"
	/* A truncation newer than the hidden row removed it too. */
	"    SELECT (xregion.tomb_version(x.ts, x.region, x.xid, x.clsn, x.lsn)).*\n"
	"      INTO tv FROM xregion.truncations x\n"
	"     WHERE x.table_schema = nsp AND x.table_name = tab;\n"
	"    IF tv IS NOT NULL AND tv >= hv THEN\n"
	"      DELETE FROM xregion.hidden x WHERE x.table_schema = nsp\n"
	"         AND x.table_name = tab AND x.key = h.key;\n"
	"      CONTINUE;\n"
	"    END IF;\n"
	/* Unlocked first: most hidden rows stay hidden, and cost no locks. */
	"    newer := false;\n"
	"    FOR b IN SELECT * FROM xregion.unique_blockers(rel, vt, h.image,\n"
	"                                                   false, vc) LOOP\n"
	"      newer := newer OR b.ver >= hv;\n"
	"    END LOOP;\n"
	"    IF newer THEN\n"
	"      CONTINUE;\n"
	"    END IF;\n"
	"    BEGIN\n"
	"      FOR b IN SELECT * FROM xregion.unique_blockers(rel, vt, h.image,\n"
	"                                                     true, vc) LOOP\n"
	"        IF b.ver >= hv THEN\n"
	"          RAISE EXCEPTION USING ERRCODE = 'XR001';\n"
	"        END IF;\n"
	"        PERFORM xregion.unique_hide(rel, vt, b.img, b.ver, vc);\n"
	"        PERFORM xregion.unique_log(rel, xregion.key_of(rel, b.img),\n"
	"          'remote_applied', b.img, b.ver, h.image, hv);\n"
	"      END LOOP;\n"
	/* The columns the image has (a column added since takes its default). */
	"      SELECT string_agg(format('%I', a.attname), ', ') INTO cols\n"
	"        FROM pg_attribute a WHERE a.attrelid = rel AND a.attnum > 0\n"
	"         AND NOT a.attisdropped AND a.attgenerated = ''\n"
	"         AND h.image ? a.attname::text;\n"
	"      EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM '\n"
	"        'jsonb_populate_record(NULL::%s, $1)', rel, cols, cols, rel)\n"
	"        USING h.image;\n"
	"    EXCEPTION\n"
	"      WHEN SQLSTATE 'XR001' THEN\n"
	"        CONTINUE;\n"
	"      WHEN OTHERS THEN\n"
	"        RAISE WARNING 'xregion: hidden row % of % cannot come back: %',\n"
	"          h.key, rel, SQLERRM;\n"
	"        CONTINUE;\n"
	"    END;\n"
	/*
	 * The entry names the row's writer: its xmin, the subtransaction of
	 * the block above (version_of trusts an entry only for that xid).
	 */
	"    EXECUTE format('UPDATE %s v SET deleted = false, '\n"
	"      'xid = CASE WHEN %L THEN NULL ELSE xregion.xid8_of(t.xmin) END '\n"
	"      'FROM %s t, '\n"
	"      'jsonb_populate_record(NULL::%s, $1) r WHERE %s AND %s', vt, vc,\n"
	"      rel, rel, vmatch, kmatch) USING h.image;\n"
	"    DELETE FROM xregion.hidden x WHERE x.table_schema = nsp\n"
	"       AND x.table_name = tab AND x.key = h.key;\n"
	"    PERFORM xregion.unique_log(rel, h.key, 'remote_applied', NULL, NULL,\n"
	"      h.image, hv, 'unique_restored');\n"
	"    n := n + 1;\n"
	"  END LOOP;\n"
	"  RETURN n;\n"
	"END $$;\n";

void
xr_meta_origin_name(const xr_config_t *conf, const char *src, char *buf,
                    size_t size)
{
	/* Origins are cluster-wide: the slot name makes them this database's. */
	snprintf(buf, size, "%s_from_%s", conf->slot, src);
}

void
xr_meta_replay_origin_name(const xr_config_t *conf, char *buf, size_t size)
{
	snprintf(buf, size, "%s_replay", conf->slot);
}

/*
 * Runs sql.  Returns 0; SQL_LOCKED when it failed waiting for a lock
 * (lock_timeout, or the deadlock detector chose it): worth another try;
 * -1 on any other failure.  errstr has the server's message.
 */
#define SQL_LOCKED (-2)

static int
exec_sql(PGconn *conn, const char *sql, char *errstr, size_t errstr_size)
{
	PGresult *res = PQexec(conn, sql);
	int       rc = 0;

	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *m = PQerrorMessage(conn);
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		size_t      n = strlen(m);

		while (n && m[n - 1] == '\n')
			n--;
		if (errstr)
			snprintf(errstr, errstr_size, "%.*s", (int)n, m);
		rc = state && (strcmp(state, "55P03") == 0 ||    /* lock_not_available */
		               strcmp(state, "40P01") == 0)      /* deadlock_detected */
		     ? SQL_LOCKED : -1;
	}
	PQclear(res);
	return rc;
}

/*
 * The quoted names one table's objects are built from.  Per image (0: OLD,
 * 1: NEW): img "X.k1, X.k2", kjson jsonb_build_object('k1', X.k1::text,
 * ...), match "t.k1 = X.k1 AND ...", vmatch the same on v.
 */
typedef struct {
	const xr_table_conf_t *t;
	const char *region_name;   /* this region */
	char      qualname[256];   /* "schema.table", the versions table's name */
	PGresult *pk;              /* (name, type) of each primary-key column */
	xr_buf_t  qual;            /* "schema"."table" */
	xr_buf_t  vt;              /* xregion."schema.table" */
	xr_buf_t  keys;            /* "k1", "k2" */
	xr_buf_t  coldefs;         /* "k1" int NOT NULL, "k2" text NOT NULL, */
	xr_buf_t  region;          /* this region, as a literal */
	xr_buf_t  vtjoin;          /* v.k1 = t.k1 AND ... */
	xr_buf_t  img[2], kjson[2], match[2], vmatch[2];
} names_t;

static void
names_term(names_t *n)
{
	int i;

	PQclear(n->pk);
	xr_buf_term(&n->qual);
	xr_buf_term(&n->vt);
	xr_buf_term(&n->keys);
	xr_buf_term(&n->coldefs);
	xr_buf_term(&n->region);
	xr_buf_term(&n->vtjoin);
	for (i = 0; i < 2; i++) {
		xr_buf_term(&n->img[i]);
		xr_buf_term(&n->kjson[i]);
		xr_buf_term(&n->match[i]);
		xr_buf_term(&n->vmatch[i]);
	}
}

/* Reads t's primary key into n->pk.  Returns 0, or -1 with errstr. */
static int
names_pk(PGconn *conn, names_t *n, char *errstr, size_t errstr_size)
{
	const char *params[2] = { n->t->schema, n->t->name };

	n->pk = PQexecParams(conn,
	                     "SELECT a.attname, format_type(a.atttypid, a.atttypmod) "
	                     "FROM pg_catalog.pg_index i "
	                     "JOIN pg_catalog.pg_attribute a "
	                     "  ON a.attrelid = i.indrelid "
	                     " AND a.attnum = ANY (i.indkey) "
	                     "WHERE i.indrelid = (quote_ident($1) || '.' || "
	                     "                    quote_ident($2))::regclass "
	                     "  AND i.indisprimary "
	                     "ORDER BY array_position(i.indkey, a.attnum)",
	                     2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(n->pk) != PGRES_TUPLES_OK) {
		snprintf(errstr, errstr_size, "table %s: %s", n->qualname,
		         PQerrorMessage(conn));
		return -1;
	}
	if (PQntuples(n->pk) == 0) {
		snprintf(errstr, errstr_size, "table %s has no primary key",
		         n->qualname);
		return -1;
	}
	return 0;
}

/* Appends the pieces of key column col (of type type) to n's lists. */
static int
names_key(PGconn *conn, names_t *n, const char *col, const char *type,
          bool first)
{
	int i;

	if (!first)
		xr_buf_puts(&n->keys, ", ");
	if (xr_pqbuf_ident(conn, &n->keys, col) ||
	    xr_pqbuf_ident(conn, &n->coldefs, col))
		return -1;
	xr_buf_printf(&n->coldefs, " %s NOT NULL, ", type);
	xr_buf_puts(&n->vtjoin, first ? "v." : " AND v.");
	if (xr_pqbuf_ident(conn, &n->vtjoin, col) ||
	    (xr_buf_puts(&n->vtjoin, " = t."), 0) ||
	    xr_pqbuf_ident(conn, &n->vtjoin, col))
		return -1;
	for (i = 0; i < 2; i++) {
		const char *img = i ? "NEW." : "OLD.";

		xr_buf_puts(&n->img[i], first ? img : ", ");
		if (!first)
			xr_buf_puts(&n->img[i], img);
		xr_buf_puts(&n->kjson[i], first ? "jsonb_build_object(" : ", ");
		xr_buf_puts(&n->match[i], first ? "t." : " AND t.");
		xr_buf_puts(&n->vmatch[i], first ? "v." : " AND v.");
		if (xr_pqbuf_ident(conn, &n->img[i], col) ||
		    xr_pqbuf_literal(conn, &n->kjson[i], col) ||
		    (xr_buf_printf(&n->kjson[i], ", %s", img), 0) ||
		    xr_pqbuf_ident(conn, &n->kjson[i], col) ||
		    xr_pqbuf_ident(conn, &n->match[i], col) ||
		    xr_pqbuf_ident(conn, &n->vmatch[i], col))
			return -1;
		xr_buf_puts(&n->kjson[i], "::text");
		xr_buf_printf(&n->match[i], " = %s", img);
		xr_buf_printf(&n->vmatch[i], " = %s", img);
		if (xr_pqbuf_ident(conn, &n->match[i], col) ||
		    xr_pqbuf_ident(conn, &n->vmatch[i], col))
			return -1;
	}
	return 0;
}

/*
 * Fills n for table t (n is initialized here; names_term it whatever the
 * result).  Returns 0, or -1 with errstr.
 */
static int
names_init(PGconn *conn, const xr_config_t *conf, const xr_table_conf_t *t,
           names_t *n, char *errstr, size_t errstr_size)
{
	int i, c;

	memset(n, 0, sizeof(*n));
	n->t = t;
	n->region_name = conf->region;
	xr_buf_init(&n->qual);
	xr_buf_init(&n->vt);
	xr_buf_init(&n->keys);
	xr_buf_init(&n->coldefs);
	xr_buf_init(&n->region);
	xr_buf_init(&n->vtjoin);
	for (i = 0; i < 2; i++) {
		xr_buf_init(&n->img[i]);
		xr_buf_init(&n->kjson[i]);
		xr_buf_init(&n->match[i]);
		xr_buf_init(&n->vmatch[i]);
	}
	if (xr_config_versions_name(t->schema, t->name, n->qualname,
	                            sizeof(n->qualname))) {
		snprintf(n->qualname, sizeof(n->qualname), "%s.%s", t->schema,
		         t->name);
		snprintf(errstr, errstr_size,
		         "table %s: name longer than %d bytes, too long to name its "
		         "versions table", n->qualname, XR_META_MAX_QUALNAME);
		return -1;
	}
	if (names_pk(conn, n, errstr, errstr_size))
		return -1;
	xr_buf_puts(&n->vt, "xregion.");
	if (xr_pqbuf_ident(conn, &n->qual, t->schema) ||
	    (xr_buf_putc(&n->qual, '.'), 0) ||
	    xr_pqbuf_ident(conn, &n->qual, t->name) ||
	    xr_pqbuf_ident(conn, &n->vt, n->qualname) ||
	    xr_pqbuf_literal(conn, &n->region, conf->region))
		goto quote_failed;
	for (c = 0; c < PQntuples(n->pk); c++)
		if (names_key(conn, n, PQgetvalue(n->pk, c, 0),
		              PQgetvalue(n->pk, c, 1), c == 0))
			goto quote_failed;
	for (i = 0; i < 2; i++)
		xr_buf_putc(&n->kjson[i], ')');
	return 0;

quote_failed:
	snprintf(errstr, errstr_size, "quoting names of %s: %s", n->qualname,
	         PQerrorMessage(conn));
	return -1;
}

/* Appends xregion.<qualname + suffix>, quoted, to b. */
static int
object_name(PGconn *conn, xr_buf_t *b, const names_t *n, const char *suffix)
{
	char fname[300];

	snprintf(fname, sizeof(fname), "%s%s", n->qualname, suffix);
	xr_buf_puts(b, "xregion.");
	return xr_pqbuf_ident(conn, b, fname);
}

/* The head of a trigger function fn, run as its owner. */
static void
fn_head(xr_buf_t *sql, const xr_buf_t *fn)
{
	xr_buf_printf(sql,
	              "CREATE OR REPLACE FUNCTION %s() RETURNS trigger "
	              "LANGUAGE plpgsql SECURITY DEFINER "
	              "SET search_path = pg_catalog, pg_temp AS $f$\n", fn->data);
}

/*
 * The vclock trigger of one table: before every local insert, update and
 * delete it advances the row's version vector (this region's entry) and
 * hybrid clock in the versions table, and emits them as a transactional
 * logical decoding message just ahead of the change, for the producer to
 * put in the event.  Ordinary triggers do not fire under
 * session_replication_role = replica: the consumer's applies merge the
 * vectors themselves.
 */
static int
vclock_trigger(PGconn *conn, const names_t *n, xr_buf_t *sql)
{
	const xr_table_conf_t *t = n->t;
	xr_buf_t fn, rank_ins, rank_upd;
	int      i, rc = -1;

	xr_buf_init(&fn);
	xr_buf_init(&rank_ins);
	xr_buf_init(&rank_upd);
	if (object_name(conn, &fn, n, "$vclock"))
		goto out;
	/* The rank prefer-region compares first: the vector's entry of it. */
	if (t->tiebreak == XR_TIEBREAK_PREFER_REGION) {
		int mine = strcmp(t->prefer_region, n->region_name) == 0;

		xr_buf_printf(&rank_ins, "%d", mine);
		xr_buf_puts(&rank_upd, "coalesce((v.vv->>");
		if (xr_pqbuf_literal(conn, &rank_upd, t->prefer_region))
			goto out;
		xr_buf_printf(&rank_upd, ")::bigint, 0) + %d", mine);
	} else {
		xr_buf_puts(&rank_ins, "0");
		xr_buf_puts(&rank_upd, "0");
	}
	fn_head(sql, &fn);
	xr_buf_printf(sql,
	              "DECLARE h bigint; vv jsonb; oh bigint; ovv jsonb;\n"
	              "  now_us bigint := (extract(epoch FROM clock_timestamp())"
	              " * 1000000)::bigint;\n"
	              "BEGIN\n");
	/*
	 * An insert of a key that is there already either fails, does nothing
	 * (ON CONFLICT DO NOTHING) or becomes an update, whose own trigger
	 * call counts it: advancing here would count a write never made.
	 */
	xr_buf_printf(sql, "  IF TG_OP = 'INSERT' AND EXISTS (SELECT 1 FROM %s t "
	              "WHERE %s) THEN\n    RETURN NEW;\n  END IF;\n",
	              n->qual.data, n->match[1].data);
	/*
	 * The new clock: past both the wall clock and every clock this row
	 * has seen (clk), so that a write made after seeing another is later
	 * than it even on a slow clock.
	 */
	for (i = 0; i < 2; i++) {
		if (i == 0)
			xr_buf_printf(sql,
			              "  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND "
			              "ROW(%s) IS DISTINCT FROM ROW(%s)) THEN\n",
			              n->img[0].data, n->img[1].data);
		else
			xr_buf_puts(sql, "  IF TG_OP <> 'DELETE' THEN\n");
		xr_buf_printf(sql,
		              "    INSERT INTO %s AS v (%s, ts, region, xid, deleted, "
		              "vv, rnk, clk)\n"
		              "    VALUES (%s, now_us, %s, NULL, %s, "
		              "jsonb_build_object(%s, 1), %s, now_us)\n"
		              "    ON CONFLICT (%s) DO UPDATE SET\n"
		              "      ts = GREATEST(EXCLUDED.ts, coalesce(v.clk, v.ts) + 1),\n"
		              "      clk = GREATEST(EXCLUDED.ts, coalesce(v.clk, v.ts) + 1),\n"
		              "      region = EXCLUDED.region, xid = NULL, deleted = %s,\n"
		              "      vv = coalesce(v.vv, '{}') || jsonb_build_object(%s, "
		              "coalesce((v.vv->>%s)::bigint, 0) + 1),\n"
		              "      rnk = %s\n"
		              "    RETURNING v.ts, v.vv INTO %s, %s;\n"
		              "  END IF;\n",
		              n->vt.data, n->keys.data, n->img[i].data, n->region.data,
		              i ? "false" : "true", n->region.data, rank_ins.data,
		              n->keys.data, i ? "false" : "true", n->region.data,
		              n->region.data, rank_upd.data, i ? "h" : "oh",
		              i ? "vv" : "ovv");
	}
	xr_buf_printf(sql,
	              "  IF TG_OP = 'DELETE' THEN\n"
	              "    PERFORM pg_logical_emit_message(true, 'xregion.vclock', "
	              "jsonb_build_object('s', TG_TABLE_SCHEMA, 't', TG_TABLE_NAME, "
	              "'k', %s, 'h', oh, 'v', ovv)::text);\n"
	              "    RETURN OLD;\n"
	              "  END IF;\n"
	              "  PERFORM pg_logical_emit_message(true, 'xregion.vclock', "
	              "jsonb_build_object('s', TG_TABLE_SCHEMA, 't', TG_TABLE_NAME, "
	              "'k', %s, 'h', h, 'v', vv, 'oh', oh, 'ov', ovv)::text);\n"
	              "  RETURN NEW;\n"
	              "END $f$;\n"
	              "DROP TRIGGER IF EXISTS xregion_vclock ON %s;\n"
	              "CREATE TRIGGER xregion_vclock BEFORE INSERT OR UPDATE OR "
	              "DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s();\n",
	              n->kjson[0].data, n->kjson[1].data, n->qual.data,
	              n->qual.data, fn.data);
	rc = 0;
out:
	xr_buf_term(&fn);
	xr_buf_term(&rank_ins);
	xr_buf_term(&rank_upd);
	return rc;
}

/*
 * The hybrid clock of an lww table (clock: hybrid): before every local
 * insert, update and delete it reads the version the write overwrites
 * (the row's, for an insert or the new key of a key change the
 * tombstone's or the table's truncation), and when this region's clock
 * is not past it, gives the write the version time one microsecond later:
 * it writes the row's entry (and the old key's tombstone) with that time
 * and this transaction's xid, and emits it as a transactional logical
 * decoding message ahead of the change, for the producer to put in the
 * event (source.version_ts).  Otherwise the commit time, later than the
 * clock read here, is past it already, and the trigger writes nothing.
 * A bumped tombstone is marked lsn = -1 for the tombstone trigger, which
 * keeps its time (see tombstone_sql).
 *
 * A later write of a key whose time this transaction moved already (its
 * entry has a time and an xid of this transaction or later) moves it
 * again, to at least now, even once the clock is past it: the producer
 * stamps the final version of a row written at the top level after the
 * fact (producer/stamp.c), but not of one written in a subtransaction,
 * whose xmin is not the transaction's xid.  For those rows an AFTER
 * trigger (xregion_clock_xmin, only in transactions that moved a time,
 * xregion.clock_moved) names the row's xmin in its entry, so that
 * version_of reads the entry as the row's own.  A key whose earlier write
 * in the transaction kept the commit time keeps it: a later write with an
 * earlier time would lose to it elsewhere.
 */
static int
clock_trigger(PGconn *conn, const names_t *n, xr_buf_t *sql)
{
	xr_buf_t fn;
	int      i;

	xr_buf_init(&fn);
	if (object_name(conn, &fn, n, "$clock")) {
		xr_buf_term(&fn);
		return -1;
	}
	fn_head(sql, &fn);
	xr_buf_printf(sql,
	              "DECLARE pts bigint; h bigint; own bool;\n"
	              "  moved bool := TG_OP = 'UPDATE' AND "
	              "ROW(%s) IS DISTINCT FROM ROW(%s);\n"
	              "  now_us bigint := (extract(epoch FROM clock_timestamp())"
	              " * 1000000)::bigint;\n"
	              "BEGIN\n",
	              n->img[0].data, n->img[1].data);
	/*
	 * Only the time of the version overwritten matters: the commit time
	 * (or h) is greater, and the region and position then never decide.
	 */
	xr_buf_printf(sql,
	              "  IF TG_OP <> 'INSERT' THEN\n"
	              "    SELECT (xregion.version_of(t.xmin, v.ts, v.region, "
	              "v.clsn, v.lsn, v.xid)).ts INTO pts\n"
	              "      FROM ONLY %s t LEFT JOIN %s v ON %s WHERE %s;\n"
	              "  END IF;\n"
	              "  IF TG_OP = 'INSERT' OR moved THEN\n"
	              "    pts := GREATEST(pts,\n"
	              "      (SELECT (xregion.tomb_version(v.ts, v.region, v.xid, "
	              "v.clsn, v.lsn)).ts FROM %s v WHERE %s AND v.deleted),\n"
	              "      (SELECT (xregion.tomb_version(x.ts, x.region, x.xid, "
	              "x.clsn, x.lsn)).ts FROM xregion.truncations x\n"
	              "       WHERE x.table_schema = TG_TABLE_SCHEMA "
	              "AND x.table_name = TG_TABLE_NAME));\n"
	              "  END IF;\n"
	              "  IF pts IS NULL OR pts < now_us THEN\n"
	              "    own := false;\n"
	              "    IF pts IS NOT NULL AND TG_OP <> 'DELETE' AND "
	              "current_setting('xregion.clock_moved', true) = 'on' THEN\n"
	              "      own := EXISTS (SELECT 1 FROM %s v WHERE %s "
	              "AND v.ts IS NOT NULL AND v.xid >= pg_current_xact_id());\n"
	              "    END IF;\n"
	              "    IF NOT own THEN\n"
	              "      IF TG_OP = 'DELETE' THEN\n        RETURN OLD;\n"
	              "      END IF;\n"
	              "      RETURN NEW;\n"
	              "    END IF;\n"
	              "  END IF;\n"
	              /*
	               * As in the vclock trigger, an insert of a present key is
	               * no write.  Asked only once a time is to be moved: most
	               * inserts need no move, and this lookup was a third of
	               * what the trigger cost them.
	               */
	              "  IF TG_OP = 'INSERT' AND EXISTS (SELECT 1 FROM %s t "
	              "WHERE %s) THEN\n    RETURN NEW;\n  END IF;\n"
	              "  h := GREATEST(pts + 1, now_us);\n"
	              "  PERFORM set_config('xregion.clock_moved', 'on', true);\n",
	              n->qual.data, n->vt.data,
	              n->vtjoin.data, n->match[0].data, n->vt.data,
	              n->vmatch[1].data, n->vt.data, n->vmatch[1].data,
	              n->qual.data, n->match[1].data);
	for (i = 0; i < 2; i++) {
		if (i == 0)
			xr_buf_puts(sql, "  IF TG_OP = 'DELETE' OR moved THEN\n");
		else
			xr_buf_puts(sql, "  IF TG_OP <> 'DELETE' THEN\n");
		xr_buf_printf(sql,
		              "    INSERT INTO %s AS v (%s, ts, region, xid, deleted, "
		              "clsn, lsn)\n"
		              "    VALUES (%s, h, %s, pg_current_xact_id(), %s, NULL, %s)\n"
		              "    ON CONFLICT (%s) DO UPDATE SET ts = EXCLUDED.ts, "
		              "region = EXCLUDED.region, xid = EXCLUDED.xid, "
		              "deleted = EXCLUDED.deleted, clsn = NULL, lsn = EXCLUDED.lsn;\n"
		              "  END IF;\n",
		              n->vt.data, n->keys.data, n->img[i].data, n->region.data,
		              i ? "false" : "true", i ? "NULL" : "-1", n->keys.data);
	}
	xr_buf_printf(sql,
	              "  PERFORM pg_logical_emit_message(true, 'xregion.clock', "
	              "jsonb_build_object('s', TG_TABLE_SCHEMA, 't', TG_TABLE_NAME, "
	              "'o', lower(left(TG_OP, 1)), 'k', CASE TG_OP WHEN 'DELETE' "
	              "THEN %s ELSE %s END, 'h', h)::text);\n"
	              "  IF TG_OP = 'DELETE' THEN\n    RETURN OLD;\n  END IF;\n"
	              "  RETURN NEW;\n"
	              "END $f$;\n"
	              "DROP TRIGGER IF EXISTS xregion_clock ON %s;\n"
	              "CREATE TRIGGER xregion_clock BEFORE INSERT OR UPDATE OR "
	              "DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s();\n",
	              n->kjson[0].data, n->kjson[1].data, n->qual.data,
	              n->qual.data, fn.data);
	xr_buf_reset(&fn);
	if (object_name(conn, &fn, n, "$clockx")) {
		xr_buf_term(&fn);
		return -1;
	}
	/*
	 * The row's xmin, a subtransaction's maybe, as a full id: it is this
	 * transaction's xid or one assigned after it, less than 2^31 later.
	 */
	fn_head(sql, &fn);
	xr_buf_printf(sql,
	              "DECLARE top bigint := pg_current_xact_id()::text::bigint;\n"
	              "BEGIN\n"
	              "  UPDATE %s v SET xid = (top + (t.xmin::text::bigint - "
	              "top %% 4294967296 + 4294967296) %% 4294967296)::text::xid8\n"
	              "    FROM ONLY %s t WHERE %s AND %s\n"
	              "    AND v.xid = pg_current_xact_id() AND NOT v.deleted\n"
	              "    AND xid(v.xid) <> t.xmin;\n"
	              "  RETURN NULL;\n"
	              "END $f$;\n"
	              "DROP TRIGGER IF EXISTS xregion_clock_xmin ON %s;\n"
	              "CREATE TRIGGER xregion_clock_xmin AFTER INSERT OR UPDATE "
	              "ON %s FOR EACH ROW WHEN (current_setting("
	              "'xregion.clock_moved', true) = 'on') "
	              "EXECUTE FUNCTION %s();\n",
	              n->vt.data, n->qual.data, n->match[1].data,
	              n->vmatch[1].data, n->qual.data, n->qual.data, fn.data);
	xr_buf_term(&fn);
	return 0;
}

/*
 * Local deletes (and key changes) leave a tombstone, so that an older
 * remote write arriving later cannot bring the row back; the producer
 * stamps its time (producer/stamp.c), unless the clock trigger gave the
 * delete a time of its own (marked lsn = -1 by this transaction).
 * Ordinary triggers do not fire under session_replication_role = replica:
 * the consumer's own applies write their versions themselves.  The
 * function runs as its owner (SECURITY DEFINER, fixed search_path), so
 * that the application's roles need no rights on schema xregion.
 */
static int
tombstone_sql(PGconn *conn, const names_t *n, xr_buf_t *sql)
{
	xr_buf_t fn;

	xr_buf_init(&fn);
	if (object_name(conn, &fn, n, "$tomb")) {
		xr_buf_term(&fn);
		return -1;
	}
	fn_head(sql, &fn);
	xr_buf_printf(sql,
	              "BEGIN\n"
	              "  INSERT INTO %s AS v (%s, ts, region, xid, deleted)\n"
	              "  VALUES (%s, NULL, %s, pg_current_xact_id(), true)\n"
	              "  ON CONFLICT (%s) DO UPDATE SET\n"
	              "    ts = CASE WHEN v.xid = EXCLUDED.xid AND v.deleted "
	              "AND v.lsn = -1 THEN v.ts END,\n"
	              "    region = EXCLUDED.region, xid = EXCLUDED.xid, "
	              "deleted = true, clsn = NULL, lsn = NULL;\n"
	              "  RETURN NULL;\nEND $f$;\n",
	              n->vt.data, n->keys.data, n->img[0].data,
	              n->region.data, n->keys.data);
	xr_buf_printf(sql,
	              "DROP TRIGGER IF EXISTS xregion_tombstone ON %s;\n"
	              "CREATE TRIGGER xregion_tombstone AFTER DELETE ON %s "
	              "FOR EACH ROW EXECUTE FUNCTION %s();\n"
	              "DROP TRIGGER IF EXISTS xregion_key_change ON %s;\n"
	              "CREATE TRIGGER xregion_key_change AFTER UPDATE OF %s ON %s "
	              "FOR EACH ROW WHEN ((%s) IS DISTINCT FROM (%s)) "
	              "EXECUTE FUNCTION %s();\n",
	              n->qual.data, n->qual.data, fn.data, n->qual.data,
	              n->keys.data, n->qual.data, n->img[0].data, n->img[1].data,
	              fn.data);
	xr_buf_term(&fn);
	return 0;
}

/*
 * The producer records the version of every local write from setup on
 * (producer/stamp.c); the rows written before are recorded here, while
 * their commit timestamps are still there, so that they too survive
 * freezing.  Entries written by consumers are kept; so are those of an
 * older consumer (no xid) unless the row has since been written here.
 */
static void
stamp_existing_sql(const names_t *n, xr_buf_t *sql)
{
	xr_buf_printf(sql,
	              "INSERT INTO %s AS v (%s, ts, region, xid, deleted, clsn, lsn)\n"
	              "  SELECT %s, (extract(epoch FROM c.\"timestamp\") "
	              "* 1000000)::bigint, %s, xregion.xid8_of(t.xmin), false, 0, 0\n"
	              "  FROM ONLY %s t, LATERAL "
	              "pg_catalog.pg_xact_commit_timestamp_origin(t.xmin) c\n"
	              "  WHERE c.roident = 0\n"
	              "  ON CONFLICT (%s) DO UPDATE SET ts = EXCLUDED.ts, "
	              "region = EXCLUDED.region, xid = EXCLUDED.xid, deleted = false, "
	              "clsn = 0, lsn = 0 WHERE v.xid IS NULL AND NOT v.deleted;\n",
	              n->vt.data, n->keys.data, n->keys.data, n->region.data,
	              n->qual.data, n->keys.data);
}

/*
 * Installs the versions table xregion."schema.table" (the table's
 * primary-key columns with their types, then the version), and the
 * triggers of one table: for vclock, the vclock trigger; for lww, the
 * tombstone triggers and, with clock: hybrid, the clock trigger.
 */
static int
install_table(PGconn *conn, const xr_config_t *conf, const xr_table_conf_t *t,
              char *errstr, size_t errstr_size)
{
	names_t  n;
	xr_buf_t sql;
	int      rc = -1;

	xr_buf_init(&sql);
	if (names_init(conn, conf, t, &n, errstr, errstr_size))
		goto out;
	xr_buf_printf(&sql,
	              "CREATE TABLE IF NOT EXISTS %s (%s"
	              "ts bigint, region text COLLATE \"C\" NOT NULL, xid xid8, "
	              "deleted bool NOT NULL, vv jsonb, rnk bigint, clk bigint, "
	              "clsn bigint, lsn bigint, PRIMARY KEY (%s));\n"
	              "ALTER TABLE %s ADD COLUMN IF NOT EXISTS vv jsonb, "
	              "ADD COLUMN IF NOT EXISTS rnk bigint, "
	              "ADD COLUMN IF NOT EXISTS clk bigint, "
	              "ADD COLUMN IF NOT EXISTS clsn bigint, "
	              "ADD COLUMN IF NOT EXISTS lsn bigint;\n"
	              "DROP TRIGGER IF EXISTS xregion_truncate ON %s;\n"
	              "CREATE TRIGGER xregion_truncate AFTER TRUNCATE ON %s "
	              "FOR EACH STATEMENT EXECUTE FUNCTION xregion.truncated();\n",
	              n.vt.data, n.coldefs.data, n.keys.data, n.vt.data,
	              n.qual.data, n.qual.data);
	if (t->conflict == XR_CONFLICT_VCLOCK) {
		xr_buf_printf(&sql,
		              "DROP TRIGGER IF EXISTS xregion_clock ON %s;\n"
		              "DROP TRIGGER IF EXISTS xregion_clock_xmin ON %s;\n"
		              "DROP TRIGGER IF EXISTS xregion_tombstone ON %s;\n"
		              "DROP TRIGGER IF EXISTS xregion_key_change ON %s;\n",
		              n.qual.data, n.qual.data, n.qual.data, n.qual.data);
		if (vclock_trigger(conn, &n, &sql))
			goto quote_failed;
	} else {
		xr_buf_printf(&sql, "DROP TRIGGER IF EXISTS xregion_vclock ON %s;\n"
		              "DROP TRIGGER IF EXISTS xregion_clock ON %s;\n"
		              "DROP TRIGGER IF EXISTS xregion_clock_xmin ON %s;\n",
		              n.qual.data, n.qual.data, n.qual.data);
		stamp_existing_sql(&n, &sql);
		if (tombstone_sql(conn, &n, &sql) ||
		    (t->clock == XR_CLOCK_HYBRID && clock_trigger(conn, &n, &sql)))
			goto quote_failed;
	}
	rc = exec_sql(conn, sql.data, errstr, errstr_size);
	goto out;

quote_failed:
	snprintf(errstr, errstr_size, "quoting names of %s: %s", n.qualname,
	         PQerrorMessage(conn));
out:
	names_term(&n);
	xr_buf_term(&sql);
	return rc;
}

/*
 * Runs sql, with $1 the origin's name, for the origin of every other
 * region.  Returns 0, or -1 with errstr at the first failure (with
 * keep_going, after trying them all).
 */
static int
each_origin(PGconn *conn, const xr_config_t *conf, const char *sql,
            bool keep_going, char *errstr, size_t errstr_size)
{
	size_t i;
	int    rc = 0;

	/* Every other region's, then (i == n_regions) the replays'. */
	for (i = 0; i <= conf->n_regions; i++) {
		char        name[128];
		const char *params[1] = { name };
		PGresult   *res;

		if (i == conf->n_regions)
			xr_meta_replay_origin_name(conf, name, sizeof(name));
		else if (strcmp(conf->regions[i], conf->region) == 0)
			continue;
		else
			xr_meta_origin_name(conf, conf->regions[i], name, sizeof(name));
		res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK && rc == 0) {
			snprintf(errstr, errstr_size, "replication origin %s: %s", name,
			         PQerrorMessage(conn));
			rc = -1;
		}
		PQclear(res);
		if (rc && !keep_going)
			break;
	}
	return rc;
}

static int
install_origins(PGconn *conn, const xr_config_t *conf, char *errstr,
                size_t errstr_size)
{
	return each_origin(conn, conf,
	                   "SELECT pg_catalog.pg_replication_origin_create($1) "
	                   "WHERE pg_catalog.pg_replication_origin_oid($1) IS NULL",
	                   false, errstr, errstr_size);
}

/*
 * "CASE c.roident WHEN <id> THEN '<region>' ... END": the source region of
 * each of this database's origins (named <slot>_from_<region>).
 */
static int
origin_cases(PGconn *conn, const xr_config_t *conf, xr_buf_t *out,
             char *errstr, size_t errstr_size)
{
	char        prefix[128];
	const char *params[1] = { prefix };
	PGresult   *res;
	int         i, n;

	snprintf(prefix, sizeof(prefix), "%s_from_", conf->slot);
	res = PQexecParams(conn,
	                   "SELECT roident, substr(roname, length($1) + 1) "
	                   "FROM pg_catalog.pg_replication_origin "
	                   "WHERE starts_with(roname, $1) ORDER BY roident",
	                   1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errstr, errstr_size, "reading replication origins: %s",
		         PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	n = PQntuples(res);
	xr_buf_puts(out, "CASE c.roident");
	for (i = 0; i < n; i++) {
		const char *region = PQgetvalue(res, i, 1);
		size_t      r;

		/* Another slot's name may start with this one's. */
		for (r = 0; r < conf->n_regions; r++)
			if (strcmp(conf->regions[r], region) == 0)
				break;
		if (r == conf->n_regions)
			continue;
		xr_buf_printf(out, " WHEN %s THEN ", PQgetvalue(res, i, 0));
		if (xr_pqbuf_literal(conn, out, region)) {
			snprintf(errstr, errstr_size, "%s", PQerrorMessage(conn));
			PQclear(res);
			return -1;
		}
	}
	if (strcmp(out->data, "CASE c.roident") == 0) {
		xr_buf_reset(out);                    /* a single region: no origin */
		xr_buf_puts(out, "NULL::text");
	} else {
		xr_buf_puts(out, " ELSE NULL END");
	}
	PQclear(res);
	return 0;
}

/*
 * Setup runs while the applications write.  Its DDL takes ACCESS EXCLUSIVE
 * locks on the replicated tables (DROP TRIGGER) and on the versions tables
 * (ALTER TABLE), which an application transaction takes in the opposite
 * order (the table, then, by the triggers, its versions table): so it
 * locks the replicated tables first, all at once, and waits for each lock
 * at most SETUP_LOCK_TIMEOUT_MS or half the server's deadlock_timeout,
 * whichever is less, so that setup, not the application, gives up when
 * they wait on each other.  While it waits, new writers of the table
 * queue behind it: a short wait keeps them from stalling long.  It then
 * tries again, after a growing pause, SETUP_TRIES times in all.
 */
#define SETUP_LOCK_TIMEOUT_MS 500
#define SETUP_TRIES           30
#define SETUP_PAUSE_MAX_MS    2000

/* SETUP_LOCK_TIMEOUT_MS, or less: half the server's deadlock_timeout. */
static int
setup_lock_timeout_ms(PGconn *conn)
{
	PGresult *res = PQexec(conn, "SELECT setting::int FROM pg_catalog.pg_settings "
	                             "WHERE name = 'deadlock_timeout'");
	int       ms = SETUP_LOCK_TIMEOUT_MS;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		int half = atoi(PQgetvalue(res, 0, 0)) / 2;

		if (half < ms)
			ms = half > 0 ? half : 1;
	}
	PQclear(res);
	return ms;
}

static int
install_once(PGconn *conn, const xr_config_t *conf, const char *common,
             int lock_timeout_ms, char *errstr, size_t errstr_size)
{
	xr_buf_t lock;
	size_t   i;
	int      rc, n = 0;

	xr_buf_init(&lock);
	xr_buf_printf(&lock, "BEGIN;\nSET LOCAL lock_timeout = %d;\n",
	              lock_timeout_ms);
	for (i = 0; i < conf->n_tables; i++) {
		const xr_table_conf_t *t = &conf->tables[i];

		if (t->pii)
			continue;
		xr_buf_puts(&lock, n++ ? ", " : "LOCK TABLE ");
		if (xr_pqbuf_ident(conn, &lock, t->schema) ||
		    (xr_buf_putc(&lock, '.'), 0) ||
		    xr_pqbuf_ident(conn, &lock, t->name)) {
			snprintf(errstr, errstr_size, "quoting %s.%s: %s", t->schema,
			         t->name, PQerrorMessage(conn));
			xr_buf_term(&lock);
			return -1;
		}
	}
	if (n)
		xr_buf_puts(&lock, " IN ACCESS EXCLUSIVE MODE;\n");
	rc = exec_sql(conn, lock.data, errstr, errstr_size);
	xr_buf_term(&lock);
	if (rc == 0)
		rc = exec_sql(conn, common, errstr, errstr_size);
	for (i = 0; rc == 0 && i < conf->n_tables; i++)
		if (!conf->tables[i].pii)
			rc = install_table(conn, conf, &conf->tables[i], errstr,
			                   errstr_size);
	if (rc == 0)
		rc = exec_sql(conn, "COMMIT", errstr, errstr_size);
	if (rc)
		(void)exec_sql(conn, "ROLLBACK", NULL, 0);
	return rc;
}

int
xr_meta_install(PGconn *conn, const xr_config_t *conf, char *errstr,
                size_t errstr_size)
{
	PGresult *res;
	xr_buf_t  sql;
	char     *lit;
	int       rc = -1, try, lock_ms;
	long      pause_ms = 100;

	res = PQexec(conn, "SHOW track_commit_timestamp");
	if (PQresultStatus(res) != PGRES_TUPLES_OK ||
	    strcmp(PQgetvalue(res, 0, 0), "on") != 0) {
		snprintf(errstr, errstr_size,
		         "track_commit_timestamp is off in database %s: "
		         "last-write-wins needs it (set it on and restart PostgreSQL)",
		         PQdb(conn));
		PQclear(res);
		return -1;
	}
	PQclear(res);
	lit = PQescapeLiteral(conn, conf->region, strlen(conf->region));
	if (!lit) {
		snprintf(errstr, errstr_size, "%s", PQerrorMessage(conn));
		return -1;
	}
	/* Origins first (not transactional): version_of names their ids. */
	if (install_origins(conn, conf, errstr, errstr_size)) {
		PQfreemem(lit);
		return -1;
	}
	xr_buf_init(&sql);
	/* IF [NOT] EXISTS notices are expected on a re-run: keep them quiet. */
	xr_buf_puts(&sql, "SET client_min_messages = warning;\n");
	xr_buf_puts(&sql, common_sql);
	xr_buf_puts(&sql, unique_sql);
	{
		xr_buf_t cases;

		xr_buf_init(&cases);
		if (origin_cases(conn, conf, &cases, errstr, errstr_size)) {
			PQfreemem(lit);
			xr_buf_term(&cases);
			xr_buf_term(&sql);
			return -1;
		}
		xr_buf_printf(&sql, version_of_sql, cases.data, lit, lit, lit);
		xr_buf_term(&cases);
	}
	PQfreemem(lit);
	lock_ms = setup_lock_timeout_ms(conn);
	for (try = 1; try <= SETUP_TRIES; try++) {
		rc = install_once(conn, conf, sql.data, lock_ms, errstr, errstr_size);
		if (rc != SQL_LOCKED)
			break;
		if (try == SETUP_TRIES) {
			size_t len = strlen(errstr);

			snprintf(errstr + len, errstr_size - len,
			         " (gave up after %d tries: a transaction holds a lock "
			         "on a replicated table for long; run setup again when "
			         "it is done)", SETUP_TRIES);
			break;
		}
		xr_warn("consumer objects: waiting for a lock, try %d of %d in %ld "
		        "ms: %s", try + 1, SETUP_TRIES, pause_ms, errstr);
		usleep((useconds_t)pause_ms * 1000);
		pause_ms = pause_ms * 2 > SETUP_PAUSE_MAX_MS ? SETUP_PAUSE_MAX_MS
		                                             : pause_ms * 2;
	}
	xr_buf_term(&sql);
	return rc ? -1 : 0;
}

/*
 * After a logical restore (pg_dump, pg_restore) every row has a new xmin,
 * whose commit time is the restore's: as such a row would be a local write
 * newer than every write it holds, and the region would keep it against
 * every later write it missed.  So, for each replicated table:
 *  - an entry of a live row describes the restored row (its xid is set to
 *    the row's xmin): the version it had when it was dumped;
 *  - a live row of an lww table without an entry (a version that was in
 *    commit data or xregion.xact_versions of the old cluster) gets the
 *    oldest version: any write of it in Kafka or in a backfill wins;
 *  - a tombstone or truncation whose time was not recorded yet (its xid
 *    means nothing now) gets the oldest time;
 * and xregion.xact_versions, keyed by the old cluster's xids, is emptied.
 */
static int
mark_restored(PGconn *conn, const xr_config_t *conf, char *errstr,
              size_t errstr_size)
{
	xr_buf_t sql;
	size_t   i;
	int      rc = -1;

	xr_buf_init(&sql);
	{
		PGresult *res = PQexec(conn, "SELECT to_regclass('xregion.offsets') "
		                             "IS NOT NULL");
		bool      ok = PQresultStatus(res) == PGRES_TUPLES_OK &&
		               PQgetvalue(res, 0, 0)[0] == 't';

		PQclear(res);
		if (!ok) {
			snprintf(errstr, errstr_size, "database %s has no schema xregion: "
			         "a restore without it has no versions to re-attach (let "
			         "the region join anew: docs/backfill.md)", PQdb(conn));
			goto out;
		}
	}
	xr_buf_puts(&sql, "BEGIN;\n");
	for (i = 0; i < conf->n_tables; i++) {
		const xr_table_conf_t *t = &conf->tables[i];
		names_t n;

		if (t->pii)
			continue;
		if (names_init(conn, conf, t, &n, errstr, errstr_size))
			goto out;
		xr_buf_printf(&sql,
		              "UPDATE %s v SET xid = xregion.xid8_of(t.xmin) "
		              "FROM ONLY %s t WHERE %s AND NOT v.deleted;\n"
		              "UPDATE %s SET ts = -9223372036854775808 "
		              "WHERE deleted AND ts IS NULL;\n",
		              n.vt.data, n.qual.data, n.vtjoin.data, n.vt.data);
		if (t->conflict != XR_CONFLICT_VCLOCK)
			xr_buf_printf(&sql,
			              "INSERT INTO %s AS v (%s, ts, region, xid, deleted, "
			              "clsn, lsn) SELECT %s, -9223372036854775808, %s, "
			              "xregion.xid8_of(t.xmin), false, 0, 0 FROM ONLY %s t "
			              "ON CONFLICT (%s) DO UPDATE SET ts = EXCLUDED.ts, "
			              "region = EXCLUDED.region, xid = EXCLUDED.xid, "
			              "deleted = false, clsn = 0, lsn = 0 "
			              "WHERE v.deleted;\n",
			              n.vt.data, n.keys.data, n.keys.data, n.region.data,
			              n.qual.data, n.keys.data);
		names_term(&n);
	}
	xr_buf_puts(&sql,
	            "UPDATE xregion.truncations SET ts = -9223372036854775808 "
	            "WHERE ts IS NULL;\n"
	            "DELETE FROM xregion.xact_versions;\n"
	            "COMMIT;\n");
	if (exec_sql(conn, sql.data, errstr, errstr_size))
		goto out;
	rc = 0;
out:
	if (rc)
		(void)exec_sql(conn, "ROLLBACK", NULL, 0);
	xr_buf_term(&sql);
	return rc;
}

int
xr_meta_remove(PGconn *conn, const xr_config_t *conf, char *errstr,
               size_t errstr_size)
{
	xr_buf_t sql;
	int      rc = -1;

	xr_buf_init(&sql);
	/*
	 * The triggers depend on functions in schema xregion: CASCADE drops
	 * them with it, and leaves the replicated tables as they were.
	 */
	xr_buf_puts(&sql, "DROP SCHEMA IF EXISTS xregion CASCADE");
	if (exec_sql(conn, sql.data, errstr, errstr_size))
		goto out;
	/* As before: an origin that cannot be dropped does not stop the rest. */
	(void)each_origin(conn, conf,
	                  "SELECT pg_catalog.pg_replication_origin_drop($1) "
	                  "WHERE pg_catalog.pg_replication_origin_oid($1) IS NOT NULL",
	                  true, errstr, errstr_size);
	rc = 0;
out:
	xr_buf_term(&sql);
	return rc;
}

static PGconn *
connect_plain(const xr_config_t *conf)
{
	PGconn *conn = PQconnectdb(conf->pg_dsn);

	if (PQstatus(conn) != CONNECTION_OK) {
		xr_error("cannot connect to PostgreSQL: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

typedef int (meta_op_t)(PGconn *conn, const xr_config_t *conf, char *errstr,
                        size_t errstr_size);

/* Connects, runs op, logs its outcome.  Returns 0 or 1. */
static int
run_logged(const xr_config_t *conf, meta_op_t *op, const char *done)
{
	PGconn *conn = connect_plain(conf);
	char    err[1024];
	int     rc;

	if (!conn)
		return 1;
	rc = op(conn, conf, err, sizeof(err));
	if (rc)
		xr_error("consumer objects: %s", err);
	else
		xr_info("consumer objects: %s", done);
	PQfinish(conn);
	return rc ? 1 : 0;
}

int
xr_meta_setup(const xr_config_t *conf)
{
	return run_logged(conf, xr_meta_install,
	                  "installed in schema xregion (versions, tombstone "
	                  "triggers, offsets, conflicts, origins)");
}

int
xr_meta_restored(const xr_config_t *conf)
{
	return run_logged(conf, mark_restored,
	                  "versions re-attached to the restored rows (rows "
	                  "without one count as the oldest)");
}

int
xr_meta_teardown(const xr_config_t *conf)
{
	return run_logged(conf, xr_meta_remove,
	                  "schema xregion, its triggers and the replication "
	                  "origins dropped");
}
