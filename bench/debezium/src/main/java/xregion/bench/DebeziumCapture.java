/*
 * DebeziumCapture: the Debezium side of bench/replication.sh's capture
 * comparison (cases "stages debezium").
 *
 * What it measures
 *   How fast Debezium 3.6.1.Final's PostgreSQL connector, run in the
 *   embedded engine (io.debezium:debezium-embedded, the async engine that
 *   DebeziumEngine.create() builds), captures a backlog that is already in
 *   a pgoutput replication slot and puts every change event into Kafka: the
 *   same work as 'xregion run' on the source in the stages case.  Each
 *   change record the engine hands over is sent with one KafkaProducer
 *   (acks=all, enable.idempotence=true, otherwise the client's defaults)
 *   to one topic; the program counts the sends the broker acknowledged, and
 *   once --events of them are acknowledged it prints one JSON line to
 *   stdout and exits 0:
 *
 *     {"events": N, "seconds": S, "events_per_s": R, "first_event_s": F,
 *      "from_first_event_s": ..., "events_per_s_from_first_event": ...,
 *      "peak_rss_mib": ..., "converter": ..., ...}
 *
 *   seconds and first_event_s count from the JVM's start (so JVM start-up,
 *   class loading and the engine's start are in them, as xregion's start
 *   is in its figure); from_first_event_s counts from the first record the
 *   engine handed over to the last acknowledgement.  peak_rss_mib is this
 *   process's VmHWM at that moment (bench/replication.py samples it from
 *   outside too).
 *
 * How
 *   - connector io.debezium.connector.postgresql.PostgresConnector,
 *     plugin.name=pgoutput, an existing slot (--slot, made before the load;
 *     the connector does not drop it), an existing publication
 *     (--publication, publication.autocreate.mode=disabled), one table
 *     (--table), snapshot.mode=no_data: no snapshot, streaming starts at the
 *     slot's confirmed position because the offset file (in --work-dir) is
 *     new;
 *   - records as ChangeEvent<String, String> in Debezium's JSON format:
 *     the engine's default converter for it, Kafka Connect's JsonConverter
 *     with its defaults (schemas.enable=true: each key and value carries its
 *     schema), unless --prop converter.schemas.enable=false is given;
 *   - a batch ChangeConsumer sends every record of a batch, waits for the
 *     batch's acknowledgements and then marks the records processed (as
 *     Debezium Server's Kafka sink does: offsets only move past what Kafka
 *     has); with --wait-batch false it marks them at once and lets the
 *     producer pipeline across batches;
 *   - the engine is closed after the JSON line is printed (bounded by 30 s);
 *     a send failure, the engine stopping early, or --timeout-s passing
 *     without --events acknowledgements ends the program with a message on
 *     stderr and exit status 1 (2 for bad arguments, 3 for the timeout).
 *
 * Arguments (all --name value):
 *   --pg-host 127.0.0.1 --pg-port 15432 --pg-db DB --pg-user postgres
 *   [--pg-password P] --slot SLOT --publication xrbench --table public.stage
 *   --brokers 127.0.0.1:19092 --topic TOPIC --events N --work-dir DIR
 *   [--timeout-s 3600] [--wait-batch true|false]
 *   [--prop key=value]...            extra engine/connector properties
 *   [--producer-prop key=value]...   extra producer properties
 *
 * Logging is slf4j-simple at warn on stderr; -Dorg.slf4j.simpleLogger.
 * defaultLogLevel=info shows the engine's own lines.
 * Build and start: bench/debezium/build.sh.
 */
package xregion.bench;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.producer.Callback;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

import io.debezium.engine.ChangeEvent;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.format.Json;

public final class DebeziumCapture {

