//! `lifeboat demo`: the README's first command. On a throwaway PostgreSQL it creates a
//! small app (users, images, a credit ledger with balances), backs it up into a temporary
//! repository, simulates a disaster (a dropped table, corrupted balances), restores over
//! the broken database after an emergency backup, shows the verification, and ends with a
//! drill (restore into a second throwaway server, checks, RTO and RPO, a report). Then the
//! same database is protected as a managed one would be (`mode = "cdc"`: a baseline and a
//! continuous capture through logical replication), a mistaken `DELETE` happens, and a
//! restore brings back the database as it was the second before it. Everything it creates
//! is removed at the end (unless `--keep`).

use std::time::{Duration, Instant};

use lifeboat_engine::{cancel::Cancel, kinds::postgres_cdc::capture};
use lifeboat_postgres::{Cluster, PgTools};

use super::Context;
use crate::{
    cli::{
        BackupArgs, CdcCheckArgs, CdcCommand, DemoArgs, DrillArgs, PitrArgs, RestoreArgs,
        SnapshotsArgs,
    },
    error::{CliError, CliResult, FsContext},
};

/// The cdc target on the demo's database, and its replication slot (`lifeboat_<target>`).
const LIVE: &str = "shop-live";
const LIVE_SLOT: &str = "lifeboat_shop_live";

