-- Events still to be published on produtos-persistidos, written in the same transaction
-- as products. The relay publishes them in id order and deletes them once Kafka acknowledged.
CREATE TABLE outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic      text NOT NULL,
    key        text NOT NULL,
    payload    json NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Wake the relay when a transaction that wrote events commits.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
