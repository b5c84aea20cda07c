#!/usr/bin/env bash
# PostgreSQL and MariaDB for the database tests: installs them from Debian's packages
# when missing, starts them when down, waits until each answers, and exports the test
# URLs. Source it (`. .ci/services.sh`) to keep the exports; run it to just start the
# servers and print the exports.
#
# RECON_REQUIRE_DATABASES=1 turns every skipped database test into a failure, so CI can
# never pass by skipping.

recon_services() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

  if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! [ -x /usr/sbin/mariadbd ]; then
    echo "services: installing postgresql and mariadb-server" >&2
    $sudo apt-get update -qq || return 1
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql mariadb-server || return 1
  fi

  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "services: starting PostgreSQL" >&2
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start || return 1
  fi
  if ! mysqladmin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; then
    echo "services: starting MariaDB" >&2
    { $sudo mkdir -p /run/mysqld && $sudo chown mysql:mysql /run/mysqld; } 2>/dev/null || true
    $sudo start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql \
      || return 1
  fi

  local i
  for i in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 1
  done
  pg_isready -q -h 127.0.0.1 -p 5432 || { echo "services: PostgreSQL did not answer in 60s" >&2; return 1; }
  for i in $(seq 1 60); do
    mysqladmin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1 && break
    sleep 1
  done
  mysqladmin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1 \
    || { echo "services: MariaDB did not answer in 60s" >&2; return 1; }

  # A fresh install has neither the `test` databases nor password-less TCP access:
  # PostgreSQL asks for a password on 127.0.0.1 and MariaDB's root logs in only over its
  # socket. Both are opened to local TCP logins, for test servers only.
  if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
    local hba
    hba="$(ls /etc/postgresql/*/main/pg_hba.conf 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -n "$hba" ]; then
      echo "services: allowing local TCP logins to PostgreSQL ($hba)" >&2
      $sudo sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
      $sudo pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main reload || true
      sleep 1
    fi
  fi
  if ! mysql --protocol=tcp -h 127.0.0.1 -u root -e 'SELECT 1' >/dev/null 2>&1; then
    echo "services: allowing local TCP logins to MariaDB as root" >&2
    $sudo mysql -e "ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD(''); \
      CREATE USER IF NOT EXISTS root@'127.0.0.1' IDENTIFIED BY ''; \
      GRANT ALL PRIVILEGES ON *.* TO root@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES" || true
  fi
  if ! psql -h 127.0.0.1 -U postgres -d test -Atc 'SELECT 1' >/dev/null 2>&1; then
    $sudo -u postgres psql -qc 'CREATE DATABASE test' >/dev/null 2>&1 \
      || su postgres -c "psql -qc 'CREATE DATABASE test'" >/dev/null 2>&1 || true
  fi
  mysql --protocol=tcp -h 127.0.0.1 -u root -e 'CREATE DATABASE IF NOT EXISTS test' >/dev/null 2>&1 \
    || $sudo mysql -e 'CREATE DATABASE IF NOT EXISTS test' >/dev/null 2>&1 || true

  export RECON_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"
  export RECON_TEST_MYSQL_URL="mysql://root@127.0.0.1:3306/test"
  export RECON_REQUIRE_DATABASES=1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  recon_services
  echo "export RECON_TEST_POSTGRES_URL=$RECON_TEST_POSTGRES_URL"
  echo "export RECON_TEST_MYSQL_URL=$RECON_TEST_MYSQL_URL"
  echo "export RECON_REQUIRE_DATABASES=1"
else
  recon_services
fi
