//! Every common column type on PostgreSQL and MySQL/MariaDB, compared across engines.
