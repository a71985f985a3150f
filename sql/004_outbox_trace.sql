-- What the relay needs beside the event: the trace of the record it comes from (W3C
-- traceparent, set on the event's Kafka record) and, for a record that came from Kafka,
-- that source record's timestamp (the end-to-end latency is measured from it).
ALTER TABLE outbox
    ADD COLUMN traceparent text,
    ADD COLUMN source_timestamp timestamptz;
