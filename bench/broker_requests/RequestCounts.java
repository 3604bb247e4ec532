// Samples a Kafka broker's request and record counters over JMX every INTERVAL_MS and
// writes each sample as "name value" lines to OUT_DIR/NNNN, until OUT_DIR/stop exists.
// Used by bench/broker_requests.py; the broker's own CPU time is read from /proc.
//
//   java RequestCounts JMX_PORT INTERVAL_MS OUT_DIR BROKER_PID
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;
import javax.management.MBeanServerConnection;
import javax.management.ObjectName;
import javax.management.remote.JMXConnector;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;

public final class RequestCounts {
    private static final String[] TOPIC_METERS = {
        "MessagesInPerSec", "BytesInPerSec", "TotalProduceRequestsPerSec", "TotalFetchRequestsPerSec"
    };

    public static void main(String[] args) throws Exception {
        String url = "service:jmx:rmi:///jndi/rmi://127.0.0.1:" + args[0] + "/jmxrmi";
        long intervalMs = Long.parseLong(args[1]);
        Path out = Path.of(args[2]);
        Path stat = Path.of("/proc", args[3], "stat");
        try (JMXConnector connector = JMXConnectorFactory.connect(new JMXServiceURL(url))) {
            MBeanServerConnection server = connector.getMBeanServerConnection();
            ObjectName requests = new ObjectName("kafka.network:type=RequestMetrics,name=RequestsPerSec,*");
            for (int i = 0; !Files.exists(out.resolve("stop")); i++) {
                Map<String, Double> sample = new TreeMap<>();
                for (ObjectName name : server.queryNames(requests, null)) {
                    double count = ((Number) server.getAttribute(name, "Count")).doubleValue();
                    sample.merge(name.getKeyProperty("request"), count, Double::sum);
                }
                for (String meter : TOPIC_METERS) {
                    ObjectName name = new ObjectName("kafka.server:type=BrokerTopicMetrics,name=" + meter);
                    if (server.isRegistered(name)) {
                        sample.put("_" + meter, ((Number) server.getAttribute(name, "Count")).doubleValue());
                    }
                }
                String text = Files.readString(stat);
                String[] fields = text.substring(text.lastIndexOf(')') + 2).split(" ");
                sample.put("_cpu_ticks", Double.parseDouble(fields[11]) + Double.parseDouble(fields[12]));
                sample.put("_t", System.currentTimeMillis() / 1000.0);
                StringBuilder lines = new StringBuilder();
                sample.forEach((k, v) -> lines.append(k).append(' ').append(v).append('\n'));
                Path tmp = out.resolve(String.format("%04d.tmp", i));
                Files.writeString(tmp, lines);
                Files.move(tmp, out.resolve(String.format("%04d", i)));
                Thread.sleep(intervalMs);
            }
        }
    }
}
