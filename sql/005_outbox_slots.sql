-- Relay slots: the outbox is partitioned by a hash of the product key into `slots` slots,
-- each published by whichever relay holds that slot's advisory lock, so up to `slots`
-- relays (one per API replica) publish at once while one product's events stay with one
-- relay at a time, in id order.
--
-- The number of slots lives here, not in each replica's settings, so that replicas never
-- disagree on it (a rolling restart included). The relays compute a row's slot from the
-- current value in the statement that claims rows, so changing it is one statement that
-- keeps per-product order (see the README, "Scaling"):
--     UPDATE outbox_relay_config SET slots = 32;
CREATE TABLE outbox_relay_config (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    slots     integer NOT NULL CHECK (slots BETWEEN 1 AND 1024)
);

INSERT INTO outbox_relay_config (slots) VALUES (16);

-- The slot of a key among `slots`; stable across PostgreSQL versions that share
-- hashtextextended (11 and later).
CREATE FUNCTION outbox_slot(key text, slots integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT abs(hashtextextended(key, 0) % slots)::integer
$$;