const SCHEMA: &str = "
CREATE TABLE users (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE images (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users(id),
    url text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX images_user_idx ON images(user_id);
CREATE TABLE credit_ledger (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users(id),
    amount integer NOT NULL,
    reason text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE user_credits (
    user_id bigint PRIMARY KEY REFERENCES users(id),
    balance integer NOT NULL
);
INSERT INTO users (email, name)
    SELECT 'user' || i || '@example.com', 'User ' || i FROM generate_series(1, 2000) i;
INSERT INTO images (user_id, url, metadata)
    SELECT 1 + (i % 2000), 'https://media.example.com/img/' || md5(i::text) || '.jpg',
           jsonb_build_object('width', 640 + i % 640, 'height', 480 + i % 480)
    FROM generate_series(1, 6000) i;
INSERT INTO credit_ledger (user_id, amount, reason)
    SELECT 1 + (i % 2000), 10 + (i % 50), CASE WHEN i % 3 = 0 THEN 'purchase' ELSE 'bonus' END
    FROM generate_series(1, 20000) i;
INSERT INTO user_credits (user_id, balance)
    SELECT user_id, sum(amount) FROM credit_ledger GROUP BY user_id;
";

fn step(n: u32, text: &str) {
    outln!("\n== {n}. {text}");
}

pub async fn run(ctx: &Context, args: DemoArgs) -> CliResult<i32> {
    let started = Instant::now();
    step(1, "start a throwaway PostgreSQL");
    let tools = PgTools::newest_installed()?;
    // `wal_level = logical` for the managed-database act (logical replication).
    let settings = [("wal_level", "logical"), ("max_slot_wal_keep_size", "1GB")];
    let cluster = lifeboat_repo::blocking(move || Cluster::start(&tools, &settings)).await?;
    outln!(
        "PostgreSQL {} on 127.0.0.1:{} (folder {})",
        cluster.tools().major,
        cluster.port,
        cluster.root().display()
    );
    let result = tour(ctx, &cluster, &args).await;
    drop(cluster);
    match result {
        Ok(code) => {
            outln!(
                "\ndemo finished in {:.1} s; everything it created was removed",
                started.elapsed().as_secs_f64()
            );
            Ok(code)
        }
        Err(e) => Err(e.context("demo failed")),
    }
}

async fn tour(ctx: &Context, cluster: &Cluster, args: &DemoArgs) -> CliResult<i32> {
    let psql = |sql: &str| cluster.psql("shop", sql).map_err(CliError::from);
    cluster.psql("postgres", "CREATE DATABASE shop")?;
    psql(SCHEMA)?;
    outln!(
        "created database `shop`: {} users, {} images, {} ledger entries, {} balances",
        psql("SELECT count(*) FROM users")?,
        psql("SELECT count(*) FROM images")?,
        psql("SELECT count(*) FROM credit_ledger")?,
        psql("SELECT count(*) FROM user_credits")?
    );

    step(2, "write lifeboat.toml and create the repository");
    let dir = tempfile::Builder::new()
        .prefix("lifeboat-demo-")
        .tempdir()
        .fs("create a folder in", &std::env::temp_dir())?;
    let root = if args.keep {
        dir.keep()
    } else {
        dir.path().to_path_buf()
    };
    let password = root.join("repository.password");
    std::fs::write(&password, "demo-password\n").fs("write", &password)?;
    let url_file = root.join("database.url");
    std::fs::write(&url_file, format!("{}\n", cluster.url("shop"))).fs("write", &url_file)?;
    let config = format!(
        r#"[repository]
url = "{repo}"
password-file = "{root}/repository.password"

[retention]
keep-daily = 7

[targets.shop]
kind = "postgres"
url-file = "{root}/database.url"
objectives = {{ rpo = "15m", rto = "1h" }}

# The same database protected as a managed one (Supabase, RDS, Neon) would be:
# a baseline, then every committed transaction captured through logical replication.
[targets.shop-live]
kind = "postgres"
mode = "cdc"
url-file = "{root}/database.url"
flush-interval = "500ms"
objectives = {{ rpo = "1m" }}

[[checks]]
target = "shop"
name = "no negative credit balances"
sql = "SELECT count(*) FROM user_credits WHERE balance < 0"
expect = "0"

[[checks]]
target = "shop"
name = "balances equal the ledger"
sql = "SELECT count(*) FROM user_credits c JOIN (SELECT user_id, sum(amount) AS total FROM credit_ledger GROUP BY user_id) l USING (user_id) WHERE c.balance <> l.total"
expect = "0"
"#,
        repo = root.join("repo").display(),
        root = root.display()
    );
    let config_path = root.join("lifeboat.toml");
    std::fs::write(&config_path, &config).fs("write", &config_path)?;
    outln!("{}", config.trim());
    let demo_ctx = Context::new(config_path, false, ctx.quiet);
    outln!("\n$ lifeboat init");
    super::init::run(&demo_ctx).await?;

    step(3, "back up");
    outln!("$ lifeboat backup shop");
    let code = super::backup::run(
        &demo_ctx,
        BackupArgs {
            targets: vec!["shop".into()],
        },
    )
    .await?;
    if code != 0 {
        return Ok(code);
    }
    outln!("\n$ lifeboat snapshots");
    super::snapshots::run(&demo_ctx, SnapshotsArgs { target: None }).await?;

    step(
        4,
        "disaster: someone drops `images` and corrupts the balances",
    );
    psql("DROP TABLE images; UPDATE user_credits SET balance = -balance WHERE user_id % 7 = 0")?;
    outln!(
        "images table: gone; negative balances: {}",
        psql("SELECT count(*) FROM user_credits WHERE balance < 0")?
    );

    step(5, "restore: the plan first, then over the broken database");
    let restore = |dry_run: bool, force: bool| RestoreArgs {
        target: "shop".into(),
        snapshot: "latest".into(),
        to: None,
        prefix: None,
        key: None,
        to_dir: None,
        table: None,
        dry_run,
        force,
        jobs: 1,
        keep_owners: false,
        no_checks: false,
        pitr: Default::default(),
    };
    outln!("$ lifeboat restore shop --dry-run");
    super::restore::run(&demo_ctx, restore(true, false)).await?;
    outln!("\n$ lifeboat restore shop --force");
    let code = super::restore::run(&demo_ctx, restore(false, true)).await?;

    step(6, "after the restore");
    outln!(
        "images: {} rows; negative balances: {}; balances equal to the ledger: {}",
        psql("SELECT count(*) FROM images")?,
        psql("SELECT count(*) FROM user_credits WHERE balance < 0")?,
        psql(
            "SELECT bool_and(c.balance = l.total) FROM user_credits c
             JOIN (SELECT user_id, sum(amount) AS total FROM credit_ledger GROUP BY user_id) l
             USING (user_id)"
        )?
    );
    outln!("\n$ lifeboat snapshots   (the emergency backup of the broken database is kept)");
    super::snapshots::run(&demo_ctx, SnapshotsArgs { target: None }).await?;
    if code != 0 {
        return Ok(code);
    }

    step(
        7,
        "drill: restore into a throwaway server, verify, measure RTO and RPO",
    );
    outln!(
        "$ lifeboat drill shop --report-dir {}",
        root.join("reports").display()
    );
    let code = super::drill::run(
        &demo_ctx,
        DrillArgs {
            targets: vec!["shop".into()],
            plan: None,
            snapshot: None,
            time: None,
            report_dir: Some(root.join("reports")),
            jobs: 1,
            dry_run: false,
        },
    )
    .await?;
    let code = if code == 0 {
        managed(&demo_ctx, cluster).await?
    } else {
        code
    };
    if args.keep {
        outln!(
            "\nthe demo's config, repository and reports: {}",
            root.display()
        );
    } else {
        outln!("\n(the reports go with the demo's folder; `lifeboat demo --keep` keeps them)");
    }
    Ok(code)
}

/// Act 8: `shop` protected as a managed database would be (`mode = "cdc"`), a mistaken
/// `DELETE`, and a restore to the second before it into a new database.
async fn managed(ctx: &Context, cluster: &Cluster) -> CliResult<i32> {
    step(
        8,
        "managed database: continuous capture, a mistaken DELETE, restore to the second before it",
    );
    outln!(
        "(as on Supabase, RDS or Neon: no data directory, no archive_command, but logical replication)"
    );
    outln!("$ lifeboat cdc check {LIVE} --fix");
    let check = CdcCommand::Check(CdcCheckArgs {
        target: LIVE.into(),
        fix: true,
    });
    let code = super::cdc::run(ctx, check).await?;
    if code != 0 {
        return Ok(code);
    }
    outln!("\n$ lifeboat backup {LIVE}   (the baseline)");
    let code = super::backup::run(
        ctx,
        BackupArgs {
            targets: vec![LIVE.into()],
        },
    )
    .await?;
    if code != 0 {
        return Ok(code);
    }

    outln!("\n$ lifeboat cdc run {LIVE}   (in the background until after the mistake)");
    let engine = ctx.engine().await?;
    let cancel = Cancel::new();
    let stop = cancel.clone();
    let capturing = tokio::spawn(async move { capture::run(&engine, LIVE, &stop, &|_| {}).await });
    // Whatever happens meanwhile, the capture is stopped (what it gathered stored) and its
    // replication connection closed before the cluster goes.
    let writes = mistake(cluster).await;
    cancel.cancel();
    let captured = capturing
        .await
        .map_err(|e| CliError::failure(format!("the capture ended abnormally: {e}"), None))?;
    let (at, before) = writes?;
    let done = captured?;
    outln!(
        "capture stopped: {} transaction(s), {} change(s) stored in {} segment(s)",
        done.transactions,
        done.changes,
        done.segments
    );

    outln!(
        "\n$ lifeboat restore {LIVE} --time \"{at}\" --to postgres://postgres:***@127.0.0.1:{}/shop_before",
        cluster.port
    );
    let code = super::restore::run(
        ctx,
        RestoreArgs {
            target: LIVE.into(),
            snapshot: "latest".into(),
            to: Some(cluster.url("shop_before")),
            prefix: None,
            key: None,
            to_dir: None,
            table: None,
            dry_run: false,
            force: false,
            jobs: 1,
            keep_owners: false,
            no_checks: false,
            pitr: PitrArgs {
                time: Some(at.clone()),
                ..Default::default()
            },
        },
    )
    .await?;
    if code != 0 {
        return Ok(code);
    }
    let live = ledger(cluster, "shop")?;
    let restored = ledger(cluster, "shop_before")?;
    outln!(
        "\nlive `shop`:            {} ledger rows, {} 'bonus'",
        live.rows,
        live.bonus
    );
    outln!(
        "restored `shop_before`: {} ledger rows, {} 'bonus'",
        restored.rows,
        restored.bonus
    );
    let same = restored.sum == before.sum;
    outln!("the restored ledger equals the live one at {at}, row for row: {same}");
    if !same {
        eprintln!("error: the restored ledger differs from the ledger before the mistake");
        return Ok(3);
    }
    Ok(0)
}

/// Normal writes, the moment T, the mistake one second later; T and the ledger at T. Waits
/// until the capture has stored the mistake too.
async fn mistake(cluster: &Cluster) -> CliResult<(String, Ledger)> {
    let psql = |sql: &str| cluster.psql("shop", sql).map_err(CliError::from);
    psql(
        "BEGIN;
         INSERT INTO credit_ledger (user_id, amount, reason)
             SELECT i, 25, 'purchase' FROM generate_series(1, 50) i;
         UPDATE user_credits SET balance = balance + 25 WHERE user_id <= 50;
         COMMIT",
    )?;
    outln!("normal writes: 50 purchases and their balances, in one transaction");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at = psql("SELECT date_trunc('second', clock_timestamp())")?;
    let before = ledger(cluster, "shop")?;
    outln!(
        "the moment before the mistake: {at} ({} ledger rows, {} 'bonus')",
        before.rows,
        before.bonus
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deleted = psql(
        "WITH d AS (DELETE FROM credit_ledger WHERE reason = 'bonus' RETURNING 1)
         SELECT count(*) FROM d",
    )?;
    outln!(
        "the mistake: DELETE FROM credit_ledger WHERE reason = 'bonus' ({deleted} rows deleted, {} left)",
        psql("SELECT count(*) FROM credit_ledger")?
    );
    caught_up(cluster).await?;
    Ok((at, before))
}

/// A ledger's rows, its 'bonus' rows, and a checksum of every row.
struct Ledger {
    rows: String,
    bonus: String,
    sum: String,
}

fn ledger(cluster: &Cluster, db: &str) -> CliResult<Ledger> {
    let out = cluster.psql(
        db,
        "SELECT count(*), count(*) FILTER (WHERE reason = 'bonus'),
                md5(string_agg(l::text, '|' ORDER BY id))
         FROM credit_ledger l",
    )?;
    let mut f = out.split('|').map(str::to_string);
    Ok(Ledger {
        rows: f.next().unwrap_or_default(),
        bonus: f.next().unwrap_or_default(),
        sum: f.next().unwrap_or_default(),
    })
}

/// Wait (up to 30 s) until the capture has stored everything written so far: the slot's
/// confirmed position reaches the server's WAL position now.
async fn caught_up(cluster: &Cluster) -> CliResult<()> {
    let now = cluster.psql("shop", "SELECT pg_current_wal_insert_lsn()")?;
    let sql = format!(
        "SELECT confirmed_flush_lsn >= '{now}' FROM pg_replication_slots WHERE slot_name = '{LIVE_SLOT}'"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.psql("shop", &sql)? != "t" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
