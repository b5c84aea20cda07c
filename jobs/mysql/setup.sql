-- Example data for jobs/mysql/: the reporting service's copy of the orders in MariaDB
-- or MySQL (replica of the PostgreSQL order service that jobs/postgres/setup.sql
-- creates), and a warehouse's inventory with its nightly snapshot. Re-runnable.
--   mysql -h 127.0.0.1 -u root < jobs/mysql/setup.sql
DROP DATABASE IF EXISTS recon_example_reporting;
DROP DATABASE IF EXISTS recon_example_warehouse;
CREATE DATABASE recon_example_reporting CHARACTER SET utf8mb4;
CREATE DATABASE recon_example_warehouse CHARACTER SET utf8mb4;

-- The same 1,000 orders as the PostgreSQL owner, in MySQL's types: DECIMAL, char(36)
-- UUIDs, DATETIME(6) in UTC, JSON with its keys in another order.
CREATE TABLE recon_example_reporting.orders (
    id          bigint PRIMARY KEY,
    customer_id char(36) NOT NULL,
    status      varchar(20) NOT NULL,
    amount      DECIMAL(12,2) NOT NULL,
    currency    char(3) NOT NULL,
    attributes  JSON,
    updated_at  DATETIME(6) NOT NULL
);
INSERT INTO recon_example_reporting.orders
WITH RECURSIVE n (id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM n WHERE id < 1000)
SELECT id,
       CONCAT_WS('-', SUBSTR(MD5(id), 1, 8), SUBSTR(MD5(id), 9, 4), SUBSTR(MD5(id), 13, 4),
                 SUBSTR(MD5(id), 17, 4), SUBSTR(MD5(id), 21, 12)),
       ELT(id % 4 + 1, 'new', 'paid', 'shipped', 'cancelled'),
       (id * 37 % 100000) / 100,
       ELT(id % 3 + 1, 'EUR', 'USD', 'GBP'),
       JSON_OBJECT('items', id % 5 + 1, 'channel', IF(id % 2 = 0, 'web', 'app')),
       TIMESTAMP('2026-11-01 00:00:00') + INTERVAL id MINUTE + INTERVAL (id % 1000) MICROSECOND
FROM n;

-- Planted drift: a price rounded by a bad migration, an order that never arrived, a
-- currency lost to a failed compensation, an update applied twice.
UPDATE recon_example_reporting.orders SET amount = ROUND(amount) WHERE id = 250;
DELETE FROM recon_example_reporting.orders WHERE id = 600;
UPDATE recon_example_reporting.orders SET currency = 'EUR' WHERE id = 901;
UPDATE recon_example_reporting.orders SET updated_at = updated_at + INTERVAL 1 SECOND WHERE id = 333;

-- Inventory: the warehouse database owns stock levels, keyed by (warehouse, sku);
-- the snapshot keeps a copy. SKUs differ in case and accents: keys compare byte-wise.
CREATE TABLE recon_example_warehouse.inventory (
    warehouse varchar(8) NOT NULL,
    sku       varchar(40) NOT NULL,
    on_hand   int NOT NULL,
    counted   tinyint(1) NOT NULL,
    PRIMARY KEY (warehouse, sku)
) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
INSERT INTO recon_example_warehouse.inventory VALUES
    ('BER', 'SKU-100', 40, 1), ('BER', 'sku-100', 3, 1), ('BER', 'SKU-200', 0, 0),
    ('BER', 'Crème-1', 12, 1), ('MAD', 'SKU-100', 7, 1), ('MAD', 'SKU-300', 19, 0),
    ('MAD', 'Ñandú-9', 5, 1), ('LIS', 'SKU-100', 22, 1);
CREATE TABLE recon_example_reporting.inventory_snapshot LIKE recon_example_warehouse.inventory;
INSERT INTO recon_example_reporting.inventory_snapshot SELECT * FROM recon_example_warehouse.inventory;
UPDATE recon_example_reporting.inventory_snapshot SET on_hand = 4 WHERE warehouse = 'BER' AND sku = 'sku-100';
UPDATE recon_example_reporting.inventory_snapshot SET counted = 1 WHERE warehouse = 'MAD' AND sku = 'SKU-300';
DELETE FROM recon_example_reporting.inventory_snapshot WHERE warehouse = 'LIS';
