//! The repository's keys (issue 23, point 3): several passwords for one repository, and
//! rotation after a breach. restic opens the repository with any key; the key in use (and
//! so the last one) is never removed; after `key passwd` the old password opens nothing,
//! and the new one reads everything written before — snapshots, restores, and the side
//! area's drill reports (its key derives from the master key, which no key change touches).

use lifeboat_testkit::Workspace;

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

/// `restic snapshots` with the password in `file`: whether it opened the repository.
fn restic_opens(ws: &Workspace, file: &std::path::Path) -> bool {
    std::process::Command::new("restic")
        .args(["--no-cache", "-r"])
        .arg(ws.repo())
        .args(["snapshots", "-q"])
        .env("RESTIC_PASSWORD_FILE", file)
        .output()
        .expect("restic is installed (scripts/install-deps.sh)")
        .status
        .success()
}

fn keys(ws: &Workspace) -> Vec<serde_json::Value> {
    ws.run(&["key", "list", "--json"]).expect_code(0).json()["keys"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_second_key_opens_the_repository_and_a_rotated_password_reads_everything_written_before() {
    let ws = Workspace::new(BIN);
    let data = ws.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(data.join("b.bin"), lifeboat_testkit::noise(7, 200_000)).unwrap();
    ws.files_target_backed_up(&data);
    ws.run(&["drill", "d"]).expect_code(0);
    let first = keys(&ws);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["current"], true);
    let original = ws.path().join("password");
    let original_copy = ws.path().join("original-password");
    std::fs::copy(&original, &original_copy).unwrap();

    // A recovery key, kept offline.
    let recovery = ws.path().join("recovery-password");
    std::fs::write(&recovery, "a recovery key kept in a safe\n").unwrap();
    let added = ws
        .run(&[
            "key",
            "add",
            "--new-password-file",
            recovery.to_str().unwrap(),
            "--json",
        ])
        .expect_code(0)
        .json();
    let recovery_id = added["added"].as_str().unwrap().to_string();
    assert_eq!(keys(&ws).len(), 2);
    assert!(
        restic_opens(&ws, &recovery),
        "restic opens it with the new key"
    );
    assert!(restic_opens(&ws, &original));

    // The key in use is never removed (nor, so, the last one); an empty password is refused.
    let current = first[0]["id"].as_str().unwrap().to_string();
    ws.run(&["key", "remove", &current[..8]])
        .expect_code(1)
        .expect_stderr(&["the key this password opens"], &[]);
    ws.run_env(&["key", "add"], &[("LIFEBOAT_NEW_PASSWORD", "")])
        .expect_code(2)
        .expect_stderr(&["empty"], &[]);
    assert_eq!(keys(&ws).len(), 2, "nothing removed or added");

    // After a breach: a new password; the old one opens nothing any more.
    let rotated = ws.path().join("rotated-password");
    std::fs::write(&rotated, "the password after the breach\n").unwrap();
    ws.run(&[
        "key",
        "passwd",
        "--new-password-file",
        rotated.to_str().unwrap(),
    ])
    .expect_code(0)
    .expect_stdout(&["the password is changed"], &[]);
    ws.run(&["snapshots"])
        .expect_code(1)
        .expect_stderr(&["wrong password"], &[]);
    assert!(
        !restic_opens(&ws, &original_copy),
        "the old password is gone"
    );
    std::fs::copy(&rotated, &original).unwrap();
    let after = keys(&ws);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        after
            .iter()
            .any(|k| k["id"] == recovery_id.as_str() && k["current"] == false)
    );
    assert!(!after.iter().any(|k| k["id"] == current.as_str()));

    // Everything written before reads with the new password: snapshots, a verified restore,
    // the drill report in the side area.
    assert_eq!(ws.snapshots().len(), 1);
    let out = ws.path().join("out");
    ws.run(&["restore", "d", "--to-dir", out.to_str().unwrap()])
        .expect_code(0);
    assert_eq!(
        std::fs::read(out.join(data.strip_prefix("/").unwrap()).join("b.bin")).unwrap(),
        lifeboat_testkit::noise(7, 200_000)
    );
    let drills = ws.run(&["drills", "--json"]).expect_code(0).json();
    assert_eq!(drills["drills"].as_array().unwrap().len(), 1, "{drills}");
    assert!(restic_opens(&ws, &rotated));

    // The recovery key can go now; then the only key left is the one in use.
    ws.run(&["key", "remove", &recovery_id[..10]])
        .expect_code(0);
    assert_eq!(keys(&ws).len(), 1);
    assert!(!restic_opens(&ws, &recovery));
}
