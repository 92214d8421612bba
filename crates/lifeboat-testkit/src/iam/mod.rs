//! moto with IAM enforced, for S3 Object Lock: a bucket `locked` created with Object Lock
//! and a bucket `plain` without, an `admin` user allowed everything and a `host` user
//! with a given policy (the backup host's). Requests are refused unless a user's policy
//! allows them, as on AWS.
//!
//! One allowance: moto recomputes each request's SigV4 signature from the request as it
//! arrived, and for opendal's requests (a `/` sent unencoded in a listing's query,
//! `prefix=repo/`) it gets another canonical request than SigV4 defines (AWS and s3s-fs
//! accept them). The server here compares signatures only for the requests lifeboat signs
//! itself (a bucket's `?object-lock`, an object's `?retention`, HEADs); for the others the
//! access key must still be a user's, and that user's policy decides.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use crate::s3::S3Server;

const OPS: &str = include_str!("s3ops.py");

/// Start moto.server with the signature comparison skipped (see the module's docs).
const SERVER: &str = r#"import sys
import moto.iam.access_control as ac
compare = ac.IAMRequestBase.check_signature
def check(self):
    query = self._path.partition('?')[2]
    if 'object-lock' in query or 'retention' in query or self._method == 'HEAD':
        compare(self)
ac.IAMRequestBase.check_signature = check
from moto.server import main
main(sys.argv[1:])
"#;

/// An access key pair of a moto IAM user.
#[derive(Debug, Clone)]
pub struct Keys {
    pub id: String,
    pub secret: String,
}

impl Keys {
    /// As `AWS_*` variables for a `lifeboat` run.
    pub fn env(&self) -> [(&'static str, &str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", self.id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.as_str()),
        ]
    }
}

pub struct IamS3 {
    pub server: S3Server,
    pub admin: Keys,
    pub host: Keys,
}

impl IamS3 {
    /// moto with the buckets and users; `host_policy` is the backup host's IAM policy.
    pub fn start(host_policy: &str) -> Self {
        let port = lifeboat_postgres::cluster::free_port().expect("free port");
        let child = Command::new("python3")
            .args(["-c", SERVER, "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto (scripts/install-deps.sh)");
        let server = S3Server::adopt(child, port);
        let dir = tempfile::tempdir().expect("temp dir");
        let policy = dir.path().join("policy.json");
        std::fs::write(&policy, host_policy).expect("write policy");
        let keys = run(&["setup", &server.endpoint(), &policy.display().to_string()]);
        let pair = |user: &str| Keys {
            id: keys[user][0].as_str().expect("key id").to_string(),
            secret: keys[user][1].as_str().expect("secret").to_string(),
        };
        let (admin, host) = (pair("admin"), pair("host"));
        // From now on every request is checked against its user's policy.
        let answer = crate::http_request(
            port,
            "POST",
            "/moto-api/reset-auth",
            &[("Content-Type", "text/plain"), ("Connection", "close")],
            "0",
        );
        assert_eq!(answer.status, 200, "enforce IAM in moto: {answer:?}");
        Self {
            server,
            admin,
            host,
        }
    }

    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// Run an operation of `s3ops.py` as the user `who`; its JSON result.
    pub fn op(&self, who: &Keys, op: &str, args: &[&str]) -> serde_json::Value {
        let endpoint = self.endpoint();
        let mut all = vec![op, endpoint.as_str(), who.id.as_str(), who.secret.as_str()];
        all.extend_from_slice(args);
        run(&all)
    }
}

/// The backup host's policy from `packaging/iam-backup-host.json` for `bucket`/`prefix`.
pub fn host_policy(repo_root: &Path, bucket: &str, prefix: &str) -> String {
    std::fs::read_to_string(repo_root.join("packaging/iam-backup-host.json"))
        .expect("packaging/iam-backup-host.json")
        .replace("BUCKET", bucket)
        .replace("PREFIX", prefix)
}

fn run(args: &[&str]) -> serde_json::Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(OPS)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "s3ops {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("s3ops prints JSON")
}
