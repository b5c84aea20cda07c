-- Example data for jobs/postgres/ and jobs/mysql/orders-read-model.toml: the order
-- service's orders (the owner) and a read model kept in the same PostgreSQL server
-- (the replica), 1,000 orders whose values are a function of the id, with planted drift.
-- Re-runnable: it drops and recreates its two schemas.
--   psql "$ORDERS_DATABASE_URL" -f jobs/postgres/setup.sql
DROP SCHEMA IF EXISTS recon_example_shop CASCADE;
DROP SCHEMA IF EXISTS recon_example_reporting CASCADE;
CREATE SCHEMA recon_example_shop;
CREATE SCHEMA recon_example_reporting;

CREATE TABLE recon_example_shop.orders (
    id          bigint PRIMARY KEY,
    customer_id uuid NOT NULL,
    status      text NOT NULL,
    amount      numeric(12,2) NOT NULL,
    currency    char(3) NOT NULL,
    attributes  jsonb,
    updated_at  timestamptz NOT NULL
);
INSERT INTO recon_example_shop.orders
SELECT id,
       CAST(md5(CAST(id AS text)) AS uuid),
       (ARRAY['new', 'paid', 'shipped', 'cancelled'])[id % 4 + 1],
       (id * 37 % 100000) / 100.0,
       (ARRAY['EUR', 'USD', 'GBP'])[id % 3 + 1],
       jsonb_build_object('channel', CASE WHEN id % 2 = 0 THEN 'web' ELSE 'app' END, 'items', id % 5 + 1),
       TIMESTAMPTZ '2026-11-01 00:00:00+00' + id * INTERVAL '1 minute' + (id % 1000) * INTERVAL '1 microsecond'
FROM generate_series(1, 1000) AS id;

-- The read model stores the amount with more digits and the currency as text: equal
-- values written differently are not findings.
CREATE TABLE recon_example_reporting.orders (
    id           bigint PRIMARY KEY,
    customer_id  uuid NOT NULL,
    status       text NOT NULL,
    total_amount numeric(14,4) NOT NULL,
    currency     text NOT NULL,
    attributes   jsonb,
    updated_at   timestamptz NOT NULL
);
INSERT INTO recon_example_reporting.orders SELECT * FROM recon_example_shop.orders;

-- Planted drift: a lost event, a failed compensation, a bad migration.
DELETE FROM recon_example_reporting.orders WHERE id = 17;
UPDATE recon_example_reporting.orders SET status = 'paid' WHERE id = 42;
UPDATE recon_example_reporting.orders SET total_amount = total_amount + 0.01 WHERE id = 512;
UPDATE recon_example_reporting.orders SET attributes = '{"items": 4, "channel": "app"}' WHERE id = 777;
INSERT INTO recon_example_reporting.orders
VALUES (1001, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'paid', 10.00, 'EUR', NULL, '2026-11-01 18:00:00+00');
