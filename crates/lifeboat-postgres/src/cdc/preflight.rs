//! `lifeboat cdc check`: what a server must allow before lifeboat creates a publication and
//! a slot on it, each problem with its fix. Nothing here changes the server except
//! [`fix`], which sets `REPLICA IDENTITY FULL` on the tables that need it and installs the
//! DDL event trigger, when asked to.

use serde::Serialize;
use tokio_postgres::Client;

use crate::{PgError, Target};

/// One thing checked.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// A problem that stops capture (others are warnings).
    pub blocking: bool,
    pub detail: String,
    /// What to do about it, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &str, ok: bool, blocking: bool, detail: String, fix: Option<String>) -> Self {
        Self {
            name: name.into(),
            ok,
            blocking,
            detail,
            fix: (!ok).then_some(fix).flatten(),
        }
    }
}

/// The name of the event trigger (and its function) that sends DDL into the stream.
pub const DDL_TRIGGER: &str = "lifeboat_cdc_ddl";
/// The prefix of the logical messages carrying DDL.
pub const DDL_PREFIX: &str = "lifeboat.ddl";
/// The prefix of the logical messages carrying sequence values.
pub const SEQ_PREFIX: &str = "lifeboat.seq";

/// Tables whose UPDATE and DELETE a publication would make fail: no primary key and no
/// replica identity (`schema.table`, quoted for SQL).
pub async fn tables_without_identity(client: &Client) -> Result<Vec<String>, PgError> {
    let rows = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_%'
               AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = c.oid
                               AND e.classid = 'pg_class'::regclass AND e.deptype = 'e')
               AND (c.relreplident = 'n'
                    OR (c.relreplident = 'd' AND NOT EXISTS (
                          SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
                    OR (c.relreplident = 'i' AND NOT EXISTS (
                          SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)))
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(PgError::query("list tables without a replica identity"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The answer of a `SELECT EXISTS (…)` about one name.
async fn exists(c: &Client, sql: &str, name: &str, what: &str) -> Result<bool, PgError> {
    Ok(c.query_one(sql, &[&name])
        .await
        .map_err(PgError::query(what))?
        .get(0))
}

/// Every check, in order.
pub async fn run(target: &Target, slot: &str) -> Result<Vec<Check>, PgError> {
    let c = target.connect().await?;
    let one = |sql: &'static str| {
        let c = &c;
        async move {
            c.query_one(sql, &[])
                .await
                .map_err(PgError::query("read the server's settings"))
        }
    };
    let mut out = Vec::new();
    let level: String = one("SELECT current_setting('wal_level')").await?.get(0);
    out.push(Check::new(
        "wal_level",
        level == "logical",
        true,
        format!("`wal_level` is `{level}`"),
        Some("set `wal_level = logical` and restart the server (RDS: parameter `rds.logical_replication = 1` and a reboot; Neon: enable logical replication in the project settings; Supabase: already logical)".into()),
    ));
    let role = one("SELECT r.rolsuper OR r.rolreplication
                OR pg_has_role(current_user, 'rds_replication', 'member') IS TRUE,
                r.rolsuper, current_user::text
         FROM pg_roles r WHERE r.rolname = current_user")
    .await
    .or(one(
        "SELECT r.rolsuper OR r.rolreplication, r.rolsuper, current_user::text
         FROM pg_roles r WHERE r.rolname = current_user",
    )
    .await)?;
    let (may_replicate, superuser, user): (bool, bool, String) =
        (role.get(0), role.get(1), role.get(2));
    out.push(Check::new(
        "replication privilege",
        may_replicate,
        true,
        format!(
            "role `{user}` {} stream changes",
            if may_replicate { "may" } else { "may not" }
        ),
        Some(format!("`ALTER ROLE {user} REPLICATION` (RDS: `GRANT rds_replication TO {user}`; Supabase: use the `postgres` role on the direct connection, not the pooler)")),
    ));
    let slots = one("SELECT current_setting('max_replication_slots')::int,
                (SELECT count(*)::int FROM pg_replication_slots),
                current_setting('max_slot_wal_keep_size')")
    .await?;
    let (max, used, keep): (i32, i32, String) = (slots.get(0), slots.get(1), slots.get(2));
    let ours = exists(
        &c,
        "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
        slot,
        "look for the slot",
    )
    .await?;
    // The slot itself (unless it exists) and a temporary one for each baseline.
    let needed = if ours { 1 } else { 2 };
    out.push(Check::new(
        "replication slots",
        max - used >= needed,
        true,
        format!("{used} of `max_replication_slots` {max} in use{}", if ours { format!(", `{slot}` among them") } else { String::new() }),
        Some(format!("raise `max_replication_slots` to at least {} and restart, or drop unused slots (`SELECT pg_drop_replication_slot(name)`)", used + needed)),
    ));
    out.push(Check::new(
        "max_slot_wal_keep_size",
        keep != "-1",
        false,
        format!("`max_slot_wal_keep_size` is `{keep}`"),
        Some("set it (e.g. `10GB`): without it a slot nobody reads keeps WAL until the disk is full; with it the slot is lost instead, which lifeboat records as a gap".into()),
    ));
    let bare = tables_without_identity(&c).await?;
    out.push(Check::new(
        "replica identity",
        bare.is_empty(),
        true,
        if bare.is_empty() {
            "every table has a primary key or a replica identity".into()
        } else {
            format!(
                "{} table(s) have neither a primary key nor a replica identity: {} — a publication would make their UPDATE and DELETE fail on this server",
                bare.len(),
                bare.join(", ")
            )
        },
        Some(format!(
            "give each a primary key, or run `lifeboat cdc check TARGET --fix` to set `REPLICA IDENTITY FULL` on them ({})",
            bare.iter().map(|t| format!("ALTER TABLE {t} REPLICA IDENTITY FULL")).collect::<Vec<_>>().join("; ")
        )),
    ));
    let trigger = exists(
        &c,
        "SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = $1 AND evtenabled <> 'D')",
        DDL_TRIGGER,
        "look for the DDL trigger",
    )
    .await?;
    out.push(Check::new(
        "DDL capture",
        trigger,
        false,
        if trigger {
            format!("event trigger `{DDL_TRIGGER}` sends schema changes into the stream")
        } else if superuser {
            "no event trigger sends schema changes into the stream: each one then costs a short gap and a new baseline".into()
        } else {
            format!("no event trigger sends schema changes into the stream (each one then costs a short gap and a new baseline), and role `{user}` may not create one")
        },
        Some(if superuser {
            "run `lifeboat cdc check TARGET --fix` to install it".into()
        } else {
            "a superuser (RDS: `rds_superuser`) runs `lifeboat cdc check TARGET --fix` once; until then take a new baseline (`lifeboat backup TARGET`) after each schema change".into()
        }),
    ));
    Ok(out)
}

/// What a look at the tables' shape found: the WAL position and the server's time read
/// before it (a schema change committed before them shows in the hash), and the hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    pub lsn: u64,
    pub at: jiff::Timestamp,
    pub hash: String,
}

/// The shape of every user table — schema, name, columns with their types and `NOT NULL`,
/// constraints, and the labels of enum types — as one hash. `None` while the DDL event
/// trigger sends schema changes into the stream (then they replay where they happened
/// and nothing needs watching).
pub async fn schema_shape(client: &Client) -> Result<Option<Shape>, PgError> {
    let trigger = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = $1 AND evtenabled <> 'D')",
            &[&DDL_TRIGGER],
        )
        .await
        .map_err(PgError::query("look for the DDL trigger"))?;
    if trigger.get::<_, bool>(0) {
        return Ok(None);
    }
    let at = client
        .query_one(
            "SELECT pg_current_wal_insert_lsn()::text,
                    (extract(epoch FROM clock_timestamp()) * 1000000)::int8",
            &[],
        )
        .await
        .map_err(PgError::query("read the WAL position"))?;
    let hash: String = client
        .query_one(
            "WITH t AS (
               SELECT c.oid, n.nspname, c.relname FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
                 AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'lifeboat_cdc')
                 AND n.nspname NOT LIKE 'pg\\_%')
             SELECT md5(coalesce(string_agg(x, ',' ORDER BY x), '')) FROM (
               SELECT format('%s|%I.%I|%s|%s|%s', t.oid, t.nspname, t.relname, a.attname,
                             format_type(a.atttypid, a.atttypmod), a.attnotnull) AS x
               FROM t JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
               UNION ALL
               SELECT format('%s|%s|%s', t.oid, co.conname, pg_get_constraintdef(co.oid))
               FROM t JOIN pg_constraint co ON co.conrelid = t.oid
               UNION ALL
               SELECT format('enum|%s|%s|%s', e.enumtypid, e.enumsortorder, e.enumlabel) FROM pg_enum e
             ) s",
            &[],
        )
        .await
        .map_err(PgError::query("read the tables' shape"))?
        .get(0);
    let lsn = crate::cdc::stream::lsn(&at.get::<_, String>(0)).unwrap_or(0);
    let at =
        jiff::Timestamp::from_microsecond(at.get(1)).unwrap_or_else(|_| jiff::Timestamp::now());
    Ok(Some(Shape { lsn, at, hash }))
}

