#!/usr/bin/env bash
# The official image's start-up: KAFKA_* variables become server.properties (KAFKA_ dropped,
# lower case, '___' -> '-', '__' -> '_', '_' -> '.'), CLUSTER_ID formats the log directories
# on first start, then the broker replaces this shell (it gets SIGTERM from `docker stop`).
set -euo pipefail
props=/opt/kafka/config/server.properties
: "${KAFKA_PROCESS_ROLES:?is empty: configure the broker with KAFKA_* variables}"
: "${CLUSTER_ID:?is empty: set CLUSTER_ID (16 bytes, URL-safe base64)}"
# Variables of the JVM and of the scripts, not broker settings.
skip=" KAFKA_VERSION KAFKA_HEAP_OPTS KAFKA_OPTS KAFKA_JMX_OPTS KAFKA_JVM_PERFORMANCE_OPTS
  KAFKA_GC_LOG_OPTS KAFKA_LOG4J_OPTS KAFKA_LOG4J_LOGGERS KAFKA_LOG4J_ROOT_LOGLEVEL
  KAFKA_TOOLS_LOG4J_LOGLEVEL KAFKA_JMX_PORT KAFKA_JMX_HOSTNAME "
: >"$props"
for name in $(compgen -e); do
  [[ $name == KAFKA_* && $skip != *" $name "* ]] || continue
  key=${name#KAFKA_}
  key=${key,,}
  key=${key//___/-}
  key=${key//__/@}
  key=${key//_/.}
  printf '%s=%s\n' "${key//@/_}" "${!name}" >>"$props"
done
format=(--cluster-id "$CLUSTER_ID" -c "$props" --ignore-formatted)
grep -q '^controller.quorum.voters=' "$props" || format+=(--standalone)
kafka-storage.sh format "${format[@]}"
exec kafka-server-start.sh "$props"
