//! End to end: logical PostgreSQL backup and restore through the `lifeboat` binary,
//! against real throwaway clusters.

use lifeboat_testkit::{Cluster, Workspace, postgres, postgres_target, terminate};

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

fn database_exists(pg: &Cluster, name: &str) -> bool {
    pg.psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    )
    .unwrap()
        != "0"
}

const APP: &str = "
CREATE SCHEMA billing;
CREATE TABLE users (id bigserial PRIMARY KEY, email text UNIQUE NOT NULL);
CREATE TABLE images (id bigserial PRIMARY KEY, user_id bigint REFERENCES users(id), url text);
CREATE INDEX images_user_idx ON images(user_id);
CREATE TABLE billing.ledger (id bigserial PRIMARY KEY, user_id bigint, amount int);
INSERT INTO users (email) SELECT 'u' || i || '@example.com' FROM generate_series(1, 500) i;
INSERT INTO images (user_id, url) SELECT 1 + i % 500, md5(i::text) FROM generate_series(1, 1500) i;
INSERT INTO billing.ledger (user_id, amount) SELECT 1 + i % 500, i % 97 FROM generate_series(1, 3000) i;
";

/// A content fingerprint of the app's tables.
const FINGERPRINT: &str = "SELECT md5(string_agg(x, ',' ORDER BY x)) FROM (
    SELECT 'u' || id || email AS x FROM users
    UNION ALL SELECT 'i' || id || user_id || url FROM images
    UNION ALL SELECT 'l' || id || user_id || amount FROM billing.ledger) t";

fn setup() -> (Cluster, Workspace) {
    let pg = postgres();
    pg.psql("postgres", "CREATE DATABASE app").unwrap();
    pg.psql("app", APP).unwrap();
    let ws = Workspace::new(BIN);
    ws.write_config(&format!(
        "[retention]\nkeep-last = 10\n\n{}",
        postgres_target("app", &pg.url("app"))
    ));
    ws.run(&["init"]).expect_code(0);
    (pg, ws)
}

#[test]
fn backup_then_restore_into_a_new_database_matches_exactly() {
    let (pg, ws) = setup();
    let before = pg.psql("app", FINGERPRINT).unwrap();
    let run = ws.run(&["backup", "--json"]);
    run.expect_code(0);
    let b = &run.json()["backups"][0];
    assert_eq!(b["target"], "app");
    assert_eq!(b["tables"], 3);
    assert_eq!(b["rows"], 5000);

    let snaps = ws.run(&["snapshots", "--json"]).json();
    let s = &snaps["snapshots"][0];
    assert_eq!(s["kind"], "logical");
    assert!(s["stored_bytes"].as_u64().unwrap() > 0);
    let m = &s["manifest"]["postgres"];
    assert_eq!(m["database"], "app");
    assert!(m["dump"]["bytes"].as_u64().unwrap() > 10_000);
    assert_eq!(m["dump"]["sha256"].as_str().unwrap().len(), 64);
    let ledger = m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["schema"] == "billing")
        .unwrap();
    assert_eq!(ledger["rows"], 3000);
    assert!(
        !s.to_string().contains(&pg.password),
        "password leaked into the manifest"
    );

    let to = pg.url("copy");
    let run = ws.run(&["restore", "app", "--to", &to]);
    run.expect_code(0);
    run.expect_stdout(&["verified: 3 table(s) match"], &[]);
    assert_eq!(pg.psql("copy", FINGERPRINT).unwrap(), before);
    assert!(!run.stdout.contains(&pg.password) && !run.stderr.contains(&pg.password));

    // A parallel restore gives the same database.
    let run = ws.run(&["restore", "app", "--to", &pg.url("copy2"), "--jobs", "2"]);
    run.expect_code(0);
    assert_eq!(pg.psql("copy2", FINGERPRINT).unwrap(), before);
}