    private static final String USAGE = "usage: DebeziumCapture --pg-db DB --slot SLOT --topic TOPIC "
            + "--events N --work-dir DIR [--pg-host H] [--pg-port P] [--pg-user U] [--pg-password PW] "
            + "[--publication PUB] [--table SCHEMA.TABLE] [--brokers HOST:PORT] [--timeout-s S] "
            + "[--wait-batch true|false] [--prop k=v]... [--producer-prop k=v]...";

    /** System.nanoTime() at the JVM's start, as near as the clocks allow. */
    private static long startNanos;

    private final long target;
    private final String topic;
    private final boolean waitBatch;
    private final KafkaProducer<String, String> producer;

    private final AtomicLong sent = new AtomicLong();
    private final AtomicLong acked = new AtomicLong();
    private final AtomicLong keyBytes = new AtomicLong();
    private final AtomicLong valueBytes = new AtomicLong();
    private final AtomicLong firstRecordNanos = new AtomicLong();
    private final AtomicLong taskStartedNanos = new AtomicLong();
    private volatile long doneNanos;
    private final AtomicReference<String> failure = new AtomicReference<>();
    private final CountDownLatch finished = new CountDownLatch(1);

    private DebeziumCapture(long target, String topic, boolean waitBatch,
                            KafkaProducer<String, String> producer) {
        this.target = target;
        this.topic = topic;
        this.waitBatch = waitBatch;
        this.producer = producer;
    }

