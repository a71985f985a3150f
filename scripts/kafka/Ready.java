// Readiness check run by scripts/kafka.sh with the broker's own classpath (java Ready.java,
// no build step): succeeds once the broker answers a metadata request, not merely once its
// port is open, and (with NODES) lists at least that many brokers.
// Usage: java Ready.java BOOTSTRAP TIMEOUT_MS [NODES]
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;

public class Ready {
    public static void main(String[] args) throws Exception {
        long timeoutMs = Long.parseLong(args[1]);
        int wanted = args.length > 2 ? Integer.parseInt(args[2]) : 1;
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) timeoutMs);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, (int) Math.min(timeoutMs, 5000));
        try (Admin admin = Admin.create(props)) {
            DescribeClusterResult cluster = admin.describeCluster();
            String id = cluster.clusterId().get(timeoutMs, TimeUnit.MILLISECONDS);
            int brokers = cluster.nodes().get(timeoutMs, TimeUnit.MILLISECONDS).size();
            if (brokers < wanted) {
                System.err.println("not ready: " + brokers + " of " + wanted + " brokers");
                System.exit(1);
            }
            System.out.println("cluster " + id + ", " + brokers + " broker(s)");
        } catch (Exception e) {
            System.err.println("not ready: " + e);
            System.exit(1);
        }
    }
}