#[test]
fn row_counts_are_taken_from_the_dump_and_equal_each_tables_rows() {
    // Rows are counted in the dump's data as it streams (no `count(*)` beside pg_dump):
    // values with escaped newlines, carriage returns, tabs and backslash-dot, a table with
    // no columns (its rows are empty lines), an empty table, a table in the middle of the
    // list, and a table of 120,000 rows. A parent in classic inheritance is counted by a
    // query beside the dump: its `count(*)`, as the restore verifies it, holds its
    // child's rows, and its data in the dump does not.
    let (pg, ws) = setup();
    pg.psql(
        "app",
        "CREATE TABLE a_tricky (v text);
         INSERT INTO a_tricky VALUES (E'one\\ntwo'), (E'\\\\.'), ('\\.'), (E'cr\\r'),
           (E'tab\\there'), (NULL), (''), (E'\\n');
         CREATE TABLE m_no_columns ();
         INSERT INTO m_no_columns SELECT FROM generate_series(1, 3);
         CREATE TABLE n_empty (id int);
         CREATE TABLE z_many (id int, note text);
         INSERT INTO z_many SELECT i, repeat('n', i % 50) FROM generate_series(1, 120000) i;
         CREATE TABLE p_parent (id int);
         CREATE TABLE p_child (extra text) INHERITS (p_parent);
         INSERT INTO p_parent VALUES (1), (2);
         INSERT INTO p_child VALUES (3, 'x'), (4, 'y'), (5, 'z');",
    )
    .unwrap();
    let run = ws.run(&["-vv", "backup", "--json"]);
    run.expect_code(0);
    run.expect_stderr(&["rows of 8 tables counted in the dump, 1 by a query"], &[]);
    assert_eq!(
        run.json()["backups"][0]["rows"],
        5000 + 8 + 3 + 120_000 + 5 + 3
    );
    let snaps = ws.run(&["snapshots", "--json"]).json();
    let tables = snaps["snapshots"][0]["manifest"]["postgres"]["tables"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(tables.len(), 9);
    for t in &tables {
        let (schema, name) = (t["schema"].as_str().unwrap(), t["name"].as_str().unwrap());
        let rows = pg
            .psql(
                "app",
                &format!("SELECT count(*) FROM \"{schema}\".\"{name}\""),
            )
            .unwrap();
        assert_eq!(t["rows"].to_string(), rows, "{schema}.{name}");
    }
    // The counts hold up against the restored copy.
    let run = ws.run(&["restore", "app", "--to", &pg.url("copy")]);
    run.expect_code(0);
    run.expect_stdout(&["verified: 9 table(s) match"], &[]);
}

#[test]
fn a_postgres_17_database_is_backed_up_with_its_layout_and_restored_in_parallel() {
    // pg_dump 17 writes archive version 1.16 (pg_dump 16: 1.15): its rows are counted in
    // the dump, its data blocks mapped, so a restore loads it in parallel streams. Its
    // large objects are created in the data section (`BLOB METADATA`): a large one, whose
    // data lands in another part than the first, must still be created before it is
    // filled (it was not: "large object 4242 does not exist").
    let pg = lifeboat_testkit::postgres17();
    pg.psql("postgres", "CREATE DATABASE app").unwrap();
    pg.psql("app", APP).unwrap();
    pg.psql(
        "app",
        "CREATE TABLE wide (id int PRIMARY KEY, payload text);
         INSERT INTO wide SELECT i, repeat(md5(i::text), 30) FROM generate_series(1, 45000) i;
         SELECT lo_from_bytea(4242, decode(repeat('ab', 30000000), 'hex'));",
    )
    .unwrap();
    let fingerprint = format!(
        "SELECT ({}) || (SELECT md5(string_agg(id || payload, ',' ORDER BY id)) FROM wide)
                || md5(lo_get(4242))",
        FINGERPRINT.trim()
    );
    let before = pg.psql("app", &fingerprint).unwrap();
    let ws = Workspace::new(BIN);
    ws.write_config(&format!(
        "{}pg-bin-dir = \"{}\"\n",
        postgres_target("app", &pg.url("app")),
        lifeboat_testkit::PG17_BIN
    ));
    ws.run(&["init"]).expect_code(0);
    let run = ws.run(&["-vv", "backup", "--json"]);
    run.expect_code(0);
    run.expect_stderr(&["rows of 4 tables counted in the dump, 0 by a query"], &[]);
    assert_eq!(run.json()["backups"][0]["rows"], 5000 + 45_000);
    let snaps = ws.run(&["snapshots", "--json"]).json();
    let m = &snaps["snapshots"][0]["manifest"]["postgres"];
    assert_eq!(
        m["server-version-num"].as_u64().unwrap() / 10_000,
        17,
        "{m}"
    );
    assert_eq!(
        m["layout"]["blocks"].as_array().map(Vec::len),
        Some(5),
        "{m}"
    );

    let run = ws.run(&[
        "-v",
        "restore",
        "app",
        "--to",
        &pg.url("copy"),
        "--jobs",
        "2",
        "--json",
    ]);
    run.expect_code(0);
    let out = run.json();
    assert_eq!(out["load"], "parallel-streams", "{out}");
    assert_eq!(out["verified"], true, "{out}");
    run.expect_stderr(&["(1 table(s) loaded in several parts)"], &[]);
    assert_eq!(pg.psql("copy", &fingerprint).unwrap(), before);
}

/// Large objects, an empty table, a sequence moved on, a materialized view: every kind of
/// entry in the data section, and one that is refreshed after it. And a table of 43 MB,
/// large enough to be loaded in several parts at once.
const EXTRAS: &str = "
CREATE SCHEMA archive;
CREATE TABLE archive.wide (id int, payload text);
INSERT INTO archive.wide SELECT i, repeat(md5(i::text), 30) FROM generate_series(1, 45000) i;
ALTER TABLE archive.wide ADD PRIMARY KEY (id);
COMMENT ON CONSTRAINT wide_pkey ON archive.wide IS 'one row per id';
CREATE INDEX wide_head ON archive.wide (left(payload, 8));
COMMENT ON INDEX archive.wide_head IS 'first eight';
CREATE TABLE wide_note (wide_id int REFERENCES archive.wide (id), note text);
INSERT INTO wide_note VALUES (7, 'seven');
CREATE TABLE empty_log (at timestamptz);
SELECT lo_from_bytea(424242, 'a large object');
SELECT setval('users_id_seq', 9000);
CREATE MATERIALIZED VIEW big_spenders AS SELECT user_id FROM billing.ledger GROUP BY user_id HAVING sum(amount) > 280;
";

const EXTRAS_FINGERPRINT: &str = "SELECT (SELECT encode(lo_get(424242), 'escape')) || '/' ||
    (SELECT last_value FROM users_id_seq) || '/' || (SELECT count(*) FROM big_spenders) || '/' ||
    (SELECT count(*) FROM empty_log) || '/' ||
    (SELECT md5(string_agg(id || payload, ',' ORDER BY id)) FROM archive.wide) || '/' ||
    (SELECT count(*) FROM pg_constraint WHERE conname IN ('images_user_id_fkey', 'users_email_key')) || '/' ||
    (SELECT count(*) FROM pg_indexes WHERE tablename = 'wide') || '/' ||
    (SELECT count(*) FROM pg_constraint WHERE conname = 'wide_note_wide_id_fkey') || '/' ||
    (SELECT obj_description(oid, 'pg_constraint') FROM pg_constraint WHERE conname = 'wide_pkey') || '/' ||
    obj_description('archive.wide_head'::regclass, 'pg_class')";

#[test]
fn a_parallel_restore_streams_the_tables_into_several_pg_restores_without_staging() {
    let (pg, ws) = setup();
    pg.psql("app", EXTRAS).unwrap();
    let before = (
        pg.psql("app", FINGERPRINT).unwrap(),
        pg.psql("app", EXTRAS_FINGERPRINT).unwrap(),
    );
    ws.run(&["backup"]).expect_code(0);

    // The manifest maps the dump: the TOC, then one block per table and one for the large
    // objects, back to back up to the end of the dump.
    let snaps = ws.run(&["snapshots", "--json"]).json();
    let m = &snaps["snapshots"][0]["manifest"]["postgres"];
    let layout = &m["layout"];
    let blocks = layout["blocks"].as_array().expect("a layout");
    assert_eq!(blocks.len(), 7, "{layout}");
    assert!(
        blocks
            .iter()
            .any(|b| b["cuts"].as_array().is_some_and(|c| c.len() == 2)),
        "row boundaries of the wide table: {layout}"
    );
    let mut next = layout["toc-bytes"].as_u64().unwrap();
    assert!(next > 1000, "{layout}");
    for b in blocks {
        assert_eq!(b["offset"].as_u64().unwrap(), next, "{layout}");
        next += b["bytes"].as_u64().unwrap();
    }
    assert_eq!(next, m["dump"]["bytes"].as_u64().unwrap());

    let copy = pg.url("copy");
    let restore_copy = |more: &[&str]| {
        let mut args = vec![
            "-v", "restore", "app", "--to", &copy, "--jobs", "2", "--json",
        ];
        args.extend_from_slice(more);
        ws.run(&args)
    };
    let run = restore_copy(&[]);
    run.expect_code(0);
    let out = run.json();
    assert_eq!(out["load"], "parallel-streams", "{out}");
    assert_eq!(out["verified"], true, "{out}");
    run.expect_stderr(&["(1 table(s) loaded in several parts)"], &[]);
    // The wide table's key and index are built as soon as its rows are in; the foreign key
    // that references it comes with the rest of the post-data section, and so do the
    // comments on the key and the index (the key is the first post-data entry: its schema
    // sorts first).
    assert!(
        run.stderr
            .contains("indexes and constraints of 1 large table(s) as soon as their rows are in"),
        "{}",
        run.stderr
    );
    assert!(
        out["plan"]["steps"].to_string().contains("nothing staged"),
        "{out}"
    );
    let after = (
        pg.psql("copy", FINGERPRINT).unwrap(),
        pg.psql("copy", EXTRAS_FINGERPRINT).unwrap(),
    );
    assert_eq!(after, before);
    // The extras were there to be compared: the object, the moved sequence, a non-empty
    // view, both constraints, the wide table's two indexes, the key referencing it and the
    // comments.
    let parts: Vec<&str> = before.1.split('/').collect();
    assert_eq!(parts[..2], ["a large object", "9000"], "{}", before.1);
    assert_ne!(parts[2], "0", "{}", before.1);
    assert_eq!(parts[3], "0", "{}", before.1);
    assert_eq!(
        parts[5..],
        ["2", "2", "1", "one row per id", "first eight"],
        "{}",
        before.1
    );

    // Over existing tables the restore is one transaction whatever `--jobs` says: several
    // jobs cannot share one, and only one leaves the old data whole if the load fails.
    let run = restore_copy(&["--force"]);
    run.expect_code(0);
    let out = run.json();
    assert_eq!(out["load"], "stream", "{out}");
    assert!(
        out["plan"]["steps"]
            .to_string()
            .contains("in one transaction"),
        "{out}"
    );
    assert_eq!(pg.psql("copy", EXTRAS_FINGERPRINT).unwrap(), before.1);

    // Regression (issue 17, point 6): a restore with `--jobs 2` over existing data that
    // fails part-way (the rows of `images` cannot load) leaves the old data intact; it used
    // to leave a half-restored database.
    pg.psql("copy", "UPDATE billing.ledger SET amount = amount + 1")
        .unwrap();
    let changed = pg.psql("copy", FINGERPRINT).unwrap();
    install_images_trigger(&pg, "copy", "RAISE EXCEPTION 'no rows for images here';");
    let run = restore_copy(&["--force"]);
    run.expect_code(1)
        .expect_stderr(&["no rows for images here", "rolled back"], &[]);
    assert_eq!(pg.psql("copy", FINGERPRINT).unwrap(), changed);

    // A stream that fails fails the restore: a destination that rejects the rows of one
    // table. An existing database is loaded in one transaction: nothing is left in it.
    images_trigger_database(&pg, "strict", "RAISE EXCEPTION 'no rows for images here';");
    let run = ws.run(&["restore", "app", "--to", &pg.url("strict"), "--jobs", "2"]);
    run.expect_code(1);
    run.expect_stderr(&["no rows for images here"], &[]);
    assert_eq!(
        pg.psql("strict", "SELECT count(*) FROM pg_tables WHERE schemaname <> 'pg_catalog' AND schemaname <> 'information_schema'")
            .unwrap(),
        "0"
    );

    // A new database is loaded in parallel streams (its share fails while the other share
    // loads), and dropped again when the load fails: every new database copies template1,
    // which here rejects the rows of `images`.
    install_images_trigger(
        &pg,
        "template1",
        "RAISE EXCEPTION 'no rows for images here';",
    );
    let run = ws.run(&["restore", "app", "--to", &pg.url("fresh"), "--jobs", "2"]);
    run.expect_code(1).expect_stderr(
        &[
            "no rows for images here",
            "database `fresh` was dropped again",
        ],
        &[],
    );
    assert!(!database_exists(&pg, "fresh"));
}

#[test]
fn restore_over_data_needs_force_and_takes_an_emergency_backup() {
    let (pg, ws) = setup();
    ws.run(&["backup"]).expect_code(0);
    let original = pg.psql("app", FINGERPRINT).unwrap();
    pg.psql(
        "app",
        "DROP TABLE images; UPDATE billing.ledger SET amount = -amount",
    )
    .unwrap();
    let broken = pg
        .psql("app", "SELECT sum(amount) FROM billing.ledger")
        .unwrap();

    // The dry run changes nothing.
    let run = ws.run(&["restore", "app", "--dry-run"]);
    run.expect_code(0);
    run.expect_stdout(&["emergency backup"], &[]);
    assert!(run.stdout.contains("nothing was changed"));
    assert_eq!(
        pg.psql("app", "SELECT sum(amount) FROM billing.ledger")
            .unwrap(),
        broken
    );

    // Without --force: refused, nothing changed.
    let run = ws.run(&["restore", "app"]);
    run.expect_code(1);
    run.expect_stderr(&["refusing to overwrite"], &[]);
    run.expect_stderr(&["hint:"], &[]);
    assert_eq!(
        pg.psql("app", "SELECT sum(amount) FROM billing.ledger")
            .unwrap(),
        broken
    );

    let run = ws.run(&["restore", "app", "--force"]);
    run.expect_code(0);
    run.expect_stdout(&["emergency backup: snapshot"], &[]);
    assert_eq!(pg.psql("app", FINGERPRINT).unwrap(), original);

    // The emergency snapshot holds the broken state and is never `latest`.
    let snaps = ws.run(&["snapshots", "--json"]).json();
    let list = snaps["snapshots"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let emergency = list.iter().find(|s| s["emergency"] == true).unwrap();
    assert_eq!(
        emergency["manifest"]["postgres"]["tables"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let id = emergency["id"].as_str().unwrap();
    ws.run(&[
        "restore",
        "app",
        "--snapshot",
        &id[..8],
        "--to",
        &pg.url("broken"),
    ])
    .expect_code(0);
    assert_eq!(
        pg.psql("broken", "SELECT sum(amount) FROM billing.ledger")
            .unwrap(),
        broken
    );
}

#[test]
fn one_table_is_restored_without_touching_the_others() {
    let (pg, ws) = setup();
    ws.run(&["backup"]).expect_code(0);
    pg.psql(
        "app",
        "DROP TABLE images; INSERT INTO users (email) VALUES ('late@example.com')",
    )
    .unwrap();
    restore_one_table(&pg, &ws, "app", "images", "1500");
    // The user added after the backup is still there.
    assert_eq!(pg.psql("app", "SELECT count(*) FROM users").unwrap(), "501");
    // Its index and foreign key came back with it.
    assert_eq!(
        pg.psql(
            "app",
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'images_user_idx'"
        )
        .unwrap(),
        "1"
    );
    assert_eq!(
        pg.psql(
            "app",
            "SELECT count(*) FROM pg_constraint WHERE conname = 'images_user_id_fkey'"
        )
        .unwrap(),
        "1"
    );
    // An existing table is not replaced without --force.
    let run = ws.run(&["restore", "app", "--table", "images"]);
    run.expect_code(1);
    run.expect_stderr(&["table `public.images` exists"], &[]);
    let run = ws.run(&["restore", "app", "--table", "nope"]);
    run.expect_code(1);
    run.expect_stderr(&["not in snapshot"], &[]);
}

/// `restore TARGET --table TABLE`: exit 0, no broken pipe, the row count verified and
/// `rows` rows there.
fn restore_one_table(pg: &Cluster, ws: &Workspace, target: &str, table: &str, rows: &str) {
    let run = ws.run(&["restore", target, "--table", table]);
    run.expect_code(0)
        .expect_stderr(&[], &["Broken pipe", "broken pipe"]);
    run.expect_stdout(&["verified: 1 table(s) match"], &[]);
    assert_eq!(
        pg.psql(target, &format!("SELECT count(*) FROM {table}"))
            .unwrap(),
        rows
    );
}

/// Regression (issue 17, point 1): `pg_restore -L` stops reading once it has the one table it
/// was asked for, and the rest of a dump larger than a pipe buffer met a closed pipe: the
/// restore exited 1 with "Broken pipe" after restoring the table, without verifying it. The
/// table here is the one whose data comes first in a dump of several MB (pg_dump writes
/// table data in name order: `credits` before `users`).
#[test]
fn one_table_whose_data_comes_first_in_a_large_dump_is_restored_and_verified() {
    let pg = postgres();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql(
        "shop",
        "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, bio text);
         CREATE TABLE credits (id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES users(id), amount int);
         INSERT INTO users SELECT i, 'u' || i || '@example.com', repeat(md5(i::text), 4) FROM generate_series(1, 30000) i;
         INSERT INTO credits SELECT i, 1 + i % 30000, i % 97 FROM generate_series(1, 10000) i;",
    )
    .unwrap();
    let ws = Workspace::new(BIN);
    ws.write_config(&postgres_target("shop", &pg.url("shop")));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["backup", "shop"]).expect_code(0);
    pg.psql("shop", "DROP TABLE credits").unwrap();

    restore_one_table(&pg, &ws, "shop", "credits", "10000");
    assert_eq!(
        pg.psql(
            "shop",
            "SELECT count(*) FROM pg_constraint WHERE conname = 'credits_user_id_fkey'"
        )
        .unwrap(),
        "1"
    );

    // A real failure of pg_restore still fails the restore, and rolls it back: in a new
    // database the foreign key has no `users` to reference.
    pg.psql("postgres", "CREATE DATABASE empty").unwrap();
    let run = ws.run(&[
        "restore",
        "shop",
        "--table",
        "credits",
        "--to",
        &pg.url("empty"),
    ]);
    run.expect_code(1).expect_stderr(&["users"], &[]);
    assert_eq!(
        pg.psql(
            "empty",
            "SELECT count(*) FROM pg_class WHERE relname = 'credits'"
        )
        .unwrap(),
        "0"
    );
}

/// A new database `db` where every row inserted into `public.images` runs the plpgsql
/// trigger body `body`: an event trigger puts the row trigger on the table as soon as the
/// restore creates it, and COPY fires row triggers.
fn images_trigger_database(pg: &Cluster, db: &str, body: &str) {
    pg.psql("postgres", &format!("CREATE DATABASE {db}"))
        .unwrap();
    install_images_trigger(pg, db, body);
}

/// In the existing database `db`: every row inserted into a `public.images` created from
/// now on runs the plpgsql trigger body `body`.
fn install_images_trigger(pg: &Cluster, db: &str, body: &str) {
    pg.psql(
        db,
        &format!("CREATE FUNCTION on_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} END $$;
         CREATE FUNCTION add_trigger() RETURNS event_trigger LANGUAGE plpgsql AS $$
         DECLARE r record;
         BEGIN
           FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE TABLE' LOOP
             IF r.object_identity = 'public.images' THEN
               EXECUTE format('CREATE TRIGGER on_row BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION public.on_row()', r.object_identity);
             END IF;
           END LOOP;
         END $$;
         CREATE EVENT TRIGGER images_rows ON ddl_command_end EXECUTE FUNCTION add_trigger();"),
    )
    .unwrap();
}

#[test]
fn a_row_count_mismatch_after_restore_exits_3() {
    let (pg, ws) = setup();
    ws.run(&["backup"]).expect_code(0);
    // A destination that silently drops the rows of `images`.
    images_trigger_database(&pg, "lossy", "RETURN NULL;");
    let run = ws.run(&["restore", "app", "--to", &pg.url("lossy")]);
    run.expect_code(3);
    run.expect_stdout(&["MISMATCH"], &[]);
    run.expect_stderr(&["row counts differ"], &[]);
}

#[test]
fn unreachable_server_and_wrong_password_fail_clearly_and_leave_no_snapshot() {
    let (pg, ws) = setup();
    let wrong_pw = pg.url("app").replace(&pg.password, "not-the-password");
    let closed = format!(
        "postgres://postgres:x@127.0.0.1:{}/app",
        lifeboat_testkit::free_port()
    );
    for (url, expect) in [
        (wrong_pw.as_str(), "password authentication failed"),
        (closed.as_str(), "cannot connect"),
        (
            "postgres://postgres@127.0.0.1:1/app?connect_timeout=oops",
            "invalid PostgreSQL URL",
        ),
    ] {
        ws.write_config(&postgres_target("app", url));
        let run = ws.run(&["backup"]);
        run.expect_code(1);
        assert!(run.stderr.contains(expect), "{expect}: {}", run.stderr);
        assert!(!run.stderr.contains("not-the-password"), "{}", run.stderr);
    }
    let snaps = ws.run(&["snapshots", "--json"]).json();
    assert!(snaps["snapshots"].as_array().unwrap().is_empty());
}

/// pg_dump killed mid-stream: its pipe ends cleanly, only the exit status tells. The
/// backup must fail and leave no snapshot, and the repository stays healthy.
#[test]
fn a_killed_pg_dump_leaves_no_snapshot() {
    let (pg, ws) = setup();
    pg.psql(
        "app",
        "CREATE TABLE big AS SELECT i, md5(i::text) || md5((i * 7)::text) AS pad FROM generate_series(1, 400000) i",
    )
    .unwrap();
    // A bin dir whose pg_dump is killed after it has streamed part of the dump.
    let bin = ws.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let real = pg.tools().bin_dir.clone();
    for tool in ["pg_dumpall", "pg_restore", "psql"] {
        std::os::unix::fs::symlink(real.join(tool), bin.join(tool)).unwrap();
    }
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then exec {real}/pg_dump --version; fi\n{real}/pg_dump \"$@\" | head -c 300000\nkill -9 $$\n",
        real = real.display()
    );
    std::fs::write(bin.join("pg_dump"), script).unwrap();
    std::fs::set_permissions(
        bin.join("pg_dump"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    ws.write_config(&format!(
        "{}pg-bin-dir = \"{}\"\n",
        postgres_target("app", &pg.url("app")),
        bin.display()
    ));
    let run = ws.run(&["backup"]);
    run.expect_code(1);
    run.expect_stderr(&["pg_dump"], &[]);
    run.expect_stderr(&["signal 9"], &[]);
    let snaps = ws.run(&["snapshots", "--json"]).json();
    assert!(snaps["snapshots"].as_array().unwrap().is_empty(), "{snaps}");
    ws.run(&["check"]).expect_code(0);
}

/// Managed services take TLS-only connections (`sslmode=require`): lifeboat's own session
/// and pg_dump must both speak TLS to a server that refuses anything else.
#[test]
fn a_tls_only_server_is_backed_up_with_sslmode_require() {
    let (pg, ws) = setup();
    let data = pg.data();
    lifeboat_testkit::tls::self_signed(&data, "server", "localhost");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&data).unwrap());
    let group = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&data).unwrap());
    for f in ["server.key", "server.crt"] {
        std::os::unix::fs::chown(data.join(f), Some(owner), Some(group)).unwrap();
    }
    std::fs::set_permissions(
        data.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    pg.psql("postgres", "ALTER SYSTEM SET ssl = on").unwrap();
    pg.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));

    ws.write_config(&postgres_target(
        "app",
        &format!("{}?sslmode=disable", pg.url("app")),
    ));
    let run = ws.run(&["backup"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("no encryption") || run.stderr.contains("pg_hba.conf"),
        "{}",
        run.stderr
    );

    ws.write_config(&postgres_target(
        "app",
        &format!("{}?sslmode=require", pg.url("app")),
    ));
    let run = ws.run(&["backup", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json()["backups"][0]["rows"], 5000);
    let run = ws.run(&[
        "restore",
        "app",
        "--to",
        &format!("{}?sslmode=require", pg.url("copy")),
    ]);
    run.expect_code(0);
    run.expect_stdout(&["verified: 3 table(s) match"], &[]);
}

/// Issue 18, point 5: SIGTERM during a backup stops it: exit 130, no snapshot, no lock,
/// no dump session left. SIGTERM during a restore over an existing database stops it: exit
/// 130, the server ends the restore's session (its one transaction rolls back), and the
/// database holds exactly what it held before.
#[test]
fn a_signal_during_a_backup_or_a_restore_leaves_nothing_half_done() {
    use std::time::{Duration, Instant};
    let pg = postgres();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql(
        "shop",
        "CREATE TABLE orders (id bigint PRIMARY KEY, note text);
         INSERT INTO orders SELECT i, md5(i::text) || md5((i + 1)::text) FROM generate_series(1, 2000000) i;",
    )
    .unwrap();
    let ws = Workspace::new(BIN);
    ws.write_config(&postgres_target("shop", &pg.url("shop")));
    ws.run(&["init"]).expect_code(0);

    let child = ws.spawn(&["backup", "shop"]);
    // Mid-dump: pg_dump is copying the table out.
    let dumping = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lifeboat' AND query LIKE 'COPY%'";
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg.psql("postgres", dumping).unwrap() == "0" {
        assert!(Instant::now() < deadline, "the dump never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    terminate(child).expect_code(130).expect_stderr(
        &["the backup of `shop` was stopped; no snapshot of it was written"],
        &[],
    );
    assert_eq!(
        ws.run(&["snapshots", "--json"]).json()["snapshots"],
        serde_json::json!([])
    );
    let locks = ws.repo().join("lifeboat/locks");
    assert_eq!(std::fs::read_dir(&locks).map_or(0, |d| d.count()), 0);
    let sessions = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lifeboat'";
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.psql("postgres", sessions).unwrap() != "0" {
        assert!(Instant::now() < deadline, "a dump session is left");
        std::thread::sleep(Duration::from_millis(50));
    }

    ws.run(&["backup", "shop"]).expect_code(0);
    pg.psql(
        "shop",
        "DELETE FROM orders WHERE id > 1000000; UPDATE orders SET note = 'changed' WHERE id < 10",
    )
    .unwrap();
    let fingerprint =
        "SELECT count(*) || ':' || md5(string_agg(note, ',' ORDER BY id)) FROM orders";
    let before = pg.psql("shop", fingerprint).unwrap();

    let child = ws.spawn(&["restore", "shop", "--force"]);
    // Mid-load: lifeboat's pg_restore is connected to the database.
    let loading = "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop' AND application_name = 'lifeboat-restore'";
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg.psql("postgres", loading).unwrap() == "0" {
        assert!(
            Instant::now() < deadline,
            "the restore never started loading"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    terminate(child).expect_code(130).expect_stderr(
        &["the restore was stopped; its transaction was rolled back, database `shop` is as it was"],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.psql("postgres", loading).unwrap() != "0" {
        assert!(Instant::now() < deadline, "a restore session is left");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(pg.psql("shop", fingerprint).unwrap(), before);

    // Into a database the restore creates (loaded in parallel, no one transaction): it is
    // dropped again.
    let child = ws.spawn(&["restore", "shop", "--to", &pg.url("fresh"), "--jobs", "2"]);
    let loading = loading.replace("'shop'", "'fresh'");
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg.psql("postgres", &loading).unwrap() == "0" {
        assert!(
            Instant::now() < deadline,
            "the restore never started loading"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    terminate(child)
        .expect_code(130)
        .expect_stderr(&["database `fresh` was dropped again"], &[]);
    assert!(!database_exists(&pg, "fresh"));
}
