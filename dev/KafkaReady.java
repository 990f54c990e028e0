// Readiness probe for dev/kafka: a real metadata round trip through Kafka's own
// AdminClient. Exits 0 once the cluster answers with a controller and at least
// one broker, 1 when the deadline (seconds, argv[1]) passes or the broker dies.
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;

public class KafkaReady {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[1]));
        // Optional argv[2]: the broker's pid; give up at once when it has died.
        java.util.Optional<ProcessHandle> broker = args.length > 2
            ? ProcessHandle.of(Long.parseLong(args[2])) : java.util.Optional.empty();
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "3000");
        p.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        String last = "no answer";
        try (Admin admin = Admin.create(p)) {
            while (System.nanoTime() < deadline) {
                if (args.length > 2 && !broker.map(ProcessHandle::isAlive).orElse(false)) {
                    System.err.println("KafkaReady: broker process " + args[2] + " exited");
                    System.exit(1);
                }
                try {
                    DescribeClusterResult r = admin.describeCluster();
                    int nodes = r.nodes().get(3, TimeUnit.SECONDS).size();
                    if (nodes > 0 && r.controller().get(3, TimeUnit.SECONDS) != null) {
                        System.exit(0);
                    }
                    last = "no broker nodes yet";
                } catch (Exception e) {
                    last = e.toString();
                }
                Thread.sleep(300);
            }
        }
        System.err.println("KafkaReady: " + bootstrap + " not ready: " + last);
        System.exit(1);
    }
}
