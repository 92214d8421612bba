//! The README's first command: `lifeboat demo` runs the whole tour and cleans up.

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
