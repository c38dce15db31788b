#!/usr/bin/env bash
# The README's "Moving data between backends" walkthrough, exactly: the
# demo fills embedded stores, a backup is restored onto servers, then the
# same stores are migrated one by one. Needs PostgreSQL and Redis (the
# README's test setup), and `cargo build --release` first.
set -euo pipefail
cd "$(dirname "$0")/../.."
bp=./target/release/backplane
before=examples/portability/before.toml
after=examples/portability/after.toml
migrated=examples/portability/migrated.toml

# A clean start: the walkthrough's own files, schemas and keys only.
rm -rf data/portability data/portability-archive examples/portability/.backplane
for schema in bp_walkthrough_users bp_walkthrough_knowledge bp_walkthrough_users_m bp_walkthrough_knowledge_m; do
    psql -q -h 127.0.0.1 -U postgres -d test -c "DROP SCHEMA IF EXISTS $schema CASCADE" 2>/dev/null
done
for prefix in bp-walkthrough: bp-walkthrough-m:; do
    redis-cli -h 127.0.0.1 --scan --pattern "$prefix*" | xargs -r redis-cli -h 127.0.0.1 del >/dev/null
done

# 1. The demo populates the embedded stores.
$bp -c $before demo
$bp -c $before count

# 2. Back up every store; check the archive.
$bp -c $before backup data/portability-archive
$bp verify data/portability-archive

# 3. Every store on another backend: restore the backup there, and count.
$bp -c $after restore data/portability-archive
$bp -c $after count
$bp -c $after check
# The application runs on the new backends unchanged: its migrations
# count as applied there (the tables came with the data).
$bp -c $after demo

# 4. The same with `backplane migrate`, store by store.
for store in relational.user_data vector.memories cache.conversations graph.knowledge; do
    $bp -c $before migrate $store $store --to-config $migrated
done
$bp -c $migrated count
