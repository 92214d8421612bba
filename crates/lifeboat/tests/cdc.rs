//! Continuous capture for managed PostgreSQL (issue 22) against a real PostgreSQL with
//! `wal_level = logical`: the preflight refuses what would break the source and `--fix`
//! mends it; a capture of a workload (inserts, updates, deletes, a table without a primary
//! key holding duplicate rows, times and `char(n)`, TOAST values stored out of line changed
//! and left alone, an identity column `GENERATED ALWAYS`, ADD COLUMN, CREATE TABLE under
//! another search_path, CREATE INDEX CONCURRENTLY, DROP TABLE, TRUNCATE, sequences, a large
//! transaction, stored in parts through a local file) restores to chosen moments, each equal to the source as it was then; a capture killed with SIGKILL and started again loses nothing and applies nothing
//! twice.

use std::time::Duration;

use lifeboat_testkit::{Cluster, Workspace, terminate, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

fn logical_cluster() -> Cluster {
    let tools = lifeboat_postgres::PgTools::newest_installed().expect("PostgreSQL is installed");
    Cluster::start(
        &tools,
        &[
            ("wal_level", "logical"),
            ("max_replication_slots", "10"),
            ("max_wal_senders", "10"),
        ],
    )
    .expect("start a logical cluster")
}

/// Every user table's content, one checksum per table (name → md5 of its sorted rows).
fn checksums(pg: &Cluster, db: &str) -> String {
    let tables = pg
        .psql(
            db,
            "SELECT string_agg(format('%I.%I', schemaname, tablename), ' ' \
             ORDER BY format('%I.%I', schemaname, tablename)) \
             FROM pg_tables WHERE schemaname = 'public'",
        )
        .unwrap();
    let mut out = Vec::new();
    for t in tables.split_whitespace() {
        let sum = pg
            .psql(
                db,
                &format!(
                    "SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '-') FROM {t} x"
                ),
            )
            .unwrap();
        out.push(format!("{t}={sum}"));
    }
    out.join("\n")
}

/// A moment between two commits: the time after the last one, and a little wait after it.
fn moment() -> String {
    std::thread::sleep(Duration::from_millis(300));
    let at = jiff::Timestamp::now().to_string();
    std::thread::sleep(Duration::from_millis(300));
    at
}

/// Wait until the slot's confirmed position reaches the source's WAL now: every
/// transaction so far is stored. The insert position: with `synchronous_commit = off` (the
/// test clusters) the write position may not include the last commit yet.
fn caught_up(pg: &Cluster) {
    let source_lsn = pg
        .psql("shop", "SELECT pg_current_wal_insert_lsn()")
        .unwrap();
    wait_for("the capture to catch up", Duration::from_secs(90), || {
        pg.psql(
            "shop",
            &format!(
                "SELECT confirmed_flush_lsn >= '{source_lsn}' FROM pg_replication_slots WHERE slot_name = 'lifeboat_shop'"
            ),
        )
        .unwrap()
            == "t"
    });
}

fn cdc_config(ws: &Workspace, url: &str) {
    ws.write_config(&format!(
        "[targets.shop]\nkind = \"postgres\"\nmode = \"cdc\"\nurl = \"{url}\"\nflush-interval = \"200ms\"\n"
    ));
}

/// The cdc baselines of `shop` in `ws`'s repository.
fn baselines(ws: &Workspace) -> usize {
    ws.snapshots()
        .iter()
        .filter(|s| s["target"] == "shop" && s["kind"] == "cdc")
        .count()
}

/// Restore the newest of `shop` into the new database `db` and check it equals the source.
fn latest_equals_source(ws: &Workspace, pg: &Cluster, db: &str) {
    ws.run(&["restore", "shop", "--to", &pg.url(db)])
        .expect_code(0);
    assert_eq!(checksums(pg, db), checksums(pg, "shop"));
}

/// The workspace set up for `shop` on `pg` (config, repository, `cdc check --fix`) and a
/// `cdc run` started, once it has taken its baseline. A transaction's changes beyond 4 MB
/// go to a local file and are stored in parts (the default is 64 MiB).
fn capturing(ws: &Workspace, pg: &Cluster) -> std::process::Child {
    cdc_config(ws, &pg.url("shop"));
    start_capture(ws, &[("LIFEBOAT_CDC_SPILL_BYTES", "4000000")])
}

/// With the config written: the repository created, `cdc check --fix`, and a `cdc run`
/// (with `env`) started, once it has taken its baseline.
fn start_capture(ws: &Workspace, env: &[(&str, &str)]) -> std::process::Child {
    ws.run(&["init"]).expect_code(0);
    ws.run(&["cdc", "check", "shop", "--fix"]).expect_code(0);
    let env: Vec<(&str, &dyn AsRef<std::ffi::OsStr>)> = env
        .iter()
        .map(|(k, v)| (*k, v as &dyn AsRef<std::ffi::OsStr>))
        .collect();
    let capture = ws.spawn_env(&["cdc", "run", "shop"], &env);
    wait_for("the baseline", Duration::from_secs(60), || {
        ws.snapshots().iter().any(|s| s["target"] == "shop")
    });
    capture
}

/// `shop` captured (as [`start_capture`]) with `extra` in the config and a copy `c` of the
/// repository (created) in the workspace's `copy` folder.
fn capturing_with_copy(ws: &Workspace, pg: &Cluster, extra: &str) -> std::process::Child {
    cdc_config(ws, &pg.url("shop"));
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(
        ws.config_path(),
        format!(
            "{config}\n{extra}\n[copies.c]\nurl = \"{}\"\npassword-file = \"{}\"\n",
            ws.path().join("copy").display(),
            ws.path().join("password").display()
        ),
    )
    .unwrap();
    let capture = start_capture(ws, &[]);
    ws.run(&["init", "--repo", "c"]).expect_code(0);
    capture
}

/// A logical cluster with the database `shop` and its table `events`.
fn shop_with_events() -> Cluster {
    let pg = logical_cluster();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql(
        "shop",
        "CREATE TABLE events (id serial PRIMARY KEY, n int, note text)",
    )
    .unwrap();
    pg
}

#[test]
fn the_preflight_refuses_what_would_break_the_source_and_fix_mends_it() {
    let ws = Workspace::new(BIN);
    let pg = logical_cluster();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql(
        "shop",
        "CREATE TABLE accounts (id serial PRIMARY KEY, balance int); \
         CREATE TABLE audit_log (at timestamptz DEFAULT now(), what text); \
         INSERT INTO audit_log (what) VALUES ('opened')",
    )
    .unwrap();
    cdc_config(&ws, &pg.url("shop"));
    ws.run(&["init"]).expect_code(0);
    let check = ws.run(&["cdc", "check", "shop"]);
    check.expect_code(3).expect_stdout(
        &[
            "ok      wal_level",
            "PROBLEM replica identity",
            "public.audit_log",
            "REPLICA IDENTITY FULL",
            "warning DDL capture",
        ],
        &[],
    );
    // A backup would create the publication: refused, and nothing is created on the source.
    ws.run(&["backup", "shop"])
        .expect_code(1)
        .expect_stderr(&["refusing to create publication", "audit_log"], &[]);
    assert_eq!(
        pg.psql("shop", "SELECT count(*) FROM pg_publication")
            .unwrap(),
        "0"
    );
    pg.psql("shop", "UPDATE audit_log SET what = 'still writable'")
        .unwrap();
    // --fix: the identity and the DDL trigger; then capture can run.
    let fixed = ws.run(&["cdc", "check", "shop", "--fix"]);
    fixed.expect_code(0).expect_stdout(
        &[
            "fixed: `ALTER TABLE public.audit_log REPLICA IDENTITY FULL`",
            "fixed: event trigger `lifeboat_cdc_ddl`",
            "ready",
        ],
        &["PROBLEM"],
    );
    ws.run(&["backup", "shop"]).expect_code(0);
    // The source still takes UPDATE and DELETE on the table without a primary key.
    pg.psql(
        "shop",
        "UPDATE audit_log SET what = 'after'; DELETE FROM audit_log",
    )
    .unwrap();
    // Not a cdc target: said so.
    ws.write_config(&lifeboat_testkit::postgres_target("shop", &pg.url("shop")));
    ws.run(&["cdc", "check", "shop"])
        .expect_code(2)
        .expect_stderr(&["not a cdc target", "mode = \"cdc\""], &[]);
}

#[test]
fn a_cdc_target_restores_to_chosen_moments_each_equal_to_the_source_then() {
    let ws = Workspace::new(BIN);
    let pg = logical_cluster();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql(
        "shop",
        "CREATE SCHEMA app; \
         CREATE TABLE accounts (id serial PRIMARY KEY, owner text NOT NULL, balance numeric NOT NULL); \
         CREATE TABLE ledger (account int, amount numeric, note text, at timestamptz DEFAULT '2026-01-01 10:00+02', code char(4) DEFAULT 'ab'); \
         CREATE TABLE docs (id int PRIMARY KEY, title text, body text); \
         ALTER TABLE docs ALTER body SET STORAGE EXTERNAL; \
         CREATE TABLE tickets (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, subject text); \
         INSERT INTO accounts (owner, balance) SELECT 'owner ' || g, 100 FROM generate_series(1, 200) g; \
         INSERT INTO ledger (account, amount, note) SELECT g % 200 + 1, 100, 'opening' FROM generate_series(1, 200) g; \
         INSERT INTO ledger (account, amount, note) SELECT 1, 5, 'dup' FROM generate_series(1, 3); \
         INSERT INTO docs SELECT g, 'doc ' || g, repeat(md5(g::text), 400) FROM generate_series(1, 20) g",
    )
    .unwrap();
    let capture = capturing(&ws, &pg);

    // A: rows inserted, updated, deleted; a table without a primary key changed.
    pg.psql(
        "shop",
        "INSERT INTO accounts (owner, balance) SELECT 'late ' || g, 5 FROM generate_series(1, 50) g; \
         UPDATE accounts SET balance = balance - 30 WHERE id % 7 = 0; \
         DELETE FROM accounts WHERE id % 11 = 0; \
         UPDATE ledger SET note = 'moved' WHERE account % 5 = 0; \
         DELETE FROM ledger WHERE account % 13 = 0; \
         UPDATE ledger SET note = 'one of three' WHERE ctid = (SELECT ctid FROM ledger WHERE note = 'dup' LIMIT 1); \
         INSERT INTO tickets (subject) SELECT 'ticket ' || g FROM generate_series(1, 20) g; \
         UPDATE tickets SET subject = 'answered' WHERE id % 3 = 0; \
         UPDATE docs SET title = 'retitled' WHERE id <= 5",
    )
    .unwrap();
    let at_a = moment();
    let sum_a = checksums(&pg, "shop");

    // B: schema changes, a TOAST value changed, TRUNCATE.
    pg.psql(
        "shop",
        "ALTER TABLE accounts ADD COLUMN frozen boolean NOT NULL DEFAULT false; \
         UPDATE accounts SET frozen = true WHERE id < 10; \
         CREATE TABLE notes (id serial PRIMARY KEY, text text); \
         INSERT INTO notes (text) SELECT 'note ' || g FROM generate_series(1, 30) g; \
         UPDATE docs SET body = repeat('changed', 2000) WHERE id = 7; \
         SET search_path TO app, public; CREATE TABLE audit (id int PRIMARY KEY); \
         INSERT INTO audit VALUES (1), (2); RESET search_path; \
         TRUNCATE ledger",
    )
    .unwrap();
    pg.psql(
        "shop",
        "CREATE INDEX CONCURRENTLY accounts_owner ON accounts (owner)",
    )
    .unwrap();
    let at_b = moment();
    let sum_b = checksums(&pg, "shop");

    // C: one large transaction (300,000 rows) that is still open at a chosen moment — a
    // restore to that moment has none of it — then a dropped table, more rows from the
    // sequences.
    let big = {
        let (pg_sock, port) = (pg.root().join("sock"), pg.port);
        let psql = pg.tools().path("psql");
        std::thread::spawn(move || {
            let out = std::process::Command::new(psql)
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(pg_sock)
                .args(["-p", &port.to_string(), "-U", "postgres", "-d", "shop", "-c"])
                .arg(
                    "BEGIN; INSERT INTO ledger SELECT g % 200 + 1, g, 'bulk' FROM generate_series(1, 300000) g; \
                     UPDATE accounts SET balance = balance + 1; SELECT pg_sleep(3); COMMIT",
                )
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let in_big = jiff::Timestamp::now().to_string();
    big.join().unwrap();
    pg.psql(
        "shop",
        "DROP TABLE notes; \
         INSERT INTO accounts (owner, balance) SELECT 'last ' || g, 1 FROM generate_series(1, 5) g",
    )
    .unwrap();
    let sum_c = checksums(&pg, "shop");
    // Everything stored: the slot's confirmed position reaches the source's.
    caught_up(&pg);
    terminate(capture).expect_code(0);
    // The large transaction went through a local file into parts of about 4 MB.
    let parts = std::fs::read_dir(ws.repo().join("lifeboat/cdc/shop/parts"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(parts >= 2, "{parts} part(s) of the large transaction");

    for (at, want, db) in [
        (Some(at_a.as_str()), &sum_a, "at_a"),
        (Some(at_b.as_str()), &sum_b, "at_b"),
        (Some(in_big.as_str()), &sum_b, "in_big"),
        (None, &sum_c, "at_c"),
    ] {
        let url = pg.url(db);
        let mut args = vec!["restore", "shop", "--to", url.as_str()];
        if let Some(t) = at {
            args.extend(["--time", t]);
        }
        let run = ws.run(&args);
        run.expect_code(0).expect_stdout(&["replayed"], &[]);
        assert_eq!(&checksums(&pg, db), want, "restored to {at:?}");
    }
    // The sequences go on past the restored rows: a new row does not collide.
    pg.psql(
        "at_c",
        "INSERT INTO accounts (owner, balance) VALUES ('after restore', 0)",
    )
    .unwrap();
}

/// The replay applies a batch's changes of a table with an integer or uuid key by their net
/// effect (keys changed, rows deleted and inserted again, inserted and deleted, values with
/// tabs, newlines and backslashes, TOAST values left unchanged, a column's type changed
/// between two runs, a large transaction applied in steps); where the order of the changes
/// matters to a unique constraint (two rows swapping a unique value), or a row moves to a
/// freed key with a value not sent, or a NOT NULL domain refuses the staged rows, it falls
/// back to one statement per change; other tables' changes go one by one, inserts as COPY.
/// The restored database equals the source.
#[test]
fn the_replay_applies_a_batch_by_its_net_effect_and_falls_back_where_order_matters() {
    let ws = Workspace::new(BIN);
    let pg = logical_cluster();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql(
        "shop",
        "CREATE TABLE users (id bigint PRIMARY KEY, email text UNIQUE, note text); \
         CREATE TABLE devices (id uuid PRIMARY KEY, n int); \
         CREATE TABLE codes (code text PRIMARY KEY, n int); \
         CREATE TABLE log (at int, msg text); ALTER TABLE log REPLICA IDENTITY FULL; \
         CREATE TABLE big (id int PRIMARY KEY, n int); \
         CREATE TABLE docs (id int PRIMARY KEY, title text, body text); \
         ALTER TABLE docs ALTER body SET STORAGE EXTERNAL; \
         CREATE TABLE pages (id int PRIMARY KEY, title text, body text); \
         ALTER TABLE pages ALTER body SET STORAGE EXTERNAL; \
         CREATE DOMAIN present AS int NOT NULL; \
         CREATE TABLE counts (id int PRIMARY KEY, v present); \
         CREATE TABLE prices (id int PRIMARY KEY, p numeric(10,2)); \
         INSERT INTO docs SELECT g, 'doc ' || g, repeat(md5(g::text), 400) FROM generate_series(1, 30) g; \
         INSERT INTO pages SELECT g, 'page ' || g, repeat(md5(g::text), 400) FROM generate_series(1, 30) g; \
         INSERT INTO counts SELECT g, g FROM generate_series(1, 40) g; \
         INSERT INTO prices SELECT g, g FROM generate_series(1, 40) g; \
         INSERT INTO users SELECT g, 'e' || g, 'n' FROM generate_series(1, 100) g; \
         INSERT INTO devices SELECT md5(g::text)::uuid, g FROM generate_series(1, 50) g; \
         INSERT INTO codes SELECT 'c' || g, g FROM generate_series(1, 50) g",
    )
    .unwrap();
    let capture = capturing(&ws, &pg);
    pg.psql(
        "shop",
        "BEGIN; UPDATE users SET email = 'tmp' WHERE id = 1; UPDATE users SET email = 'e1' WHERE id = 2; \
           UPDATE users SET email = 'e2' WHERE id = 1; COMMIT; \
         UPDATE users SET id = id + 1000 WHERE id BETWEEN 10 AND 20; \
         UPDATE users SET id = 2000, note = 'moved twice' WHERE id = 1010; \
         DELETE FROM users WHERE id = 30; INSERT INTO users VALUES (30, 'e30b', 'again'); \
         INSERT INTO users VALUES (500, 'x500', 'x'); DELETE FROM users WHERE id = 500; \
         INSERT INTO users VALUES (501, 'x501', 'y'); UPDATE users SET note = 'z' WHERE id = 501; \
         UPDATE users SET note = E'tab\\there\\nnew line \\\\ back\\r' WHERE id = 40; \
         UPDATE users SET note = NULL WHERE id = 41; \
         DELETE FROM users WHERE id BETWEEN 50 AND 55; \
         UPDATE devices SET n = n * 10 WHERE n % 3 = 0; DELETE FROM devices WHERE n = 7; \
         INSERT INTO devices VALUES ('00000000-0000-0000-0000-000000000001', -1); \
         UPDATE codes SET n = -n WHERE n < 5; DELETE FROM codes WHERE n = 9; \
         INSERT INTO codes SELECT 'new ' || g, g FROM generate_series(1, 12) g; \
         INSERT INTO log SELECT g, E'line\\t' || g FROM generate_series(1, 20) g; \
         UPDATE log SET msg = 'changed' WHERE at = 3; \
         INSERT INTO log VALUES (21, NULL), (22, E'back\\\\slash'); \
         UPDATE docs SET title = 'retitled'; \
         DELETE FROM docs WHERE id = 2; UPDATE docs SET id = 2 WHERE id = 1; \
         UPDATE pages SET title = 'renamed' WHERE id <= 20; \
         UPDATE counts SET v = v + 1; DELETE FROM counts WHERE id > 30; \
         UPDATE prices SET p = p + 0.25; \
         ALTER TABLE prices ALTER p TYPE numeric(12,4); \
         UPDATE prices SET p = p + 0.1234; \
         BEGIN; INSERT INTO big SELECT g, 0 FROM generate_series(1, 110000) g; \
           UPDATE big SET n = 1 WHERE id % 5 = 0; DELETE FROM big WHERE id % 7 = 0; COMMIT",
    )
    .unwrap();
    caught_up(&pg);
    terminate(capture).expect_code(0);

    let run = ws.run(&["--json", "restore", "shop", "--to", &pg.url("restored")]);
    run.expect_code(0);
    let out = run.json();
    assert_eq!(checksums(&pg, "restored"), checksums(&pg, "shop"));
    let (all, net) = (
        out["replayed_changes"].as_u64().unwrap(),
        out["replayed_by_net_effect"].as_u64().unwrap(),
    );
    // Every change of users, devices and big, but those of codes and log one by one.
    assert!(
        net > 110_000 && net < all,
        "{net} of {all} by their net effect"
    );
    // The swap of two unique emails went one by one.
    assert!(out["net_effect_fallbacks"].as_u64().unwrap() >= 1, "{out}");
}

/// A restore folds the first changes after the baseline into its load (rows left out,
/// changed — a TOAST value left unchanged kept from the dump — and added, in a table large
/// enough to load in several parts, one that was empty, one only inserted into, one keyed
/// by uuid) until a transaction that does not fold, and
/// replays the rest; with one job and with two, to a moment and to the end, each equal to
/// the source then.
#[test]
fn a_restore_folds_the_first_changes_into_the_load_and_replays_the_rest() {
    let ws = Workspace::new(BIN);
    let pg = logical_cluster();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql(
        "shop",
        "CREATE TABLE big (id bigint PRIMARY KEY, n int, pad text); \
         CREATE TABLE docs (id int PRIMARY KEY, title text, body text); \
         ALTER TABLE docs ALTER body SET STORAGE EXTERNAL; \
         CREATE TABLE hist (at int, msg text); ALTER TABLE hist REPLICA IDENTITY FULL; \
         CREATE TABLE fresh (id serial PRIMARY KEY, v text); \
         CREATE TABLE devices (id uuid PRIMARY KEY, n int); \
         INSERT INTO big SELECT g, 0, repeat('x', 90) FROM generate_series(1, 400000) g; \
         INSERT INTO docs SELECT g, 'doc ' || g, repeat(md5(g::text), 400) FROM generate_series(1, 20) g; \
         INSERT INTO hist SELECT g, 'old' FROM generate_series(1, 10) g; \
         INSERT INTO devices SELECT md5(g::text)::uuid, g FROM generate_series(1, 30) g",
    )
    .unwrap();
    let capture = capturing(&ws, &pg);
    pg.psql(
        "shop",
        "UPDATE big SET n = 1 WHERE id IN (1, 2, 199999, 200000, 399999, 400000); \
         DELETE FROM big WHERE id IN (3, 250000, 399998); \
         INSERT INTO big VALUES (500001, 5, E'new\\trow'), (500002, 6, NULL); \
         UPDATE big SET id = 600000 WHERE id = 100000; \
         DELETE FROM big WHERE id = 4; INSERT INTO big VALUES (4, 44, 'again'); \
         INSERT INTO big VALUES (700000, 7, 'short-lived'); DELETE FROM big WHERE id = 700000; \
         UPDATE docs SET title = 'retitled' WHERE id <= 10; \
         INSERT INTO hist SELECT g, E'line\\\\' || g FROM generate_series(11, 30) g; \
         INSERT INTO fresh (v) SELECT 'v' || g FROM generate_series(1, 25) g; \
         UPDATE fresh SET v = 'changed' WHERE id = 3; DELETE FROM fresh WHERE id = 4; \
         UPDATE devices SET n = -n WHERE n < 10; DELETE FROM devices WHERE n = 20",
    )
    .unwrap();
    // One transaction: the first change folds, the second does not (a key change leaving
    // a TOAST value unsent).
    pg.psql(
        "shop",
        "BEGIN; UPDATE big SET n = n + 1 WHERE id = 10; UPDATE docs SET id = 100 WHERE id = 20; COMMIT",
    )
    .unwrap();
    let at_a = moment();
    let sum_a = checksums(&pg, "shop");
    pg.psql(
        "shop",
        "ALTER TABLE big ADD COLUMN flag boolean DEFAULT false; \
         UPDATE big SET flag = true, n = 2 WHERE id % 50000 = 0; \
         INSERT INTO fresh (v) VALUES ('after'); INSERT INTO hist VALUES (99, 'after')",
    )
    .unwrap();
    let sum_b = checksums(&pg, "shop");
    caught_up(&pg);
    terminate(capture).expect_code(0);

    for (jobs, at, want, db) in [
        ("1", Some(at_a.as_str()), &sum_a, "a1"),
        ("2", Some(at_a.as_str()), &sum_a, "a2"),
        ("1", None, &sum_b, "b1"),
        ("2", None, &sum_b, "b2"),
    ] {
        let url = pg.url(db);
        let mut args = vec!["--json", "restore", "shop", "--to", &url, "--jobs", jobs];
        if let Some(t) = at {
            args.extend(["--time", t]);
        }
        let run = ws.run(&args);
        run.expect_code(0);
        let out = run.json();
        assert_eq!(
            &checksums(&pg, db),
            want,
            "restored to {at:?} with {jobs} job(s)"
        );
        let (all, folded) = (
            out["replayed_changes"].as_u64().unwrap(),
            out["folded_into_load"].as_u64().unwrap(),
        );
        // Up to the transaction whose key change leaves a TOAST value unsent (found after
        // the change before it in that transaction had folded: the fold starts again and
        // stops before it), then replayed.
        assert!(
            folded > 50 && folded < all,
            "{folded} of {all} folded into the load: {out}"
        );
    }
    // The sequence goes on past the rows folded in.
    pg.psql("b2", "INSERT INTO fresh (v) VALUES ('after restore')")
        .unwrap();
}

#[test]
fn a_capture_killed_and_started_again_loses_nothing_and_applies_nothing_twice() {
    let ws = Workspace::new(BIN);
    let pg = shop_with_events();
    cdc_config(&ws, &pg.url("shop"));
    let mut capture = start_capture(&ws, &[]);
    // A workload in the background while the capture is killed mid-way.
    let writer_url = pg.url("shop");
    let writer = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let target = lifeboat_postgres::Target::parse(&lifeboat_core::Redacted::new(writer_url)).unwrap();
            let c = target.connect().await.unwrap();
            for i in 0..400 {
                c.batch_execute(&format!(
                    "INSERT INTO events (n, note) VALUES ({i}, 'x'); UPDATE events SET note = 'seen {i}' WHERE n = {} ",
                    i / 2
                ))
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    });
    std::thread::sleep(Duration::from_millis(1500));
    capture.kill().unwrap();
    let _ = capture.wait();
    let capture = ws.spawn(&["cdc", "run", "shop"]);
    writer.join().unwrap();
    caught_up(&pg);
    terminate(capture).expect_code(0);
    let url = pg.url("again");
    ws.run(&["restore", "shop", "--to", &url]).expect_code(0);
    assert_eq!(checksums(&pg, "again"), checksums(&pg, "shop"));

    // A new baseline, and retention keeping only it: the segments every kept baseline
    // already holds go; a restore still equals the source.
    ws.run(&["backup", "shop"]).expect_code(0);
    let segments = || {
        std::fs::read_dir(ws.repo().join("lifeboat/cdc/shop"))
            .unwrap()
            .count()
    };
    let before = segments();
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(
        ws.config_path(),
        format!("{config}\n[retention]\nkeep-last = 1\n"),
    )
    .unwrap();
    ws.run(&["forget", "--prune"])
        .expect_code(0)
        .expect_stdout(&["segment(s) older than every kept baseline deleted"], &[]);
    assert!(
        segments() < before,
        "{} of {before} segments left",
        segments()
    );
    let url = pg.url("after_prune");
    ws.run(&["restore", "shop", "--to", &url]).expect_code(0);
    assert_eq!(checksums(&pg, "after_prune"), checksums(&pg, "shop"));
}

/// `serve` captures every cdc target by itself: a server restart fails the capture (one
/// `capture-failed` alert), it starts again and catches up (the alert resolved), nothing is
/// lost; `status` judges the target's RPO from the capture, and says when the slot is gone.
#[test]
fn serve_captures_through_a_server_restart_and_status_follows_the_capture() {
    let ws = Workspace::new(BIN);
    let mut pg = logical_cluster();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql(
        "shop",
        "CREATE TABLE orders (id serial PRIMARY KEY, total int); \
         INSERT INTO orders (total) SELECT g FROM generate_series(1, 100) g",
    )
    .unwrap();
    let alerts = ws.path().join("alerts.jsonl");
    ws.write_config(&format!(
        "[targets.shop]\nkind = \"postgres\"\nmode = \"cdc\"\nurl = \"{}\"\nflush-interval = \"200ms\"\nobjectives = {{ rpo = \"1m\" }}\n\n\
         [[notify]]\nname = \"log\"\nkind = \"command\"\nevents = [\"capture-failed\"]\ncommand = \"cat >> {a}; echo >> {a}\"\n",
        pg.url("shop"),
        a = alerts.display()
    ));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["cdc", "check", "shop", "--fix"]).expect_code(0);
    let serve = ws.spawn(&[
        "serve",
        "--listen",
        &format!("127.0.0.1:{}", lifeboat_testkit::free_port()),
    ]);
    wait_for("the baseline", Duration::from_secs(60), || {
        ws.snapshots().iter().any(|s| s["target"] == "shop")
    });
    pg.psql("shop", "INSERT INTO orders (total) VALUES (1000)")
        .unwrap();
    caught_up(&pg);
    let status = ws.run(&["status", "--json"]);
    let row = &status.json()["targets"][0];
    assert_eq!(row["kind"], "cdc", "{row}");
    assert!(row["problems"].as_array().unwrap().is_empty(), "{row}");
    assert!(row["backup_age_seconds"].as_f64().unwrap() < 30.0, "{row}");

    // The server restarts: the capture fails, alerts once, and comes back by itself.
    pg.stop();
    let read = |state: &str| {
        std::fs::read_to_string(&alerts)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("capture:shop") && l.contains(state))
            .count()
    };
    wait_for("the capture-failed alert", Duration::from_secs(30), || {
        read("\"firing\"") == 1
    });
    pg.start_again().unwrap();
    pg.psql(
        "shop",
        "UPDATE orders SET total = total + 1 WHERE id <= 10; DELETE FROM orders WHERE id = 50",
    )
    .unwrap();
    wait_for("the alert resolved", Duration::from_secs(90), || {
        read("\"resolved\"") == 1
    });
    assert_eq!(read("\"firing\""), 1, "one alert for one outage");
    caught_up(&pg);
    terminate(serve).expect_code(0);
    let url = pg.url("copy");
    ws.run(&["restore", "shop", "--to", &url]).expect_code(0);
    assert_eq!(checksums(&pg, "copy"), checksums(&pg, "shop"));
    // A drill replays the capture too: its RPO is seconds, not the baseline's age.
    ws.run(&["drill", "shop"])
        .expect_code(0)
        .expect_stdout(&["PASS", "recovery"], &[]);
    let drills = ws.run(&["drills", "shop", "--json"]).json();
    let last = drills["drills"].as_array().unwrap().last().unwrap().clone();
    let rpo = last["rpo_seconds"].as_f64().unwrap();
    assert!(rpo < 60.0, "RPO {rpo} s: {last}");

    // The slot gone: `status` says nothing is captured.
    pg.psql("shop", "SELECT pg_drop_replication_slot('lifeboat_shop')")
        .unwrap();
    let status = ws.run(&["status", "--json"]);
    let problems = status.json()["targets"][0]["problems"].to_string();
    assert!(
        problems.contains("does not exist: nothing is captured"),
        "{problems}"
    );
    // A backup does not quietly make a new slot over the hole: `cdc run` records the gap.
    ws.run(&["backup", "shop"])
        .expect_code(1)
        .expect_stderr(&["is gone", "records the gap"], &[]);
    let before = baselines(&ws);
    let capture = ws.spawn(&["cdc", "run", "shop"]);
    wait_for(
        "the gap and a new baseline",
        Duration::from_secs(60),
        || ws.repo().join("lifeboat/cdc/shop/gaps.json").exists() && baselines(&ws) > before,
    );
    terminate(capture)
        .expect_code(0)
        .expect_stderr(&["was gone", "are lost"], &[]);
}

/// A slot the server invalidates while nothing reads it (`max_slot_wal_keep_size`): the
/// next capture records the gap and starts a new chain from a new baseline; `status` says
/// so; a restore to a moment in the gap is refused, naming it; moments before and after it
/// restore exactly.
#[test]
fn a_lost_slot_becomes_a_recorded_gap_and_a_new_chain() {
    let ws = Workspace::new(BIN);
    let tools = lifeboat_postgres::PgTools::newest_installed().unwrap();
    let pg = Cluster::start(
        &tools,
        &[
            ("wal_level", "logical"),
            ("max_replication_slots", "10"),
            ("max_slot_wal_keep_size", "'32MB'"),
        ],
    )
    .unwrap();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql(
        "shop",
        "CREATE TABLE orders (id serial PRIMARY KEY, total int); \
         CREATE TABLE filler (id int, pad text); \
         INSERT INTO orders (total) SELECT g FROM generate_series(1, 10) g",
    )
    .unwrap();
    let capture = capturing(&ws, &pg);
    pg.psql("shop", "INSERT INTO orders (total) VALUES (100)")
        .unwrap();
    let before = moment();
    let sum_before = checksums(&pg, "shop");
    pg.psql("shop", "INSERT INTO orders (total) VALUES (150)")
        .unwrap();
    caught_up(&pg);
    terminate(capture).expect_code(0);

    // Nothing reads the slot: a change, then far more WAL than it may keep.
    pg.psql("shop", "INSERT INTO orders (total) VALUES (200)")
        .unwrap();
    let in_gap = moment();
    wait_for("the slot to be lost", Duration::from_secs(120), || {
        pg.psql(
            "shop",
            "INSERT INTO filler SELECT g, repeat('x', 400) FROM generate_series(1, 50000) g; \
             DELETE FROM filler; SELECT pg_switch_wal(); CHECKPOINT",
        )
        .unwrap();
        pg.psql(
            "shop",
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lifeboat_shop'",
        )
        .unwrap()
            == "lost"
    });
    let capture = ws.spawn(&["cdc", "run", "shop"]);
    wait_for("a new baseline", Duration::from_secs(60), || {
        ws.snapshots()
            .iter()
            .filter(|s| s["target"] == "shop")
            .count()
            == 2
    });
    pg.psql("shop", "INSERT INTO orders (total) VALUES (300)")
        .unwrap();
    caught_up(&pg);
    let run = terminate(capture);
    run.expect_code(0)
        .expect_stderr(&["invalidated by the server", "are lost"], &[]);

    let status = ws.run(&["status", "--json"]);
    let problems = status.json()["targets"][0]["problems"].to_string();
    assert!(problems.contains("were lost"), "{problems}");
    ws.run(&[
        "restore",
        "shop",
        "--time",
        &in_gap,
        "--to",
        &pg.url("nowhere"),
    ])
    .expect_code(1)
    .expect_stderr(&["falls in a gap of the capture", "restore to"], &[]);
    ws.run(&[
        "restore",
        "shop",
        "--time",
        &before,
        "--to",
        &pg.url("before"),
    ])
    .expect_code(0);
    assert_eq!(checksums(&pg, "before"), sum_before);
    latest_equals_source(&ws, &pg, "latest");
}

/// The S3 repository unreachable for a while (a fault proxy answers 503 to everything):
/// the capture acknowledges nothing it has not stored, `status` (reading the repository
/// directly) names the slot that keeps more than `max-slot-lag`, and once the repository
/// answers again the capture catches up — a restore equals the source. Then, with
/// `on-slot-lag = "drop"`, the slot is dropped while the repository is away (the server's
/// disk comes first), the gap is recorded once it is back and a new chain starts; a restore
/// into the gap is refused with the nearest moments, the one before it and the new chain
/// restore exactly, and `--lsn` stops at a WAL position.
#[test]
fn an_unreachable_s3_repository_holds_acknowledgements_back_and_a_slot_over_max_slot_lag_is_dropped()
 {
    use lifeboat_testkit::s3::{Fault, FaultProxy, Faults, S3Server};
    let s3 = S3Server::start();
    let bucket = s3.bucket();
    let proxy = FaultProxy::start(s3.port());
    let ws = Workspace::s3(BIN, &proxy.endpoint(), &bucket);
    let direct = Workspace::s3(BIN, &s3.endpoint(), &bucket);
    let pg = logical_cluster();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql(
        "shop",
        "CREATE TABLE orders (id serial PRIMARY KEY, total int); \
         CREATE TABLE filler (id int PRIMARY KEY, pad text); \
         INSERT INTO orders (total) SELECT g FROM generate_series(1, 100) g",
    )
    .unwrap();
    let config = |extra: &str| {
        let text = format!(
            "[targets.shop]\nkind = \"postgres\"\nmode = \"cdc\"\nurl = \"{}\"\nflush-interval = \"200ms\"\nmax-slot-lag = \"16MB\"\n{extra}",
            pg.url("shop")
        );
        ws.write_config(&text);
        direct.write_config(&text);
    };
    config("");
    ws.run(&["init"]).expect_code(0);
    ws.run(&["cdc", "check", "shop", "--fix"]).expect_code(0);
    // One retry per S3 call, so a failing store fails in seconds, not a minute; a
    // transaction's changes beyond 4 MB go through a local file into parts.
    let serve = || {
        ws.spawn_env(
            &[
                "serve",
                "--listen",
                &format!("127.0.0.1:{}", lifeboat_testkit::free_port()),
            ],
            &[
                ("LIFEBOAT_S3_RETRIES", &"1"),
                ("LIFEBOAT_CDC_SPILL_BYTES", &"4000000"),
            ],
        )
    };
    let server = serve();
    wait_for("the baseline", Duration::from_secs(60), || {
        baselines(&direct) == 1
    });
    pg.psql("shop", "INSERT INTO orders (total) VALUES (1000)")
        .unwrap();
    caught_up(&pg);

    // The repository takes no segment: the transaction gathered cannot be stored, so its
    // commit is never acknowledged (positions before it may be: the server redelivers a
    // transaction whose commit lies after the acknowledged point), and the slot keeps the
    // WAL. The transaction is large: its parts are stored each time, its segment never —
    // the capture sent it again must find its own parts there.
    proxy.set(Faults::always(Fault::Status(503)).only(".seg"));
    let committed = pg
        .psql(
            "shop",
            "UPDATE orders SET total = total * 2 WHERE id % 3 = 0; \
             INSERT INTO filler SELECT g, repeat('x', 400) FROM generate_series(1, 60000) g; \
             SELECT pg_current_wal_insert_lsn()",
        )
        .unwrap();
    let during = checksums(&pg, "shop");
    std::thread::sleep(Duration::from_secs(4));
    let acknowledged = pg
        .psql(
            "shop",
            &format!(
                "SELECT confirmed_flush_lsn || ' ' || (confirmed_flush_lsn < '{}') FROM pg_replication_slots WHERE slot_name = 'lifeboat_shop'",
                committed.lines().last().unwrap()
            ),
        )
        .unwrap();
    assert!(
        acknowledged.ends_with(" true"),
        "the unstored commit (ending before {committed}) was acknowledged: {acknowledged}"
    );
    let status = direct.run(&["status", "--json"]);
    let row = &status.json()["targets"][0];
    assert!(
        row["problems"].to_string().contains("over `max-slot-lag`"),
        "{row}"
    );
    assert!(
        row["wal"]["slot"]["retained_bytes"].as_i64().unwrap() > 16 << 20,
        "{row}"
    );
    direct
        .run(&["status"])
        .expect_code(3)
        .expect_stdout(&["slot reserved", "unconfirmed"], &[]);

    // Back: the capture catches up by itself, and loses nothing.
    proxy.set(Faults::NONE);
    caught_up(&pg);
    // The slot's `restart_lsn` follows once the server logs its running transactions (a
    // checkpoint does): then it keeps little again.
    wait_for(
        "the slot to let go of the WAL",
        Duration::from_secs(60),
        || {
            pg.psql(
                "shop",
                "CHECKPOINT; SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) < 8000000 \
             FROM pg_replication_slots WHERE slot_name = 'lifeboat_shop'",
            )
            .unwrap()
                == "t"
        },
    );
    let caught_up_at = moment();
    terminate(server).expect_code(0);

    // `on-slot-lag = "drop"`: the repository away again, the slot goes rather than the disk.
    config("on-slot-lag = \"drop\"\n");
    let server = serve();
    caught_up(&pg);
    pg.psql("shop", "INSERT INTO orders (total) VALUES (777)")
        .unwrap();
    caught_up(&pg);
    let sum_before = checksums(&pg, "shop");
    assert_eq!(baselines(&direct), 1, "a slot caught up is not dropped");
    let chains = baselines(&direct);
    proxy.set(Faults::always(Fault::Status(503)));
    pg.psql("shop", "INSERT INTO orders (total) VALUES (888)")
        .unwrap();
    let in_gap = moment();
    let lsn_in_gap = pg
        .psql("shop", "SELECT pg_current_wal_insert_lsn()")
        .unwrap();
    pg.psql(
        "shop",
        "INSERT INTO filler SELECT g, repeat('x', 400) FROM generate_series(100001, 160000) g",
    )
    .unwrap();
    wait_for("the slot dropped", Duration::from_secs(90), || {
        pg.psql(
            "shop",
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'lifeboat_shop'",
        )
        .unwrap()
            == "0"
    });
    proxy.set(Faults::NONE);
    wait_for("a new baseline", Duration::from_secs(120), || {
        baselines(&direct) > chains
    });
    pg.psql("shop", "INSERT INTO orders (total) VALUES (999)")
        .unwrap();
    caught_up(&pg);
    terminate(server)
        .expect_code(0)
        .expect_stderr(&["over `max-slot-lag`", "are lost"], &[]);

    let status = direct.run(&["status", "--json"]);
    let problems = status.json()["targets"][0]["problems"].to_string();
    assert!(problems.contains("were lost"), "{problems}");
    // Into the gap, by time or by WAL position: refused, naming the last point that can be
    // restored before it — which restores exactly what the source held then.
    for (how, point, db) in [
        ("--time", &in_gap, "before"),
        ("--lsn", &lsn_in_gap, "by_lsn"),
    ] {
        let refused = direct.run(&["restore", "shop", how, point, "--to", &pg.url("nowhere")]);
        refused
            .expect_code(1)
            .expect_stderr(&["gap of the capture"], &[]);
        let last_good = refused
            .stderr
            .split("restore to ")
            .nth(1)
            .and_then(|s| s.split(" or before").next())
            .unwrap_or_else(|| panic!("no point named: {}", refused.stderr))
            .to_string();
        direct
            .run(&["restore", "shop", how, &last_good, "--to", &pg.url(db)])
            .expect_code(0);
        assert_eq!(checksums(&pg, db), sum_before, "{how} {last_good}");
    }
    latest_equals_source(&direct, &pg, "latest");
    // The first outage lost nothing: the moment after it caught up holds what was written
    // during it.
    direct
        .run(&[
            "restore",
            "shop",
            "--time",
            &caught_up_at,
            "--to",
            &pg.url("copy"),
        ])
        .expect_code(0);
    assert_eq!(checksums(&pg, "copy"), during);
}

/// "Balances corrupted at 10:02, bring back the credit table as of 10:01": one table of a
/// cdc target restored as it was at a moment into the live database — refused over the
/// existing table without `--force`, shown by `--dry-run`, then replaced after an emergency
/// dump (itself restorable) — while another table keeps the changes made since.
#[test]
fn one_table_comes_back_as_it_was_without_touching_the_rest() {
    let ws = Workspace::new(BIN);
    let pg = logical_cluster();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql(
        "shop",
        "CREATE TABLE credits (user_id int PRIMARY KEY, balance int NOT NULL, n serial); \
         CREATE TABLE orders (id serial PRIMARY KEY, total int); \
         INSERT INTO credits SELECT g, 100 FROM generate_series(1, 500) g; \
         INSERT INTO orders (total) SELECT g FROM generate_series(1, 50) g; \
         CREATE ROLE app_reader; CREATE ROLE app_owner; \
         ALTER TABLE credits OWNER TO app_owner; GRANT SELECT ON credits TO app_reader; \
         GRANT UPDATE (balance) ON credits TO app_reader; \
         GRANT USAGE ON SEQUENCE credits_n_seq TO app_reader",
    )
    .unwrap();
    let capture = capturing(&ws, &pg);
    // Changes after the baseline, then the moment, then the corruption and new orders.
    pg.psql(
        "shop",
        "UPDATE credits SET balance = balance + user_id WHERE user_id % 5 = 0; \
         DELETE FROM credits WHERE user_id > 490",
    )
    .unwrap();
    let at = moment();
    let credits_at = checksums(&pg, "shop")
        .lines()
        .find(|l| l.starts_with("public.credits="))
        .unwrap()
        .to_string();
    pg.psql(
        "shop",
        "UPDATE credits SET balance = -balance WHERE user_id % 7 = 0; \
         INSERT INTO orders (total) VALUES (5000), (6000)",
    )
    .unwrap();
    caught_up(&pg);
    terminate(capture).expect_code(0);
    let orders_now = checksums(&pg, "shop")
        .lines()
        .find(|l| l.starts_with("public.orders="))
        .unwrap()
        .to_string();

    let table = ["restore", "shop", "--time", &at, "--table", "credits"];
    ws.run(&table).expect_code(1).expect_stderr(
        &["refusing to overwrite: table `public.credits` exists"],
        &[],
    );
    let dry = [&table[..], &["--dry-run"]].concat();
    ws.run(&dry).expect_code(0).expect_stdout(
        &[
            "replace table `public.credits`",
            "replay",
            "throwaway PostgreSQL",
        ],
        &[],
    );
    assert_eq!(
        pg.psql("shop", "SELECT count(*) FROM credits WHERE balance < 0")
            .unwrap(),
        "70",
        "nothing changed yet"
    );
    let forced = [&table[..], &["--force"]].concat();
    ws.run(&forced)
        .expect_code(0)
        .expect_stdout(&["490 rows at that moment, 490 in database `shop`"], &[]);
    let now = checksums(&pg, "shop");
    assert!(now.contains(&credits_at), "credits as at {at}:\n{now}");
    assert_eq!(
        pg.psql(
            "shop",
            "SELECT pg_get_userbyid(relowner) || ' ' || has_table_privilege('app_reader', 'credits', 'SELECT') \
             || ' ' || has_column_privilege('app_reader', 'credits', 'balance', 'UPDATE') \
             || ' ' || has_sequence_privilege('app_reader', 'credits_n_seq', 'USAGE') \
             FROM pg_class WHERE relname = 'credits'",
        )
        .unwrap(),
        "app_owner true true true",
        "the live table's owner and grants are kept"
    );
    assert!(now.contains(&orders_now), "orders untouched:\n{now}");

    // The emergency dump of the corrupted database restores as a logical backup.
    let emergency = ws
        .snapshots()
        .into_iter()
        .find(|s| s["target"] == "shop" && s["emergency"] == true)
        .expect("an emergency snapshot");
    assert_eq!(emergency["kind"], "logical", "{emergency}");
    let id = emergency["id"].as_str().unwrap();
    ws.run(&[
        "restore",
        "shop",
        "--snapshot",
        id,
        "--to",
        &pg.url("saved"),
    ])
    .expect_code(0);
    assert_eq!(
        pg.psql("saved", "SELECT count(*) FROM credits WHERE balance < 0")
            .unwrap(),
        "70",
        "the emergency dump holds the corrupted table"
    );
}

/// `baseline-every`: a running capture takes a new baseline beside itself once the newest is
/// that old, without stopping the capture; a restore from the newest equals the source.
#[test]
fn a_capture_takes_a_new_baseline_once_the_newest_is_baseline_every_old() {
    let ws = Workspace::new(BIN);
    let pg = logical_cluster();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql(
        "shop",
        "CREATE TABLE orders (id serial PRIMARY KEY, total int); \
         INSERT INTO orders (total) SELECT g FROM generate_series(1, 100) g",
    )
    .unwrap();
    ws.write_config(&format!(
        "[targets.shop]\nkind = \"postgres\"\nmode = \"cdc\"\nurl = \"{}\"\nflush-interval = \"200ms\"\nbaseline-every = \"2s\"\n",
        pg.url("shop")
    ));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["cdc", "check", "shop", "--fix"]).expect_code(0);
    let capture = ws.spawn(&["cdc", "run", "shop"]);
    let mut n = 0;
    wait_for("three baselines", Duration::from_secs(90), || {
        n += 1;
        pg.psql("shop", &format!("INSERT INTO orders (total) VALUES ({n})"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        baselines(&ws) >= 3
    });
    pg.psql("shop", "UPDATE orders SET total = -total WHERE id % 9 = 0")
        .unwrap();
    caught_up(&pg);
    terminate(capture)
        .expect_code(0)
        .expect_stderr(&["older than `baseline-every`", "new baseline stored"], &[]);
    latest_equals_source(&ws, &pg, "copy");
}

/// Without the DDL event trigger (a provider that forbids it), a schema change is found by
/// the capture's watch of the tables' shape: a short gap from the last look before it to a
/// new baseline taken at once, with a warning; moments before and after it restore
/// exactly, and `status` does not alert on it (nothing was lost on the server).
#[test]
fn without_the_ddl_trigger_a_schema_change_is_a_short_gap_and_a_new_baseline() {
    let ws = Workspace::new(BIN);
    let pg = logical_cluster();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql(
        "shop",
        "CREATE TABLE orders (id serial PRIMARY KEY, total int); \
         INSERT INTO orders (total) SELECT g FROM generate_series(1, 100) g",
    )
    .unwrap();
    cdc_config(&ws, &pg.url("shop"));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["cdc", "check", "shop"])
        .expect_code(0)
        .expect_stdout(&["no event trigger sends schema changes"], &[]);
    let capture = ws.spawn(&["cdc", "run", "shop"]);
    wait_for("the baseline", Duration::from_secs(60), || {
        baselines(&ws) == 1
    });
    pg.psql(
        "shop",
        "UPDATE orders SET total = total * 3 WHERE id % 4 = 0",
    )
    .unwrap();
    // The watch looks every 10 s, and a gap starts at the look before the last unchanged
    // one: two looks after this change, before the next.
    std::thread::sleep(Duration::from_secs(21));
    let at_a = moment();
    let sum_a = checksums(&pg, "shop");
    pg.psql(
        "shop",
        "ALTER TABLE orders ADD COLUMN note text; \
         INSERT INTO orders (total, note) VALUES (7, 'after the change')",
    )
    .unwrap();
    wait_for("a new baseline", Duration::from_secs(60), || {
        baselines(&ws) == 2
    });
    pg.psql("shop", "UPDATE orders SET note = 'later' WHERE id <= 5")
        .unwrap();
    caught_up(&pg);
    let at_b = moment();
    let sum_b = checksums(&pg, "shop");
    terminate(capture)
        .expect_code(0)
        .expect_stderr(&["changed shape", "new baseline stored"], &[]);

    // Before the change: the moment itself, or — when the watch's last look came before
    // it — the last moment the refusal names, which holds the same rows.
    let first = ws.run(&["restore", "shop", "--time", &at_a, "--to", &pg.url("a")]);
    if first.code != 0 {
        first.expect_stderr(&["falls in a gap of the capture", "changed shape"], &[]);
        let last_good = first
            .stderr
            .split("restore to ")
            .nth(1)
            .and_then(|s| s.split(" or before").next())
            .unwrap_or_else(|| panic!("no moment named: {}", first.stderr))
            .to_string();
        ws.run(&[
            "restore",
            "shop",
            "--time",
            &last_good,
            "--to",
            &pg.url("a"),
        ])
        .expect_code(0);
    }
    assert_eq!(checksums(&pg, "a"), sum_a);
    ws.run(&["restore", "shop", "--time", &at_b, "--to", &pg.url("b")])
        .expect_code(0);
    assert_eq!(checksums(&pg, "b"), sum_b);
    let status = ws.run(&["status", "--json"]);
    let problems = status.json()["targets"][0]["problems"].to_string();
    assert!(!problems.contains("were lost"), "{problems}");

    // A migration while no capture runs: found when the next one starts (it kept the shape
    // it last saw), a gap and a new baseline before it streams on.
    pg.psql(
        "shop",
        "ALTER TABLE orders DROP COLUMN note; INSERT INTO orders (total) VALUES (8)",
    )
    .unwrap();
    let capture = ws.spawn(&["cdc", "run", "shop"]);
    wait_for(
        "a baseline after the migration",
        Duration::from_secs(60),
        || baselines(&ws) == 3,
    );
    pg.psql("shop", "UPDATE orders SET total = 9 WHERE id = 1")
        .unwrap();
    caught_up(&pg);
    terminate(capture)
        .expect_code(0)
        .expect_stderr(&["changed shape while no capture ran"], &[]);
    latest_equals_source(&ws, &pg, "c");
}

/// The watch works from an empty database on: the first tables a migration creates are a
/// change of shape like any other.
#[test]
fn without_the_ddl_trigger_the_first_tables_of_an_empty_database_are_seen() {
    let ws = Workspace::new(BIN);
    let pg = logical_cluster();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    cdc_config(&ws, &pg.url("shop"));
    ws.run(&["init"]).expect_code(0);
    let capture = ws.spawn(&["cdc", "run", "shop"]);
    wait_for("the baseline", Duration::from_secs(60), || {
        baselines(&ws) == 1
    });
    pg.psql(
        "shop",
        "CREATE TABLE orders (id serial PRIMARY KEY, total int); \
         INSERT INTO orders (total) SELECT g FROM generate_series(1, 10) g",
    )
    .unwrap();
    wait_for("a new baseline", Duration::from_secs(60), || {
        baselines(&ws) == 2
    });
    pg.psql("shop", "UPDATE orders SET total = 0 WHERE id = 3")
        .unwrap();
    caught_up(&pg);
    terminate(capture).expect_code(0);
    latest_equals_source(&ws, &pg, "copy");
}

/// A copy of the repository (issue 23) made while the capture runs, and again after it
/// stopped: with the repository deleted, a moment and the end restored from the copy
/// each equal the source as it was then (segments and gap records reach the copy in an
/// order that never leaves a hole).
#[test]
fn a_copy_made_while_capturing_restores_moments_once_the_repository_is_gone() {
    let ws = Workspace::new(BIN);
    let pg = shop_with_events();
    let capture = capturing_with_copy(&ws, &pg, "");
    for i in 0..50 {
        pg.psql(
            "shop",
            &format!("INSERT INTO events (n, note) VALUES ({i}, 'first'), ({i}, 'again')"),
        )
        .unwrap();
    }
    caught_up(&pg);
    let then = moment();
    let at_then = checksums(&pg, "shop");
    ws.run(&["copy"]).expect_code(0);
    pg.psql(
        "shop",
        "UPDATE events SET note = 'changed' WHERE n % 3 = 0; DELETE FROM events WHERE n % 7 = 0",
    )
    .unwrap();
    pg.psql(
        "shop",
        "INSERT INTO events (n, note) SELECT g, 'late' FROM generate_series(1, 500) g",
    )
    .unwrap();
    caught_up(&pg);
    terminate(capture).expect_code(0);
    ws.run(&["copy"]).expect_code(0);

    std::fs::remove_dir_all(ws.repo()).unwrap();
    ws.run(&[
        "restore",
        "shop",
        "--repo",
        "c",
        "--time",
        &then,
        "--to",
        &pg.url("at_then"),
    ])
    .expect_code(0);
    assert_eq!(checksums(&pg, "at_then"), at_then);
    ws.run(&["restore", "shop", "--repo", "c", "--to", &pg.url("at_end")])
        .expect_code(0);
    assert_eq!(checksums(&pg, "at_end"), checksums(&pg, "shop"));
}

/// Change segments the repository pruned before a copy received them (a new baseline and
/// `forget --prune` between two copies): the copy refuses the newer segments instead of
/// holding a stream with a hole in it, and says what to do.
#[test]
fn a_copy_missing_pruned_segments_takes_no_newer_ones() {
    let ws = Workspace::new(BIN);
    let pg = shop_with_events();
    let capture = capturing_with_copy(&ws, &pg, "[retention]\nkeep-last = 1\n");
    let write = |what: &str| {
        for i in 0..20 {
            pg.psql(
                "shop",
                &format!("INSERT INTO events (n, note) VALUES ({i}, '{what}')"),
            )
            .unwrap();
        }
        caught_up(&pg);
    };
    write("copied");
    ws.run(&["copy"]).expect_code(0);
    write("never copied");
    ws.run(&["backup", "shop"]).expect_code(0);
    write("after the new baseline");
    terminate(capture).expect_code(0);
    ws.run(&["forget", "--prune"]).expect_code(0);
    let run = ws.run(&["copy"]);
    run.expect_code(1).expect_stderr(
        &[
            "no longer holds the change segments",
            "move the copy's `cdc/shop` aside",
        ],
        &[],
    );
}
