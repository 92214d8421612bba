//! The README's first command: `lifeboat demo` runs the whole tour (a logical restore over
//! a broken database, a drill, then continuous capture undoing a mistaken DELETE) and
//! cleans up.

#[test]
fn the_demo_recovers_from_the_disaster() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .arg("demo")
        .env_remove("LIFEBOAT_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("negative balances: 285"),
        "the disaster happened: {stdout}"
    );
    assert!(stdout.contains("verified: 4 table(s) match"), "{stdout}");
    assert!(
        stdout.contains("images: 6000 rows; negative balances: 0; balances equal to the ledger: t"),
        "{stdout}"
    );
    assert!(stdout.contains("(emergency)"), "{stdout}");
    // It ends with a passing drill and names its report.
    assert!(stdout.contains("drill of `shop`: PASS"), "{stdout}");
    assert!(stdout.contains("report: "), "{stdout}");
    assert!(stdout.contains("checks: "), "{stdout}");
    // The managed-database act: the mistaken DELETE undone by a restore to the second before.
    assert!(
        stdout.contains("(13334 rows deleted, 6716 left)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("live `shop`:            6716 ledger rows, 0 'bonus'"),
        "{stdout}"
    );
    assert!(
        stdout.contains("restored `shop_before`: 20050 ledger rows, 13334 'bonus'"),
        "{stdout}"
    );
    assert!(stdout.contains("row for row: true"), "{stdout}");
    // The throwaway folder named in the output is gone.
    let folder = stdout
        .split("(folder ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("the demo names its cluster folder");
    assert!(
        !std::path::Path::new(folder).exists(),
        "{folder} was left behind"
    );
}
