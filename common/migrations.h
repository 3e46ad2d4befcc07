/* migrations.h — the SQL migrations embedded in the binary (generated from sql/NNN_name.sql by
 * tests/embed_sql.sh at build time), in ascending version order. */
#ifndef TQ_MIGRATIONS_H
#define TQ_MIGRATIONS_H

typedef struct TqMigration {
    int version;
    const char *name;
    const char *sql;
} TqMigration;

extern const TqMigration tq_migrations[];
extern const int tq_migration_count;

#endif
