//! `lifeboat demo`: the README's first command. On a throwaway PostgreSQL it creates a
//! small app (users, images, a credit ledger with balances), backs it up into a temporary
//! repository, simulates a disaster (a dropped table, corrupted balances), restores over
//! the broken database after an emergency backup, shows the verification, and ends with a
//! drill (restore into a second throwaway server, checks, RTO and RPO, a report). Everything
//! it creates is removed at the end (unless `--keep`).

use std::time::Instant;

use lifeboat_postgres::{Cluster, PgTools};

use super::Context;
use crate::{
    cli::{BackupArgs, DemoArgs, DrillArgs, RestoreArgs, SnapshotsArgs},
    error::{CliError, CliResult, FsContext},
};

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
    let cluster = lifeboat_repo::blocking(move || Cluster::start(&tools, &[])).await?;
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
    outln!("$ lifeboat backup");
    let code = super::backup::run(&demo_ctx, BackupArgs { targets: vec![] }).await?;
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
        "$ lifeboat drill --report-dir {}",
        root.join("reports").display()
    );
    let code = super::drill::run(
        &demo_ctx,
        DrillArgs {
            targets: vec![],
            plan: None,
            snapshot: None,
            time: None,
            report_dir: Some(root.join("reports")),
            jobs: 1,
            dry_run: false,
        },
    )
    .await?;
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
