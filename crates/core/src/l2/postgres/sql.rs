//! The Postgres L2's SQL, built once per table from its (quoted) name.

use super::{PostgresConfig, ADVISORY_CLASS_CLEANUP, NOW_US, NOW_UTC};

/// SQL text built once from the table name; sqlx prepares each statement once per connection.
pub(super) struct Statements {
    pub(super) table_name: String,
    pub(super) get: String,
    /// Indexed by [conditional][notifies].
    pub(super) set: [[String; 2]; 2],
    /// Indexed by [notifies].
    pub(super) delete: [String; 2],
    pub(super) has: String,
    pub(super) mark_and_delete_like: String,
    pub(super) cleanup: String,
    pub(super) create: [String; 3],
}

impl Statements {
    pub(super) fn new(config: &PostgresConfig) -> Self {
        let table = qualified(config.schema.as_deref(), &config.table);
        let expires = format!("{NOW_UTC} + $3::bigint * interval '1 millisecond'");
        let update =
            r#"SET "value" = EXCLUDED."value", "expiresAt" = EXCLUDED."expiresAt", "updatedAt" = EXCLUDED."updatedAt""#;
        let upsert = format!(
            r#"INSERT INTO {table} AS e ("id", "key", "value", "expiresAt", "updatedAt")
               VALUES (gen_random_uuid()::text, $1, $2::jsonb, {expires}, {NOW_UTC})
               ON CONFLICT ("key") DO UPDATE {update} RETURNING 1"#
        );
        // $4 the load's start (µs), $5 the fence window (µs), $6 the namespace marker, $7 the load's start (ms,
        // rounded down: `updatedAt` keeps milliseconds, rounded, so a change in the same millisecond refuses).
        let fenced = format!(
            r#"INSERT INTO {table} AS e ("id", "key", "value", "expiresAt", "updatedAt")
               SELECT gen_random_uuid()::text, $1, $2::jsonb, {expires}, {NOW_UTC}
               WHERE {NOW_US} - $4::int8 <= $5::int8 AND NOT EXISTS (
                 SELECT 1 FROM {table} WHERE "key" = $6 AND extract(epoch FROM "updatedAt") * 1000 >= $7::int8)
               ON CONFLICT ("key") DO UPDATE {update} WHERE extract(epoch FROM e."updatedAt") * 1000 < $7::int8
               RETURNING 1"#
        );
        let with_notify = |write: &str, channel: usize| {
            [
                format!("WITH up AS ({write}) SELECT 1 FROM up"),
                format!("WITH up AS ({write}) SELECT pg_notify(${channel}, ${}) FROM up", channel + 1),
            ]
        };
        let tombstones = format!(
            r#"WITH old AS (SELECT count(*) AS live FROM {table} WHERE "key" = ANY($1) AND "expiresAt" > {NOW_UTC}),
                    up AS (INSERT INTO {table} ("id", "key", "value", "expiresAt", "updatedAt")
                           SELECT gen_random_uuid()::text, k, 'null'::jsonb, {NOW_UTC}, {NOW_UTC}
                           FROM unnest($1::text[]) AS k
                           ON CONFLICT ("key") DO UPDATE SET "value" = 'null'::jsonb,
                             "expiresAt" = EXCLUDED."expiresAt",
                             "updatedAt" = EXCLUDED."updatedAt"
                           RETURNING 1)
               SELECT (SELECT live FROM old), (SELECT count(*) FROM up)"#
        );
        let unlogged = if config.unlogged { "UNLOGGED " } else { "" };
        Statements {
            table_name: table.clone(),
            get: format!(
                r#"SELECT {NOW_US}, e."value"::text, e.remaining FROM (SELECT 1) AS one LEFT JOIN LATERAL (
                     SELECT "value", (EXTRACT(EPOCH FROM ("expiresAt" - {NOW_UTC})) * 1000)::float8 AS remaining
                     FROM {table} WHERE "key" = $1 AND "expiresAt" > {NOW_UTC}) AS e ON true"#
            ),
            set: [with_notify(&upsert, 4), with_notify(&fenced, 8)],
            delete: [tombstones.clone(), format!("{tombstones}, pg_notify($2, $3)")],
            has: format!(r#"SELECT EXISTS (SELECT 1 FROM {table} WHERE "key" = $1 AND "expiresAt" > {NOW_UTC})"#),
            // E'\\' is one backslash whatever `standard_conforming_strings` says.
            mark_and_delete_like: format!(
                r#"WITH m AS (INSERT INTO {table} ("id", "key", "value", "expiresAt", "updatedAt")
                              VALUES (gen_random_uuid()::text, $2, 'null'::jsonb, {NOW_UTC}, {NOW_UTC})
                              ON CONFLICT ("key") DO UPDATE SET "expiresAt" = EXCLUDED."expiresAt",
                                "updatedAt" = EXCLUDED."updatedAt"),
                        d AS (DELETE FROM {table} WHERE "key" LIKE $1 ESCAPE E'\\'
                              RETURNING "expiresAt" > {NOW_UTC} AS live)
                   SELECT count(*) FILTER (WHERE live) FROM d"#
            ),
            cleanup: format!(
                r#"WITH l AS (SELECT pg_try_advisory_xact_lock({ADVISORY_CLASS_CLEANUP}, hashtext($1)) AS ok),
                        d AS (DELETE FROM {table} WHERE "id" IN (
                              SELECT "id" FROM {table} WHERE (SELECT ok FROM l)
                                AND "expiresAt" <= {NOW_UTC} - $3::bigint * interval '1 millisecond'
                                AND "updatedAt" <= {NOW_UTC} - $3::bigint * interval '1 millisecond'
                              LIMIT $2)
                              RETURNING 1)
                   SELECT (SELECT ok FROM l), (SELECT count(*) FROM d)"#
            ),
            create: [
                format!(
                    r#"CREATE {unlogged}TABLE IF NOT EXISTS {table} ("id" TEXT NOT NULL, "key" TEXT NOT NULL,
                       "value" JSONB NOT NULL, "expiresAt" TIMESTAMP(3) NOT NULL,
                       "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, "updatedAt" TIMESTAMP(3) NOT NULL,
                       CONSTRAINT {pkey} PRIMARY KEY ("id"))"#,
                    pkey = quote(&format!("{}_pkey", config.table)),
                ),
                format!(
                    r#"CREATE UNIQUE INDEX IF NOT EXISTS {name} ON {table}("key")"#,
                    name = quote(&format!("{}_key_key", config.table)),
                ),
                format!(
                    r#"CREATE INDEX IF NOT EXISTS {name} ON {table}("expiresAt")"#,
                    name = quote(&format!("{}_expiresAt_idx", config.table)),
                ),
            ],
        }
    }
}

/// A string literal: any text is safe inside, whatever `standard_conforming_strings` says (an `E''` string, with
/// `\\` and `'` doubled).
pub(super) fn literal(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// A quoted identifier: any text is safe inside, `"` doubled.
pub fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn qualified(schema: Option<&str>, table: &str) -> String {
    match schema {
        Some(schema) => format!("{}.{}", quote(schema), quote(table)),
        None => quote(table),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote("cache_entries"), "\"cache_entries\"");
        assert_eq!(quote("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(qualified(Some("app"), "t"), "\"app\".\"t\"");
    }

    #[test]
    fn statements_use_the_configured_table() {
        let sql = Statements::new(&PostgresConfig { table: "my_cache".into(), ..Default::default() });
        assert!(sql.get.contains("FROM \"my_cache\""));
        assert!(sql.create[1].contains("\"my_cache_key_key\""));
        assert!(sql.set[0][1].contains("pg_notify($4, $5)"));
        assert!(sql.set[1][1].contains("pg_notify($8, $9)"));
    }
}