    public static void main(String[] args) {
        long nowMillis = System.currentTimeMillis();
        long nowNanos = System.nanoTime();
        long jvmStart = ManagementFactory.getRuntimeMXBean().getStartTime();
        startNanos = nowNanos - TimeUnit.MILLISECONDS.toNanos(nowMillis - jvmStart);
        if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null) {
            System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        }
        int rc;
        try {
            rc = run(args);
        }
        catch (IllegalArgumentException e) {
            System.err.println("DebeziumCapture: " + e.getMessage());
            System.err.println(USAGE);
            rc = 2;
        }
        catch (IllegalStateException | SQLException e) {
            System.err.println("DebeziumCapture: " + e.getMessage());
            rc = 1;
        }
        catch (Throwable e) {
            System.err.println("DebeziumCapture: failed: " + e);
            e.printStackTrace();
            rc = 1;
        }
        System.out.flush();
        System.err.flush();
        // the engine's and the producer's non-daemon threads must not keep us
        Runtime.getRuntime().halt(rc);
    }

    // ------------------------------------------------------------ arguments

    private static final class Args {
        final Map<String, String> one = new HashMap<>();
        final List<String> props = new ArrayList<>();
        final List<String> producerProps = new ArrayList<>();

        Args(String[] argv) {
            for (int i = 0; i < argv.length; i++) {
                String name = argv[i];
                if (!name.startsWith("--") || i + 1 >= argv.length) {
                    throw new IllegalArgumentException("expected --name value, got '" + name + "'");
                }
                String value = argv[++i];
                switch (name) {
                    case "--prop" -> props.add(value);
                    case "--producer-prop" -> producerProps.add(value);
                    case "--pg-host", "--pg-port", "--pg-db", "--pg-user", "--pg-password", "--slot",
                            "--publication", "--table", "--brokers", "--topic", "--events", "--work-dir",
                            "--timeout-s", "--wait-batch" -> one.put(name.substring(2), value);
                    default -> throw new IllegalArgumentException("unknown option " + name);
                }
            }
        }

        String get(String name, String dflt) {
            String v = one.getOrDefault(name, dflt);
            if (v == null || v.isEmpty()) {
                throw new IllegalArgumentException("--" + name + " is required");
            }
            return v;
        }

        long positive(String name, String dflt) {
            String v = get(name, dflt);
            try {
                long n = Long.parseLong(v);
                if (n > 0) {
                    return n;
                }
            }
            catch (NumberFormatException e) {
                // below
            }
            throw new IllegalArgumentException("--" + name + " needs a positive integer, got '" + v + "'");
        }

        static void putAll(Properties p, List<String> pairs, String option) {
            for (String kv : pairs) {
                int eq = kv.indexOf('=');
                if (eq <= 0) {
                    throw new IllegalArgumentException(option + " needs key=value, got '" + kv + "'");
                }
                p.setProperty(kv.substring(0, eq), kv.substring(eq + 1));
            }
        }
    }

    // ------------------------------------------------------------------ run

    private static int run(String[] argv) throws Exception {
        Args a = new Args(argv);
        long events = a.positive("events", null);
        long timeoutS = a.positive("timeout-s", "3600");
        String topic = a.get("topic", null);
        String waitBatchArg = a.get("wait-batch", "true");
        if (!waitBatchArg.equals("true") && !waitBatchArg.equals("false")) {
            throw new IllegalArgumentException("--wait-batch takes true or false");
        }
        Path work = Path.of(a.get("work-dir", null));
        Files.createDirectories(work);
        Path offsets = work.resolve("debezium-offsets.dat");
        Files.deleteIfExists(offsets); // a new offset file: stream from the slot's position

        Properties engine = new Properties();
        engine.setProperty("name", "xrbench-debezium");
        engine.setProperty("connector.class", "io.debezium.connector.postgresql.PostgresConnector");
        engine.setProperty("offset.storage", "org.apache.kafka.connect.storage.FileOffsetBackingStore");
        engine.setProperty("offset.storage.file.filename", offsets.toString());
        engine.setProperty("database.hostname", a.get("pg-host", "127.0.0.1"));
        engine.setProperty("database.port", a.get("pg-port", "15432"));
        engine.setProperty("database.dbname", a.get("pg-db", null));
        engine.setProperty("database.user", a.get("pg-user", "postgres"));
        if (a.one.containsKey("pg-password")) {
            engine.setProperty("database.password", a.one.get("pg-password"));
        }
        engine.setProperty("topic.prefix", "xrbench_debezium");
        engine.setProperty("plugin.name", "pgoutput");
        engine.setProperty("slot.name", a.get("slot", null));
        engine.setProperty("slot.drop.on.stop", "false");
        engine.setProperty("publication.name", a.get("publication", "xrbench"));
        engine.setProperty("publication.autocreate.mode", "disabled");
        engine.setProperty("table.include.list", a.get("table", "public.stage"));
        engine.setProperty("snapshot.mode", "no_data");
        Args.putAll(engine, a.props, "--prop");
        checkSource(engine);

        Properties prod = new Properties();
        prod.setProperty(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, a.get("brokers", "127.0.0.1:19092"));
        prod.setProperty(ProducerConfig.CLIENT_ID_CONFIG, "xrbench-debezium");
        prod.setProperty(ProducerConfig.ACKS_CONFIG, "all");
        prod.setProperty(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        prod.setProperty(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        prod.setProperty(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        Args.putAll(prod, a.producerProps, "--producer-prop");
        if (!"all".equals(prod.getProperty(ProducerConfig.ACKS_CONFIG))
                && !"-1".equals(prod.getProperty(ProducerConfig.ACKS_CONFIG))) {
            throw new IllegalArgumentException("the comparison needs acks=all");
        }

        KafkaProducer<String, String> producer = new KafkaProducer<>(prod);
        DebeziumCapture cap = new DebeziumCapture(events, topic, waitBatchArg.equals("true"), producer);

        DebeziumEngine<ChangeEvent<String, String>> eng = DebeziumEngine.create(Json.class)
                .using(engine)
                .using(new DebeziumEngine.ConnectorCallback() {
                    @Override
                    public void taskStarted() {
                        cap.taskStartedNanos.compareAndSet(0, System.nanoTime());
                    }
                })
                .using((boolean success, String message, Throwable error) -> {
                    if (cap.doneNanos == 0) {
                        cap.fail("the engine stopped after " + cap.acked.get() + " of " + events
                                + " events were acknowledged: " + message
                                + (error != null ? " (" + error + ")" : ""));
                    }
                })
                .notifying(cap::handleBatch)
                .build();
        ExecutorService runner = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "debezium-engine");
            t.setDaemon(true);
            return t;
        });
        runner.execute(eng);

        boolean inTime = cap.finished.await(timeoutS, TimeUnit.SECONDS);
        int rc;
        if (!inTime) {
            System.err.printf(Locale.ROOT, "DebeziumCapture: timeout: %d of %d events acknowledged "
                    + "(%d sent) after %d s%n", cap.acked.get(), events, cap.sent.get(), timeoutS);
            rc = 3;
        }
        else if (cap.failure.get() != null) {
            System.err.println("DebeziumCapture: " + cap.failure.get());
            rc = 1;
        }
        else {
            System.out.println(cap.report(engine, prod));
            System.out.flush();
            rc = 0;
        }
        // stop the engine (it commits its offsets) and the producer, bounded
        ExecutorService closer = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "closer");
            t.setDaemon(true);
            return t;
        });
        Future<?> closing = closer.submit(() -> {
            eng.close();
            producer.close(Duration.ofSeconds(10));
            return null;
        });
        try {
            closing.get(30, TimeUnit.SECONDS);
        }
        catch (Exception e) {
            System.err.println("DebeziumCapture: closing the engine: " + e);
        }
        return rc;
    }

    /**
     * The slot must exist (with the backlog in it) and the publication too:
     * the connector would make a missing slot (at the current end of the WAL,
     * without the backlog) and wait for ever.
     */
    private static void checkSource(Properties engine) throws SQLException {
        String url = "jdbc:postgresql://" + engine.getProperty("database.hostname") + ":"
                + engine.getProperty("database.port") + "/" + engine.getProperty("database.dbname");
        Properties p = new Properties();
        p.setProperty("user", engine.getProperty("database.user"));
        if (engine.getProperty("database.password") != null) {
            p.setProperty("password", engine.getProperty("database.password"));
        }
        p.setProperty("ApplicationName", "xrbench");
        String slot = engine.getProperty("slot.name");
        String pub = engine.getProperty("publication.name");
        try (Connection c = DriverManager.getConnection(url, p)) {
            try (PreparedStatement st = c.prepareStatement(
                    "SELECT plugin FROM pg_replication_slots WHERE slot_name = ? AND database = current_database()")) {
                st.setString(1, slot);
                try (ResultSet rs = st.executeQuery()) {
                    if (!rs.next()) {
                        throw new IllegalStateException("no replication slot " + slot + " in database "
                                + engine.getProperty("database.dbname") + " (make it before the load)");
                    }
                    if (!"pgoutput".equals(rs.getString(1))) {
                        throw new IllegalStateException("slot " + slot + " uses " + rs.getString(1)
                                + ", not pgoutput");
                    }
                }
            }
            try (PreparedStatement st = c.prepareStatement("SELECT 1 FROM pg_publication WHERE pubname = ?")) {
                st.setString(1, pub);
                try (ResultSet rs = st.executeQuery()) {
                    if (!rs.next()) {
                        throw new IllegalStateException("no publication " + pub);
                    }
                }
            }
        }
    }

    // ---------------------------------------------------------- the records

    private void fail(String why) {
        if (failure.compareAndSet(null, why)) {
            finished.countDown();
        }
    }

    private void handleBatch(List<ChangeEvent<String, String>> records,
                             DebeziumEngine.RecordCommitter<ChangeEvent<String, String>> committer)
            throws InterruptedException {
        firstRecordNanos.compareAndSet(0, System.nanoTime());
        CountDownLatch batch = new CountDownLatch(records.size());
        Callback cb = (md, ex) -> {
            if (ex != null) {
                fail("a send failed after " + acked.get() + " acknowledgements: " + ex);
            }
            else {
                keyBytes.addAndGet(Math.max(md.serializedKeySize(), 0));
                valueBytes.addAndGet(Math.max(md.serializedValueSize(), 0));
                if (acked.incrementAndGet() == target) {
                    doneNanos = System.nanoTime();
                    finished.countDown();
                }
            }
            batch.countDown();
        };
        for (ChangeEvent<String, String> r : records) {
            if (failure.get() != null) {
                throw new InterruptedException("stopping: " + failure.get());
            }
            producer.send(new ProducerRecord<>(topic, r.key(), r.value()), cb);
            sent.incrementAndGet();
        }
        if (waitBatch) {
            // every callback runs, at the latest after delivery.timeout.ms
            batch.await();
        }
        for (ChangeEvent<String, String> r : records) {
            committer.markProcessed(r);
        }
        committer.markBatchFinished();
    }

    // -------------------------------------------------------------- report

    private static double secs(long fromNanos, long toNanos) {
        return (toNanos - fromNanos) / 1e9;
    }

    private static String q(String s) {
        return s == null ? "null" : "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    private static Double peakRssMib() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("VmHWM:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", "")) / 1024.0;
                }
            }
        }
        catch (IOException | NumberFormatException e) {
            // not on Linux
        }
        return null;
    }

    private String report(Properties engine, Properties prod) {
        long first = firstRecordNanos.get();
        long task = taskStartedNanos.get();
        double seconds = secs(startNanos, doneNanos);
        double fromFirst = secs(first, doneNanos);
        String schemas = engine.getProperty("converter.schemas.enable",
                engine.getProperty("value.converter.schemas.enable", "true"));
        Double rss = peakRssMib();
        StringBuilder sb = new StringBuilder();
        sb.append('{');
        sb.append(String.format(Locale.ROOT, "\"events\": %d, \"seconds\": %.3f, \"events_per_s\": %.1f, "
                + "\"first_event_s\": %.3f, \"from_first_event_s\": %.3f, "
                + "\"events_per_s_from_first_event\": %.1f, ",
                acked.get(), seconds, acked.get() / seconds, secs(startNanos, first), fromFirst,
                fromFirst > 0 ? acked.get() / fromFirst : 0.0));
        if (task != 0) {
            sb.append(String.format(Locale.ROOT, "\"task_started_s\": %.3f, ", secs(startNanos, task)));
        }
        sb.append(String.format(Locale.ROOT, "\"sent\": %d, \"key_bytes\": %d, \"value_bytes\": %d, ",
                sent.get(), keyBytes.get(), valueBytes.get()));
        if (rss != null) {
            sb.append(String.format(Locale.ROOT, "\"peak_rss_mib\": %.1f, ", rss));
        }
        sb.append("\"format\": \"io.debezium.engine.format.Json\", ");
        sb.append("\"converter\": \"org.apache.kafka.connect.json.JsonConverter\", ");
        sb.append("\"schemas_enable\": ").append(Boolean.parseBoolean(schemas)).append(", ");
        sb.append("\"wait_batch\": ").append(waitBatch).append(", ");
        sb.append("\"acks\": ").append(q(prod.getProperty(ProducerConfig.ACKS_CONFIG))).append(", ");
        sb.append("\"enable_idempotence\": ")
                .append(q(prod.getProperty(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG))).append(", ");
        sb.append("\"debezium\": ").append(q(io.debezium.connector.postgresql.Module.version())).append(", ");
        sb.append("\"kafka_clients\": ").append(q(org.apache.kafka.common.utils.AppInfoParser.getVersion()))
                .append(", ");
        sb.append("\"java\": ").append(q(System.getProperty("java.version"))).append(", ");
        sb.append("\"max_heap_mib\": ").append(Runtime.getRuntime().maxMemory() / (1024 * 1024)).append(", ");
        sb.append("\"topic\": ").append(q(topic));
        sb.append('}');
        return sb.toString();
    }
}
