//! Connecting to PostgreSQL: parsing a target URL (never printing its password), opening a
//! session with errors a person can act on, and the libpq environment that child tools
//! (`pg_dump`, `pg_restore`) get, so that the password never appears in their arguments.

use std::{str::FromStr, time::Duration};

use lifeboat_core::{Redacted, redact_url};
use tokio_postgres::{Client, Config, config::Host};

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("invalid PostgreSQL URL `{url}`: {message}")]
    BadUrl { url: String, message: String },
    #[error("cannot connect to `{server}`: {message}")]
    Connect {
        server: String,
        message: String,
        hint: Option<String>,
        /// The server's SQLSTATE, when it answered.
        code: Option<String>,
    },
    #[error("{context}: {message}")]
    Query {
        context: String,
        message: String,
        /// The server's SQLSTATE, when it answered.
        code: Option<String>,
    },
    #[error("{0}")]
    Tools(String),
    #[error("{0}")]
    Io(String),
}

impl PgError {
    /// The server refused the login (wrong user or password, or `pg_hba.conf`): trying
    /// again will not help.
    pub fn is_login_refused(&self) -> bool {
        matches!(self, Self::Connect { code: Some(c), .. } if c == "28P01" || c == "28000")
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Connect { hint, .. } => hint.clone(),
            Self::Tools(_) => Some(
                "install the PostgreSQL client of the server's major version, or set `pg-bin-dir`"
                    .into(),
            ),
            Self::BadUrl { .. } => {
                Some("write it as postgres://user:password@host:5432/database".into())
            }
            _ => None,
        }
    }

    pub fn query(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let context = context.into();
        move |e| Self::Query {
            context,
            message: describe_pg_error(&e),
            code: e.as_db_error().map(|d| d.code().code().to_string()),
        }
    }
}

/// The useful part of a driver error: the server's message when there is one.
pub fn describe_pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    }
}

/// A database to back up or restore into.
#[derive(Clone)]
pub struct Target {
    url: Redacted,
    config: Config,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Target {
    pub fn parse(url: &Redacted) -> Result<Self, PgError> {
        let mut config = Config::from_str(url.expose()).map_err(|e| PgError::BadUrl {
            url: redact_url(url.expose()),
            message: e.to_string(),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_dbname().is_none() {
            return Err(PgError::BadUrl {
                url: redact_url(url.expose()),
                message: "no database name".into(),
            });
        }
        Ok(Self {
            url: url.clone(),
            config,
        })
    }

    /// The URL with its password hidden.
    pub fn redacted(&self) -> String {
        redact_url(self.url.expose())
    }

    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or("postgres")
    }

    /// `host:port` (first host), for manifests and messages.
    pub fn server(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
    }

    /// The first host (or socket folder) and port.
    pub fn endpoint(&self) -> (String, u16) {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        (
            host,
            self.config.get_ports().first().copied().unwrap_or(5432),
        )
    }

    /// libpq's `sslmode`: `disable`, `prefer` or `require`.
    pub fn ssl_mode(&self) -> tokio_postgres::config::SslMode {
        self.config.get_ssl_mode()
    }

    /// The password, if the URL has one (to mask it in text that might echo it).
    pub fn password(&self) -> Option<String> {
        self.config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// Another server (host and port), same user, password and database.
    pub fn with_host_port(&self, host: &str, port: u16) -> Self {
        let mut t = self.clone();
        let mut config = Config::new();
        config
            .host(host)
            .port(port)
            .user(self.user())
            .dbname(self.database())
            .connect_timeout(Duration::from_secs(10));
        if let Some(pw) = self.config.get_password() {
            config.password(pw);
        }
        config.ssl_mode(self.config.get_ssl_mode());
        t.config = config;
        t.url = Redacted::new(format!(
            "postgres://{}@{host}:{port}/{}",
            self.user(),
            self.database()
        ));
        t
    }

    /// The same server, another database.
    pub fn with_database(&self, db: &str) -> Self {
        let mut t = self.clone();
        t.config.dbname(db);
        t
    }

    pub async fn connect(&self) -> Result<Client, PgError> {
        let tls = crate::tls::connector().map_err(|e| PgError::Connect {
            server: self.server(),
            message: format!("cannot set up TLS: {e}"),
            hint: None,
            code: None,
        })?;
        let (client, connection) = self.config.connect(tls).await.map_err(|e| {
            let message = describe_pg_error(&e);
            let code = e.as_db_error().map(|d| d.code().code().to_string());
            let hint = match code.as_deref() {
                Some("28P01") | Some("28000") => Some(format!(
                    "check the user `{}` and its password in the target's URL",
                    self.user()
                )),
                Some("3D000") => Some(format!(
                    "database `{}` does not exist on `{}`",
                    self.database(),
                    self.server()
                )),
                _ if matches!(
                    lifeboat_core::cause::io_kind(&e),
                    Some(std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::TimedOut)
                ) =>
                {
                    Some(
                        "is the server running and reachable from here? check host and port".into(),
                    )
                }
                _ => None,
            };
            PgError::Connect {
                server: format!("{}/{}", self.server(), self.database()),
                message,
                hint,
                code,
            }
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                log::debug!("connection closed: {e}");
            }
        });
        Ok(client)
    }

    /// libpq environment for child tools: the password goes here, never into arguments.
    pub fn libpq_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(h) => h.clone(),
                Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        if !hosts.is_empty() {
            env.push(("PGHOST".into(), hosts.join(",")));
        }
        let ports: Vec<String> = self.config.get_ports().iter().map(u16::to_string).collect();
        if !ports.is_empty() {
            env.push(("PGPORT".into(), ports.join(",")));
        }
        env.push(("PGUSER".into(), self.user().to_string()));
        env.push(("PGDATABASE".into(), self.database().to_string()));
        if let Some(pw) = self.config.get_password() {
            env.push((
                "PGPASSWORD".into(),
                String::from_utf8_lossy(pw).into_owned(),
            ));
        }
        let sslmode = match self.config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => "disable",
            tokio_postgres::config::SslMode::Require => "require",
            _ => "prefer",
        };
        env.push(("PGSSLMODE".into(), sslmode.into()));
        env.push(("PGAPPNAME".into(), "lifeboat".into()));
        env.push(("PGCONNECT_TIMEOUT".into(), "10".into()));
        env
    }

    /// A `Command` for a libpq tool with this target's environment.
    pub fn command(&self, program: &std::path::Path) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        for key in ["PGSERVICE", "PGPASSFILE", "PGOPTIONS"] {
            cmd.env_remove(key);
        }
        cmd.envs(self.libpq_env());
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_carries_the_password_and_the_url_hides_it() {
        let t = Target::parse(&Redacted::new("postgres://app:s3cret@db:6543/shop")).unwrap();
        assert_eq!(t.redacted(), "postgres://app:[redacted]@db:6543/shop");
        assert_eq!(t.server(), "db:6543");
        assert_eq!(t.database(), "shop");
        let env = t.libpq_env();
        assert!(env.contains(&("PGPASSWORD".into(), "s3cret".into())));
        assert!(env.contains(&("PGPORT".into(), "6543".into())));
        assert!(format!("{t:?}").contains("[redacted]"));
    }

    #[test]
    fn a_url_without_database_is_refused() {
        assert!(Target::parse(&Redacted::new("postgres://db:5432")).is_err());
        assert!(Target::parse(&Redacted::new("not a url at all ===")).is_err());
    }
}
