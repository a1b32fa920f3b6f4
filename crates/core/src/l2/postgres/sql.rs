//! The Postgres L2's SQL, built once per table from its (quoted) name.

use super::{PostgresConfig, ADVISORY_CLASS_CLEANUP, NOW_US, NOW_UTC};

/// SQL text built once from the table name; sqlx prepares each statement once per connection. "Extended" means the
/// table has the columns of grace and tags (`staleUntil`, `tags`) and its tag table exists.
pub(super) struct Statements {
    pub(super) table_name: String,
    /// Indexed by [many][extended]: one key ($1 text), or a batch ($1 text[]) answered in its order.
    pub(super) get: [[String; 2]; 2],
    /// Unconditional batch writes, indexed by [extended][notifies].
    pub(super) set_many: [[String; 2]; 2],
    /// Indexed by [extended][conditional][notifies].
    pub(super) set: [[[String; 2]; 2]; 2],
    /// Indexed by [extended][notifies].
    pub(super) delete: [[String; 2]; 2],
    pub(super) mark_and_delete_like: String,
    /// Indexed by [extended].
    pub(super) cleanup: [String; 2],
    pub(super) cleanup_tags: String,
    pub(super) create: [String; 3],
    /// Adds `staleUntil`, the tag table and, last (it marks the extension as done), `tags`.
    pub(super) extend: [String; 4],
    /// Indexed by [soft].
    pub(super) invalidate_tags: [String; 2],
    pub(super) tag_times: String,
}

