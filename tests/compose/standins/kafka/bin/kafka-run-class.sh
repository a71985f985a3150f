#!/usr/bin/env bash
# kafka-run-class.sh CLASS [ARGS]: a Kafka class on the broker's classpath. Tools log
# warnings only; the broker (kafka.Kafka) logs at INFO. KAFKA_HEAP_OPTS and KAFKA_OPTS as
# in Apache Kafka's own script.
set -euo pipefail
class=$1
shift
level=WARN heap=${KAFKA_HEAP_OPTS:--Xmx256M}
if [[ $class == kafka.Kafka ]]; then level=INFO heap=${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}; fi
# shellcheck disable=SC2086  # heap and options are lists of JVM flags
exec java $heap ${KAFKA_OPTS-} -Djava.awt.headless=true \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -Dkafka.log.level="$level" \
  -cp '/opt/kafka/libs/*' "$class" "$@"