/// Set `REPLICA IDENTITY FULL` on every table that needs it, and install the DDL event
/// trigger; what was done, one line each.
pub async fn fix(target: &Target) -> Result<Vec<String>, PgError> {
    let c = target.connect().await?;
    let mut done = Vec::new();
    for t in tables_without_identity(&c).await? {
        c.batch_execute(&format!("ALTER TABLE {t} REPLICA IDENTITY FULL"))
            .await
            .map_err(PgError::query(format!("set the replica identity of {t}")))?;
        done.push(format!("`ALTER TABLE {t} REPLICA IDENTITY FULL`"));
    }
    let installed = exists(
        &c,
        "SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = $1)",
        DDL_TRIGGER,
        "look for the DDL trigger",
    )
    .await?;
    // SECURITY DEFINER: whoever runs DDL may send the message, granted or not. Every name
    // in it is schema-qualified (no `SET search_path`, which would hide the caller's).
    c.batch_execute(&format!(
        "CREATE OR REPLACE FUNCTION public.{DDL_TRIGGER}() RETURNS event_trigger
           LANGUAGE plpgsql SECURITY DEFINER AS $f$
         BEGIN
           PERFORM pg_catalog.pg_logical_emit_message(true, '{DDL_PREFIX}',
             pg_catalog.json_build_object(
               'tag', tg_tag,
               'query', pg_catalog.current_query(),
               'search_path', pg_catalog.current_setting('search_path'))::pg_catalog.text);
         END $f$"
    ))
    .await
    .map_err(PgError::query("install the DDL event trigger's function"))?;
    if !installed {
        c.batch_execute(&format!(
            "CREATE EVENT TRIGGER {DDL_TRIGGER} ON ddl_command_end
               EXECUTE FUNCTION public.{DDL_TRIGGER}()"
        ))
        .await
        .map_err(PgError::query("install the DDL event trigger"))?;
        done.push(format!(
            "event trigger `{DDL_TRIGGER}`: schema changes go into the stream as logical messages"
        ));
    }
    Ok(done)
}