impl Statements {
    pub(super) fn new(config: &PostgresConfig) -> Self {
        let table = qualified(config.schema.as_deref(), &config.table);
        let tags_table = qualified(config.schema.as_deref(), &format!("{}_tags", config.table));
        // A tombstone also ends any grace and tags: its row must not outlive the fence window because of one.
        let tombstones = ["", r#", "staleUntil" = NULL, "tags" = NULL"#].map(|end_extension| {
            format!(
                r#"WITH old AS (SELECT count(*) AS live FROM {table} WHERE "key" = ANY($1) AND "expiresAt" > {NOW_UTC}),
                        up AS (INSERT INTO {table} ("id", "key", "value", "expiresAt", "updatedAt")
                               SELECT gen_random_uuid()::text, k, 'null'::jsonb, {NOW_UTC}, {NOW_UTC}
                               FROM unnest($1::text[]) AS k
                               ON CONFLICT ("key") DO UPDATE SET "value" = 'null'::jsonb,
                                 "expiresAt" = EXCLUDED."expiresAt",
                                 "updatedAt" = EXCLUDED."updatedAt"{end_extension}
                               RETURNING 1)
                   SELECT (SELECT live FROM old), (SELECT count(*) FROM up)"#
            )
        });
        let unlogged = if config.unlogged { "UNLOGGED " } else { "" };
        let tag_time = |column: &str| format!(r#"coalesce((extract(epoch FROM t."{column}") * 1000000)::int8, 0)"#);
        let (hard, soft) = (tag_time("hardAt"), tag_time("softAt"));
        Statements {
            table_name: table.clone(),
            get: [ONE_KEY, MANY_KEYS].map(|keys| {
                [
                    // Without the extension nothing is kept past the TTL and nothing is tagged.
                    get(
                        &table,
                        keys,
                        "0::float8",
                        "NULL::text[]",
                        "NULL::text",
                        &format!(r#""expiresAt" > {NOW_UTC}"#),
                    ),
                    get(
                        &table,
                        keys,
                        &format!(r#"(EXTRACT(EPOCH FROM ("staleUntil" - {NOW_UTC})) * 1000)::float8"#),
                        r#"c."tags""#,
                        &format!(
                            r#"(SELECT json_agg(json_build_array(t."tag", {hard}, {soft}))::text FROM {tags_table} AS t
                                 WHERE t."namespace" = $2 AND t."tag" = ANY(c."tags"))"#
                        ),
                        // A tombstone or marker (`expiresAt` = `updatedAt`) is never stale, whatever `staleUntil` holds.
                        &format!(
                            r#"("expiresAt" > {NOW_UTC} OR ("staleUntil" > {NOW_UTC} AND "expiresAt" > "updatedAt"))"#
                        ),
                    ),
                ]
            }),
            set: [writes(&table, None), writes(&table, Some(&tags_table))],
            set_many: [false, true].map(|extended| set_many(&table, extended)),
            delete: tombstones.map(|tombstones| {
                let notifying = format!("{tombstones}, pg_notify($2, $3)");
                [tombstones, notifying]
            }),
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
            cleanup_tags: format!(r#"DELETE FROM {tags_table} WHERE "expiresAt" <= {NOW_UTC}"#),
            extend: [
                format!(r#"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS "staleUntil" TIMESTAMP(3)"#),
                format!(
                    r#"CREATE TABLE IF NOT EXISTS {tags_table} ("namespace" TEXT NOT NULL, "tag" TEXT NOT NULL,
                       "hardAt" TIMESTAMP(3), "softAt" TIMESTAMP(3), "expiresAt" TIMESTAMP(3) NOT NULL,
                       PRIMARY KEY ("namespace", "tag"))"#
                ),
                format!(
                    r#"CREATE INDEX IF NOT EXISTS {name} ON {tags_table}("expiresAt")"#,
                    name = quote(&format!("{}_tags_expiresAt_idx", config.table)),
                ),
                format!(r#"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS "tags" TEXT[]"#),
            ],
            // The time returned is the one stored: both round `now()` to the millisecond alike.
            invalidate_tags: ["hardAt", "softAt"].map(|column| {
                format!(
                    r#"WITH up AS (INSERT INTO {tags_table} ("namespace", "tag", "{column}", "expiresAt")
                                   SELECT $1, t, {NOW_UTC}, {NOW_UTC} + $3::bigint * interval '1 millisecond'
                                   FROM unnest($2::text[]) AS t
                                   ON CONFLICT ("namespace", "tag") DO UPDATE
                                   SET "{column}" = EXCLUDED."{column}", "expiresAt" = EXCLUDED."expiresAt"
                                   RETURNING 1)
                       SELECT (extract(epoch FROM {NOW_UTC}::timestamp(3)) * 1000000)::int8, (SELECT count(*) FROM up)"#
                )
            }),
            tag_times: format!(
                r#"SELECT {hard}, {soft} FROM unnest($2::text[]) WITH ORDINALITY AS u(tag, i)
                   LEFT JOIN {tags_table} AS t ON t."namespace" = $1 AND t."tag" = u.tag ORDER BY u.i"#
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

/// The key source of a read of one key.
const ONE_KEY: &str = r#"(SELECT $1::text AS "key", 1::int8 AS i) AS k"#;
/// The key source of a batch read, numbered in the array's order.
const MANY_KEYS: &str = r#"unnest($1::text[]) WITH ORDINALITY AS k("key", i)"#;

/// The read of the keys of `keys` ([`ONE_KEY`] or [`MANY_KEYS`]; $2 their namespace when extended), one row per key
/// in their order: the server time, the value, the ms of freshness left (negative once stale), the ms of grace left,
/// when it was written (µs), its tags and the records of its tags (a JSON array of `[tag, hard µs, soft µs]`), from
/// the row that `filter` keeps (all `NULL` but the time when there is none).
fn get(table: &str, keys: &str, stale_remaining: &str, tags: &str, tag_times: &str, filter: &str) -> String {
    format!(
        r#"SELECT {NOW_US}, e."value"::text, e.remaining, e.stale_remaining, e.written_us, e.tags, e.tag_times
           FROM {keys} LEFT JOIN LATERAL (
             SELECT c."value", (EXTRACT(EPOCH FROM ("expiresAt" - {NOW_UTC})) * 1000)::float8 AS remaining,
                    {stale_remaining} AS stale_remaining,
                    (extract(epoch FROM c."updatedAt") * 1000000)::int8 AS written_us,
                    {tags} AS tags, {tag_times} AS tag_times
             FROM {table} AS c WHERE c."key" = k."key" AND {filter}) AS e ON true
           ORDER BY k.i"#
    )
}

/// What an upsert sets on a key already there; `extended` with the columns of grace and tags.
fn on_conflict_update(extended: bool) -> String {
    let extra = if extended { r#", "staleUntil" = EXCLUDED."staleUntil", "tags" = EXCLUDED."tags""# } else { "" };
    format!(
        r#"SET "value" = EXCLUDED."value", "expiresAt" = EXCLUDED."expiresAt", "updatedAt" = EXCLUDED."updatedAt"{extra}"#
    )
}

/// The unconditional write of a batch in one statement, indexed by [notifies]: $1 keys, $2 JSON texts, $3 TTLs in
/// ms; when `extended`, $4 graces in ms and $5 tags, each a JSON array or `NULL` (a `text[][]` must be rectangular).
/// Returns the writes' time (µs, from `updatedAt`: one statement, one `now()`); a notifying one ends with the
/// channel and the payload, notified once.
fn set_many(table: &str, extended: bool) -> [String; 2] {
    let (columns, values, arrays, names) = if extended {
        (
            r#", "staleUntil", "tags""#,
            format!(
                ", CASE WHEN u.grace > 0 THEN {NOW_UTC} + (u.ttl + u.grace) * interval '1 millisecond' END, \
                 CASE WHEN u.tags IS NOT NULL THEN ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)) END"
            ),
            ", $4::int8[], $5::text[]",
            ", grace, tags",
        )
    } else {
        ("", String::new(), "", "")
    };
    let update = on_conflict_update(extended);
    let write = format!(
        r#"INSERT INTO {table} AS e ("id", "key", "value", "expiresAt", "updatedAt"{columns})
           SELECT gen_random_uuid()::text, u.k, u.v::jsonb, {NOW_UTC} + u.ttl * interval '1 millisecond', {NOW_UTC}{values}
           FROM unnest($1::text[], $2::text[], $3::int8[]{arrays}) AS u(k, v, ttl{names})
           ON CONFLICT ("key") DO UPDATE {update}
           RETURNING (extract(epoch FROM "updatedAt") * 1000000)::int8 AS at"#
    );
    let channel = if extended { 6 } else { 4 };
    [
        format!("WITH up AS ({write}) SELECT (SELECT max(at) FROM up)"),
        format!("WITH up AS ({write}) SELECT (SELECT max(at) FROM up), pg_notify(${channel}, ${})", channel + 1),
    ]
}

/// The writes, indexed by [conditional][notifies], each returning the write's time (µs, from `updatedAt`).
/// Parameters: $1 key, $2 JSON, $3 TTL ms; when extended (`tags_table`), $4 grace ms and $5 tags (or `NULL`). A
/// fenced write then takes the load's start (µs), the fence window (µs), the namespace marker's key and the load's
/// start (ms, rounded down: `updatedAt` keeps milliseconds, rounded, so a change in the same millisecond refuses),
/// and when extended the namespace, to refuse a write whose tags were invalidated since; a notifying one ends with
/// the channel and the payload.
fn writes(table: &str, tags_table: Option<&str>) -> [[String; 2]; 2] {
    let expires = format!("{NOW_UTC} + $3::bigint * interval '1 millisecond'");
    let first_fence = if tags_table.is_some() { 6 } else { 4 };
    let [since_us, window_us, marker, since_ms, namespace] = [0, 1, 2, 3, 4].map(|i| format!("${}", first_fence + i));
    let (extra_cols, extra_values, tag_fence, fence_params) = match tags_table {
        Some(tags_table) => (
            r#", "staleUntil", "tags""#,
            format!(
                ", CASE WHEN $4::bigint > 0 THEN {NOW_UTC} + ($3::bigint + $4::bigint) * interval '1 millisecond' END, \
                 $5::text[]"
            ),
            format!(
                r#" AND NOT EXISTS (SELECT 1 FROM {tags_table} AS t WHERE t."namespace" = {namespace}
                     AND t."tag" = ANY($5::text[])
                     AND extract(epoch FROM greatest(t."hardAt", t."softAt")) * 1000 >= {since_ms}::int8)"#
            ),
            5,
        ),
        None => ("", String::new(), String::new(), 4),
    };
    let update = on_conflict_update(tags_table.is_some());
    let returning = r#"RETURNING (extract(epoch FROM "updatedAt") * 1000000)::int8 AS at"#;
    let upsert = format!(
        r#"INSERT INTO {table} AS e ("id", "key", "value", "expiresAt", "updatedAt"{extra_cols})
           VALUES (gen_random_uuid()::text, $1, $2::jsonb, {expires}, {NOW_UTC}{extra_values})
           ON CONFLICT ("key") DO UPDATE {update} {returning}"#
    );
    let fenced = format!(
        r#"INSERT INTO {table} AS e ("id", "key", "value", "expiresAt", "updatedAt"{extra_cols})
           SELECT gen_random_uuid()::text, $1, $2::jsonb, {expires}, {NOW_UTC}{extra_values}
           WHERE {NOW_US} - {since_us}::int8 <= {window_us}::int8 AND NOT EXISTS (
             SELECT 1 FROM {table} WHERE "key" = {marker} AND extract(epoch FROM "updatedAt") * 1000 >= {since_ms}::int8)
             {tag_fence}
           ON CONFLICT ("key") DO UPDATE {update} WHERE extract(epoch FROM e."updatedAt") * 1000 < {since_ms}::int8
           {returning}"#
    );
    let with_notify = |write: &str, channel: usize| {
        [
            format!("WITH up AS ({write}) SELECT at FROM up"),
            format!("WITH up AS ({write}) SELECT at, pg_notify(${channel}, ${}) FROM up", channel + 1),
        ]
    };
    [with_notify(&upsert, first_fence), with_notify(&fenced, first_fence + fence_params)]
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
        assert!(sql.get[0][0].contains("FROM \"my_cache\""));
        assert!(sql.get[1][1].contains("FROM \"my_cache_tags\"") && sql.get[1][1].contains("unnest($1::text[])"));
        assert!(sql.set_many[1][1].contains("pg_notify($6, $7)") && sql.set_many[0][1].contains("pg_notify($4, $5)"));
        assert!(sql.create[1].contains("\"my_cache_key_key\""));
        assert!(sql.set[0][0][1].contains("pg_notify($4, $5)"));
        assert!(sql.set[0][1][1].contains("pg_notify($8, $9)"));
        assert!(sql.set[1][0][1].contains("pg_notify($6, $7)"));
        assert!(sql.set[1][1][1].contains("pg_notify($11, $12)") && sql.set[1][1][1].contains("\"namespace\" = $10"));
        assert!(!sql.set[0][1][0].contains("staleUntil") && sql.set[1][1][0].contains("staleUntil"));
    }
}
