//! Targets beyond PostgreSQL and files: `kind = "command"` (any program's output), run end to
//! end through the binary.

use lifeboat_testkit::Workspace;

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

fn snapshots(ws: &Workspace) -> Vec<serde_json::Value> {
    ws.run(&["snapshots", "--json"]).json()["snapshots"]
        .as_array()
        .unwrap()
        .clone()
}

/// A command's stdout is the backup; a restore command gets it back on stdin after an
/// emergency backup; a failing command never leaves a snapshot.
#[test]
fn command_targets_back_up_output_and_restore_through_stdin() {
    let ws = Workspace::new(BIN);
    let work = ws.path().join("svc");
    std::fs::create_dir_all(&work).unwrap();
    let export: String = (0..50_000).map(|i| format!("doc {i}\n")).collect();
    std::fs::write(work.join("index.txt"), &export).unwrap();
    // The backup reads a file relative to `workdir` and an env var; the restore writes
    // where the env var says.
    ws.write_config(&format!(
        r#"[targets.search]
kind = "command"
backup = "test -f broken && exit 7; printf '%s\n' \"$HEADER\"; cat index.txt"
restore = "cat > restored.txt"
env = {{ HEADER = "search-export v1" }}
workdir = "{}"

[[checks]]
target = "search"
name = "the export holds the last document"
command = "grep -qx 'doc 49999' \"$LIFEBOAT_DRILL_DIR/search.out\""
"#,
        work.display()
    ));
    ws.run(&["init"]).expect_code(0);
    let run = ws.run(&["backup", "--json"]);
    run.expect_code(0);
    let expected = format!("search-export v1\n{export}");
    let snaps = snapshots(&ws);
    assert_eq!(snaps.len(), 1);
    let m = &snaps[0]["manifest"]["command"];
    assert_eq!(m["output"]["bytes"], expected.len() as u64);
    use sha2::Digest;
    assert_eq!(
        m["output"]["sha256"],
        hex::encode(sha2::Sha256::digest(expected.as_bytes()))
    );

    // A failing command: exit 1, its status named, no snapshot.
    std::fs::write(work.join("broken"), "").unwrap();
    let run = ws.run(&["backup"]);
    run.expect_code(1);
    assert!(run.stderr.contains("status 7"), "{}", run.stderr);
    assert_eq!(snapshots(&ws).len(), 1);

    // Restoring needs the emergency backup first; it fails now, so nothing happens...
    let run = ws.run(&["restore", "search"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("emergency backup failed"),
        "{}",
        run.stderr
    );
    assert!(!work.join("restored.txt").exists());
    std::fs::remove_file(work.join("broken")).unwrap();

    // ...a dry run changes nothing...
    let run = ws.run(&["restore", "search", "--dry-run"]);
    run.expect_code(0);
    assert!(run.stdout.contains("emergency backup"), "{}", run.stdout);
    assert!(!work.join("restored.txt").exists());
    assert_eq!(snapshots(&ws).len(), 1);

    // ...and the real one saves the current state, then feeds the output in.
    std::fs::write(work.join("index.txt"), "changed since\n").unwrap();
    let run = ws.run(&["restore", "search"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("size and SHA-256 match"),
        "{}",
        run.stdout
    );
    assert_eq!(
        std::fs::read_to_string(work.join("restored.txt")).unwrap(),
        expected
    );
    let snaps = snapshots(&ws);
    assert_eq!(snaps.len(), 2);
    let emergency: Vec<_> = snaps.iter().filter(|s| s["emergency"] == true).collect();
    assert_eq!(emergency.len(), 1, "{snaps:?}");
    assert_eq!(
        emergency[0]["manifest"]["command"]["output"]["bytes"],
        "search-export v1\nchanged since\n".len() as u64
    );

    // `--to-dir` writes the output to a file, and never over an existing one.
    let out = ws.path().join("out");
    ws.run(&["restore", "search", "--to-dir", out.to_str().unwrap()])
        .expect_code(0);
    assert_eq!(
        std::fs::read_to_string(out.join("search.out")).unwrap(),
        expected
    );
    ws.run(&["restore", "search", "--to-dir", out.to_str().unwrap()])
        .expect_code(1);

    // A drill restores the output into a scratch folder, checks it against the manifest
    // and runs the command check on it.
    let run = ws.run(&["drill", "search", "--json"]);
    run.expect_code(0);
    let report = run.json();
    let checks = report["drills"][0]["report"]["checks"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        checks
            .iter()
            .any(|c| c["name"] == "the export holds the last document" && c["passed"] == true),
        "{checks:?}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c["name"] == "every file's size and SHA-256" && c["passed"] == true),
        "{checks:?}"
    );

    // A restore command that fails is reported as a failure.
    ws.write_config(&format!(
        "[targets.search]\nkind = \"command\"\nbackup = \"echo hi\"\nrestore = \"cat >/dev/null; exit 4\"\nworkdir = \"{}\"\n",
        work.display()
    ));
    let run = ws.run(&["restore", "search", "--force"]);
    run.expect_code(1);
    assert!(run.stderr.contains("restore command"), "{}", run.stderr);
}

#[test]
fn command_target_config_is_checked() {
    let ws = Workspace::new(BIN);
    ws.write_config("[targets.x]\nkind = \"command\"\nrestore = \"cat\"\n");
    let run = ws.run(&["config", "check"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("`targets.x.backup` is missing"),
        "{}",
        run.stderr
    );
    ws.write_config("[targets.x]\nkind = \"command\"\nbackup = \"echo\"\npaths = [\"/etc\"]\n");
    let run = ws.run(&["config", "check"]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("`targets.x.paths` does not apply to kind `command`"),
        "{}",
        run.stderr
    );
}
