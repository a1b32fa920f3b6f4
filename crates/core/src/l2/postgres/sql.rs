//! The Postgres L2's SQL, built once per table from its (quoted) name.

use super::{PostgresConfig, ADVISORY_CLASS_CLEANUP, NOW_US, NOW_UTC};

/// SQL text built once from the table name; sqlx prepares each statement once per connection.
pub(super) struct Statements {
    pub(super) table_name: String,
    /// Indexed by [the table has `staleUntil`].
    pub(super) get: [String; 2],
    /// Indexed by [the table has `staleUntil`][conditional][notifies].
    pub(super) set: [[[String; 2]; 2]; 2],
    /// Indexed by [the table has `staleUntil`][notifies].
    pub(super) delete: [[String; 2]; 2],
    pub(super) has: String,
    pub(super) mark_and_delete_like: String,
    /// Indexed by [the table has `staleUntil`].
    pub(super) cleanup: [String; 2],
    pub(super) create: [String; 3],
    pub(super) add_stale_column: String,
}

impl Statements {
    pub(super) fn new(config: &PostgresConfig) -> Self {
        let table = qualified(config.schema.as_deref(), &config.table);
        // A tombstone also ends any grace: its row must not outlive the fence window because of one.
        let tombstones = ["", r#", "staleUntil" = NULL"#].map(|end_grace| {
            format!(
                r#"WITH old AS (SELECT count(*) AS live FROM {table} WHERE "key" = ANY($1) AND "expiresAt" > {NOW_UTC}),
                        up AS (INSERT INTO {table} ("id", "key", "value", "expiresAt", "updatedAt")
                               SELECT gen_random_uuid()::text, k, 'null'::jsonb, {NOW_UTC}, {NOW_UTC}
                               FROM unnest($1::text[]) AS k
                               ON CONFLICT ("key") DO UPDATE SET "value" = 'null'::jsonb,
                                 "expiresAt" = EXCLUDED."expiresAt",
                                 "updatedAt" = EXCLUDED."updatedAt"{end_grace}
                               RETURNING 1)
                   SELECT (SELECT live FROM old), (SELECT count(*) FROM up)"#
            )
        });
        let unlogged = if config.unlogged { "UNLOGGED " } else { "" };
        Statements {
            table_name: table.clone(),
            // Without `staleUntil` the stale remainder reads 0: nothing is kept past the TTL.
            get: [
                get(&table, r#"0::float8"#, r#""expiresAt" > {NOW_UTC}"#),
                get(
                    &table,
                    r#"(EXTRACT(EPOCH FROM ("staleUntil" - {NOW_UTC})) * 1000)::float8"#,
                    // A tombstone or marker (`expiresAt` = `updatedAt`) is never stale, whatever `staleUntil` holds.
                    r#"("expiresAt" > {NOW_UTC} OR ("staleUntil" > {NOW_UTC} AND "expiresAt" > "updatedAt"))"#,
                ),
            ],
            set: [writes(&table, false), writes(&table, true)],
            delete: tombstones.map(|tombstones| {
                let notifying = format!("{tombstones}, pg_notify($2, $3)");
                [tombstones, notifying]
            }),
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
            cleanup: [r#""expiresAt""#, r#"coalesce("staleUntil", "expiresAt")"#].map(|kept_until| {
                format!(
                    r#"WITH l AS (SELECT pg_try_advisory_xact_lock({ADVISORY_CLASS_CLEANUP}, hashtext($1)) AS ok),
                            d AS (DELETE FROM {table} WHERE "id" IN (
                                  SELECT "id" FROM {table} WHERE (SELECT ok FROM l)
                                    AND {kept_until} <= {NOW_UTC} - $3::bigint * interval '1 millisecond'
                                    AND "updatedAt" <= {NOW_UTC} - $3::bigint * interval '1 millisecond'
                                  LIMIT $2)
                                  RETURNING 1)
                       SELECT (SELECT ok FROM l), (SELECT count(*) FROM d)"#
                )
            }),
            add_stale_column: format!(r#"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS "staleUntil" TIMESTAMP(3)"#),
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

/// The read of one key: the server time, the value, the ms of freshness left (negative once stale) and the ms of
/// grace left, from the row that `filter` keeps.
fn get(table: &str, stale_remaining: &str, filter: &str) -> String {
    let filter = filter.replace("{NOW_UTC}", NOW_UTC);
    let stale_remaining = stale_remaining.replace("{NOW_UTC}", NOW_UTC);
    format!(
        r#"SELECT {NOW_US}, e."value"::text, e.remaining, e.stale_remaining FROM (SELECT 1) AS one LEFT JOIN LATERAL (
             SELECT "value", (EXTRACT(EPOCH FROM ("expiresAt" - {NOW_UTC})) * 1000)::float8 AS remaining,
                    {stale_remaining} AS stale_remaining
             FROM {table} WHERE "key" = $1 AND {filter}) AS e ON true"#
    )
}

/// The writes, indexed by [conditional][notifies]. Parameters: $1 key, $2 JSON, $3 TTL ms, then $4 grace ms when
/// the table has `staleUntil`; a fenced write then takes the load's start (µs), the fence window (µs), the
/// namespace marker's key and the load's start (ms, rounded down: `updatedAt` keeps milliseconds, rounded, so a
/// change in the same millisecond refuses); a notifying one ends with the channel and the payload.
fn writes(table: &str, stale_column: bool) -> [[String; 2]; 2] {
    let expires = format!("{NOW_UTC} + $3::bigint * interval '1 millisecond'");
    let (stale_col, stale_value, stale_update, first_fence) = if stale_column {
        (
            r#", "staleUntil""#,
            format!(
                ", CASE WHEN $4::bigint > 0 THEN {NOW_UTC} + ($3::bigint + $4::bigint) * interval '1 millisecond' END"
            ),
            r#", "staleUntil" = EXCLUDED."staleUntil""#,
            5,
        )
    } else {
        ("", String::new(), "", 4)
    };
    let update = format!(
        r#"SET "value" = EXCLUDED."value", "expiresAt" = EXCLUDED."expiresAt", "updatedAt" = EXCLUDED."updatedAt"{stale_update}"#
    );
    let upsert = format!(
        r#"INSERT INTO {table} AS e ("id", "key", "value", "expiresAt", "updatedAt"{stale_col})
           VALUES (gen_random_uuid()::text, $1, $2::jsonb, {expires}, {NOW_UTC}{stale_value})
           ON CONFLICT ("key") DO UPDATE {update} RETURNING 1"#
    );
    let [since_us, window_us, marker, since_ms] = [0, 1, 2, 3].map(|i| format!("${}", first_fence + i));
    let fenced = format!(
        r#"INSERT INTO {table} AS e ("id", "key", "value", "expiresAt", "updatedAt"{stale_col})
           SELECT gen_random_uuid()::text, $1, $2::jsonb, {expires}, {NOW_UTC}{stale_value}
           WHERE {NOW_US} - {since_us}::int8 <= {window_us}::int8 AND NOT EXISTS (
             SELECT 1 FROM {table} WHERE "key" = {marker} AND extract(epoch FROM "updatedAt") * 1000 >= {since_ms}::int8)
           ON CONFLICT ("key") DO UPDATE {update} WHERE extract(epoch FROM e."updatedAt") * 1000 < {since_ms}::int8
           RETURNING 1"#
    );
    let with_notify = |write: &str, channel: usize| {
        [
            format!("WITH up AS ({write}) SELECT 1 FROM up"),
            format!("WITH up AS ({write}) SELECT pg_notify(${channel}, ${}) FROM up", channel + 1),
        ]
    };
    [with_notify(&upsert, first_fence), with_notify(&fenced, first_fence + 4)]
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
        assert!(sql.get[0].contains("FROM \"my_cache\""));
        assert!(sql.create[1].contains("\"my_cache_key_key\""));
        assert!(sql.set[0][0][1].contains("pg_notify($4, $5)"));
        assert!(sql.set[0][1][1].contains("pg_notify($8, $9)"));
        assert!(sql.set[1][0][1].contains("pg_notify($5, $6)"));
        assert!(sql.set[1][1][1].contains("pg_notify($9, $10)"));
        assert!(!sql.set[0][1][0].contains("staleUntil") && sql.set[1][1][0].contains("staleUntil"));
    }
}