/// Create the publication (all tables) and the slot if missing; refused while a table would
/// break. Returns what was created.
pub async fn ensure_slot(
    target: &Target,
    slot: &str,
    publication: &str,
) -> Result<Vec<String>, PgError> {
    let c = target.connect().await?;
    let mut made = Vec::new();
    let has_pub = exists(
        &c,
        "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
        publication,
        "look for the publication",
    )
    .await?;
    if !has_pub {
        let bare = tables_without_identity(&c).await?;
        if !bare.is_empty() {
            return Err(PgError::Io(format!(
                "refusing to create publication `{publication}`: {} table(s) have neither a primary key nor a replica identity ({}), and a publication would make their UPDATE and DELETE fail; run `lifeboat cdc check` for the fix",
                bare.len(),
                bare.join(", ")
            )));
        }
        c.batch_execute(&format!("CREATE PUBLICATION {publication} FOR ALL TABLES"))
            .await
            .map_err(PgError::query(format!(
                "create publication `{publication}`"
            )))?;
        made.push(format!("publication `{publication}`"));
    }
    let has_slot = exists(
        &c,
        "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
        slot,
        "look for the slot",
    )
    .await?;
    if !has_slot {
        c.query_one(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .map_err(PgError::query(format!("create replication slot `{slot}`")))?;
        made.push(format!("replication slot `{slot}`"));
    }
    Ok(made)
}

/// Drop `slot` (an invalidated one: it can never stream again).
pub async fn drop_slot(target: &Target, slot: &str) -> Result<(), PgError> {
    let c = target.connect().await?;
    c.query_one("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .map_err(PgError::query(format!("drop replication slot `{slot}`")))?;
    Ok(())
}

/// A slot as the server sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlotState {
    /// A session streams it now.
    pub active: bool,
    /// `wal_status`: `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: String,
    /// WAL the slot keeps on the server's disk.
    pub retained_bytes: i64,
    /// WAL written since the position the slot was last told is stored.
    pub pending_bytes: i64,
}

/// The slot named `slot`, if it exists.
pub async fn slot_state(target: &Target, slot: &str) -> Result<Option<SlotState>, PgError> {
    let c = target.connect().await?;
    let row = c
        .query_opt(
            "SELECT active, coalesce(to_jsonb(s)->>'wal_status', ''),
                    coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint,
                    coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint
             FROM pg_replication_slots s WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(PgError::query("read the slot"))?;
    Ok(row.map(|r| SlotState {
        active: r.get(0),
        wal_status: r.get(1),
        retained_bytes: r.get(2),
        pending_bytes: r.get(3),
    }))
}
