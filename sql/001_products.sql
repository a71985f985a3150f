-- One row per product id: the latest state received, exact money, and where it came from.
CREATE TABLE products (
    id                     text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    name                   text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    description            text NOT NULL CHECK (length(description) BETWEEN 1 AND 4096),
    price_amount           numeric(14, 2) NOT NULL CHECK (price_amount >= 0),
    price_currency         char(3) NOT NULL CHECK (price_currency ~ '^[A-Z]{3}$'),
    stock_quantity         integer NOT NULL CHECK (stock_quantity >= 0),
    availability_timestamp timestamptz NOT NULL,
    category               text NOT NULL CHECK (length(category) BETWEEN 1 AND 255),
    -- Provenance: the Kafka record this row was last written from (NULL when posted directly).
    source_topic           text,
    source_partition       integer,
    source_offset          bigint,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

-- The transformed record of a row: what the API answers and publishes on produtos-persistidos.
-- json (not jsonb) keeps the keys in the contract's order.
CREATE FUNCTION product_document(p products) RETURNS json
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT json_build_object(
        'id', p.id,
        'name', p.name,
        'description', p.description,
        'pricing', json_build_object('amount', p.price_amount, 'currency', p.price_currency),
        'availability', json_build_object(
            'quantity', p.stock_quantity,
            'timestamp', to_char(p.availability_timestamp AT TIME ZONE 'UTC',
                                 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
        'category', p.category)
$$;
