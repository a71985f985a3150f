-- Which of two writes of one product wins (services/common/ordering.py, `supersedes`, is
-- the rule; this function mirrors it for the upsert, and a test holds the two equal):
-- from one partition of one incarnation of a topic, the higher offset; otherwise the later
-- source timestamp, the write arriving later on equal timestamps.
--
-- source_incarnation is the source topic's id (Kafka's topic id): a topic deleted and
-- created again under the same name gets a new one, and its offsets start again at 0, so
-- they are not compared with the old topic's. NULL when unknown (rows written before).
ALTER TABLE products ADD COLUMN source_incarnation text;

-- A single SQL expression: the planner inlines it into the upsert.
CREATE FUNCTION product_write_supersedes(
    new_timestamp timestamptz, new_topic text, new_partition integer, new_offset bigint,
    new_incarnation text,
    old_timestamp timestamptz, old_topic text, old_partition integer, old_offset bigint,
    old_incarnation text
) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN new_topic IS NOT NULL AND old_topic IS NOT NULL
             AND new_topic = old_topic AND new_partition = old_partition
             AND new_incarnation IS NOT DISTINCT FROM old_incarnation
        THEN new_offset > old_offset
        ELSE new_timestamp >= old_timestamp
    END
$$;
